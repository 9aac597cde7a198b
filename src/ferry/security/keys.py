"""API keys: their format, scopes, and what a key may do.

A key reads ``fy_<id>_<secret>``. The id is public (lists, audit log, the key's row);
only a SHA-256 digest of the secret is stored. The secret is 256 random bits, so a fast
hash is enough: nobody can guess such a secret from its digest, and a slow password
hash would cost milliseconds on every request."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

PREFIX = "fy"
_KEY = re.compile(r"fy_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")


class Scope(enum.StrEnum):
    READ = "read"  # metadata, lists, statistics, metrics
    INFER = "infer"  # V1 and V2 inference
    DEPLOY = "deploy"  # push, stages, traffic, rollback, load/unload
    ADMIN = "admin"  # keys, audit, and everything above


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    """``"infer,read"`` or ``["infer", "read"]``; an unknown or empty list is a ValueError."""
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    if not names:
        raise ValueError("a key needs at least one scope: read, infer, deploy or admin")
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError:
        unknown = sorted(set(names) - {scope.value for scope in Scope})
        raise ValueError(f"unknown scope {', '.join(unknown)}: use read, infer, deploy or admin") from None


_DURATION = re.compile(r"(?P<count>\d+)\s*(?P<unit>[smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: datetime) -> datetime:
    """``30d``, ``12h``, ``90m`` from ``now``, or an ISO 8601 time (UTC if it names no zone)."""
    match = _DURATION.fullmatch(text.strip())
    try:
        if match is not None:
            return now + timedelta(seconds=int(match["count"]) * _UNIT_S[match["unit"]])
        when = datetime.fromisoformat(text.strip())
        return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"expiry {text!r} is out of range") from None
    except ValueError:
        raise ValueError(f"invalid expiry {text!r}: use 30d, 12h, 90m or an ISO 8601 time") from None


@dataclass(frozen=True)
class NewSecret:
    """A freshly made key: ``text`` is shown to its owner once, ``digest`` is stored."""

    key_id: str
    text: str
    digest: str


def new_secret() -> NewSecret:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewSecret(key_id, f"{PREFIX}_{key_id}_{secret}", digest(secret))


def given_secret(text: str) -> NewSecret:
    """A key text the operator made (``ferry keys generate``), to store as a key."""
    parts = split(text.strip())
    if parts is None:
        raise ValueError("not a Ferry key: make one with `ferry keys generate` (fy_<12 hex>_<43 characters>)")
    key_id, secret = parts
    return NewSecret(key_id, text.strip(), digest(secret))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY.fullmatch(text)
    return (match["id"], match["secret"]) if match else None


@dataclass(frozen=True)
class ApiKey:
    """A key as the server knows it: never the secret, only its digest."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    digest: str = field(repr=False)
    created_at: datetime
    models: frozenset[str] | None = None  # None: every model
    rate_per_s: float | None = None  # None: unlimited
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_by: str = ""

    def matches(self, secret: str) -> bool:
        # Constant time: how long the comparison takes says nothing about the digest.
        return hmac.compare_digest(digest(secret), self.digest)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def has(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    @property
    def label(self) -> str:
        """How logs, the audit trail and version records name the key."""
        return f"{self.name} ({self.key_id})"
