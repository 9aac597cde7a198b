"""``ferry keys`` and ``ferry audit``: API keys and the audit trail, through a running
server's ``/api/v1/keys`` and ``/api/v1/audit`` (an admin key in FERRY_API_KEY), or, for
``ferry keys`` with ``--data-dir``, straight in the database of a data directory (for
the first key of a new directory, or when every admin key is lost)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ferry import tables
from ferry.client import READ_TIMEOUT_S, client

if TYPE_CHECKING:
    from ferry.registry.keys import KeyStore


def keys(args: argparse.Namespace) -> int:
    action = args.keys_action or "list"
    if action == "generate":  # no server, no database: the text of a key nobody holds yet
        from ferry.security.keys import new_secret

        print(new_secret().text)
        return 0
    if args.data_dir is not None:
        answer = _offline(args, action)
    elif action == "create":
        body = {
            "name": args.name,
            "scopes": args.scopes.split(","),
            "models": args.models.split(",") if args.models else None,
            "rate": args.rate,
            "expires": args.expires,
        }
        answer = client(args).request("POST", "/api/v1/keys", READ_TIMEOUT_S, json=body)
    elif action == "revoke":
        answer = client(args).request("DELETE", f"/api/v1/keys/{quote(args.key_id, safe='')}", READ_TIMEOUT_S)
    else:
        answer = client(args).get("/api/v1/keys")
    _print(args, action, answer)
    return 0


def _print(args: argparse.Namespace, action: str, answer: Any) -> None:
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False, default=str))
    elif action == "create":
        print(tables.created_key(answer))
    elif action == "revoke":
        print(f"revoked key {answer.get('id')} ({answer.get('name')})")
    else:
        print(tables.keys_table(answer))


def _offline(args: argparse.Namespace, action: str) -> Any:
    """The same answers as the API's, from the database itself."""
    from ferry.client import ClientError
    from ferry.errors import FerryError
    from ferry.http.keys import CreatedKey, KeyOut
    from ferry.security.audit import utcnow
    from ferry.security.keys import parse_expiry, parse_scopes
    from ferry.security.ratelimit import parse_rate
    from ferry.server import open_keys
    from ferry.settings import Settings

    settings = Settings(data_dir=Path(args.data_dir))
    if settings.database_url is None and not (settings.data_dir / "registry.db").is_file():
        # A mistyped directory would otherwise get a new, empty database, and a rescue key
        # that no server ever reads.
        raise ClientError(f"{settings.data_dir}: no Ferry database here (registry.db); check --data-dir")
    store = open_keys(settings)
    try:
        if action == "create":
            key, text = store.create(
                args.name,
                parse_scopes(args.scopes),
                args.models.split(",") if args.models else None,
                parse_rate(args.rate) if args.rate else None,
                parse_expiry(args.expires, utcnow()) if args.expires else None,
                created_by=OFFLINE,
            )
            _record(store, "create_key", key.key_id)
            return CreatedKey(**KeyOut.of(key).model_dump(), key=text).model_dump(mode="json")
        if action == "revoke":
            revoked = store.revoke(args.key_id)
            _record(store, "revoke_key", revoked.key_id)
            return KeyOut.of(revoked).model_dump(mode="json")
        return [KeyOut.of(key).model_dump(mode="json") for key in store.all()]
    except (FerryError, ValueError) as exc:
        raise ClientError(exc.message if isinstance(exc, FerryError) else str(exc)) from None


OFFLINE = "ferry keys --data-dir"


def _record(store: KeyStore, action: str, key_id: str) -> None:
    """A change made straight on the database is in the audit trail too, by the local user."""
    from ferry.security.audit import AuditEvent, utcnow

    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    event = AuditEvent(utcnow(), None, OFFLINE, action, key_id, "CLI", "(database)", 200, "ok", user)
    store.record(event)


def audit(args: argparse.Namespace) -> int:
    query = {
        name: value
        for name, value in {
            "limit": args.limit,
            "action": args.action,
            "key_id": args.key,
            "target": args.target,
            "result": args.result,
            "since": args.since,
        }.items()
        if value is not None
    }
    answer = client(args).get(f"/api/v1/audit?{urlencode(query)}")
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print(tables.audit_table(answer))
    return 0
