"""KeyStore: API keys in the registry database, so every server process on one
database accepts the same keys, and the audit trail: control-plane actions, newest first."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.errors import InvalidInput, NotFound
from ferry.names import hidden_character, is_model_name
from ferry.registry.db import WRITE
from ferry.registry.schema import ApiKeyRow, AuditRow, utcnow
from ferry.security.audit import AuditEvent
from ferry.security.keys import ApiKey, NewSecret, Scope, new_secret

MAX_NAME = 128
KEYS_LOCK = 0x46455252_0003  # pg_advisory_xact_lock key: "FERR" + 3
PRUNE_CHUNK = 5000  # audit rows deleted per transaction


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        key_id=row.id,
        name=row.name,
        scopes=frozenset(Scope(s) for s in row.scopes),
        digest=row.secret_digest,
        created_at=row.created_at,
        models=frozenset(row.models) if row.models is not None else None,
        rate_per_s=row.rate_per_s,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_by=row.created_by,
    )


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- keys -----------------------------------------------------------------------

    def create(
        self,
        name: str,
        scopes: Iterable[Scope],
        models: Iterable[str] | None = None,
        rate_per_s: float | None = None,
        expires_at: datetime | None = None,
        created_by: str = "",
    ) -> tuple[ApiKey, str]:
        """The new key and its text, which is never stored: show it once."""
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidInput(f"a key needs a name of 1 to {MAX_NAME} characters")
        if hidden_character(name) is not None:
            raise InvalidInput(f"a key name must be one line without control or invisible characters, not {name!r}")
        models = list(models) if models is not None else None
        for model in models or ():
            if not is_model_name(model):
                raise InvalidInput(f"{model!r} is not a model name: letters, digits, '_', '.', '-' (at most 128)")
        scope_list = sorted({Scope(s).value for s in scopes})
        if not scope_list:
            raise InvalidInput("a key needs at least one scope: read, infer, deploy or admin")
        if rate_per_s is not None and rate_per_s <= 0:
            raise InvalidInput("a rate must be more than 0 requests per second")
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("the expiry must be in the future")
        secret = new_secret()
        row = ApiKeyRow(
            id=secret.key_id,
            name=name,
            secret_digest=secret.digest,
            scopes=scope_list,
            models=sorted(set(models)) if models is not None else None,
            rate_per_s=rate_per_s,
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
        )
        with self._write() as session:
            session.add(row)
            session.flush()
            return _key(row), secret.text

    def create_first_admin(self, given: NewSecret | None = None) -> str | None:
        """On a database that has never had a key, make the first admin key: ``given``
        (the operator's, FERRY_BOOTSTRAP_ADMIN_KEY) or a new one. Its text, or None when
        keys existed already. Two processes starting at once on one database make one key
        between them."""
        with self._write() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(KEYS_LOCK)))
            if session.scalar(select(func.count()).select_from(ApiKeyRow)):
                return None
            secret = given or new_secret()
            session.add(
                ApiKeyRow(
                    id=secret.key_id,
                    name="admin",
                    secret_digest=secret.digest,
                    scopes=[Scope.ADMIN.value],
                    models=None,
                    rate_per_s=None,
                    created_at=utcnow(),
                    created_by="FERRY_BOOTSTRAP_ADMIN_KEY" if given else "ferry (first start)",
                )
            )
            return secret.text

    def revoke(self, key_id: str) -> ApiKey:
        with self._write() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"key {key_id!r} not found")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _key(row)

    def get(self, key_id: str) -> ApiKey:
        with self._sessions() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"key {key_id!r} not found")
            return _key(row)

    def all(self, include_revoked: bool = True) -> list[ApiKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self._sessions() as session:
            return [_key(row) for row in session.scalars(query)]

    def count(self) -> int:
        """Keys ever made, revoked ones included."""
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(ApiKeyRow)) or 0

    # -- audit ----------------------------------------------------------------------

    def record(self, event: AuditEvent) -> None:
        self.record_many([event])

    def record_many(self, events: Sequence[AuditEvent]) -> None:
        """In one transaction (the AuditWriter's batches)."""
        with self._write() as session:
            session.add_all(_audit_row(event) for event in events)

    def prune_audit(self, older_than: datetime | None = None, keep_rows: int | None = None) -> int:
        """Delete audit rows from before ``older_than`` and all but the newest ``keep_rows``;
        the number deleted. In chunks, so no transaction holds the write lock for long."""
        cutoff_id = None
        if keep_rows is not None:
            with self._sessions() as session:
                newest_dropped = select(AuditRow.id).order_by(AuditRow.id.desc()).offset(keep_rows).limit(1)
                cutoff_id = session.scalar(newest_dropped)
        conditions = []
        if older_than is not None:
            conditions.append(AuditRow.at < older_than)
        if cutoff_id is not None:
            conditions.append(AuditRow.id <= cutoff_id)
        if not conditions:
            return 0
        deleted = 0
        while True:
            chunk = select(AuditRow.id).where(or_(*conditions)).order_by(AuditRow.id).limit(PRUNE_CHUNK)
            with self._write() as session:
                statement = delete(AuditRow).where(AuditRow.id.in_(chunk)).execution_options(synchronize_session=False)
                done = cast(CursorResult[Any], session.execute(statement)).rowcount
            deleted += done
            if done < PRUNE_CHUNK:
                return deleted

    def audit(
        self,
        limit: int = 100,
        action: str | None = None,
        key_id: str | None = None,
        target: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        models: Collection[str] | None = None,
    ) -> list[AuditEvent]:
        """Newest first; with ``models``, only the rows about those models."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        for column, value in (
            (AuditRow.action, action),
            (AuditRow.key_id, key_id),
            (AuditRow.target, target),
            (AuditRow.result, result),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        if models is not None:
            query = query.where(AuditRow.model.in_(sorted(models)))
        with self._sessions() as session:
            return [
                AuditEvent(
                    row.at,
                    row.key_id,
                    row.key_name,
                    row.action,
                    row.target,
                    row.method,
                    row.path,
                    row.status,
                    row.result,
                    row.client,
                    row.count,
                    row.model,
                )
                for row in session.scalars(query)
            ]

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            session.connection(execution_options={WRITE: True})  # SQLite: BEGIN IMMEDIATE
            yield session


def _audit_row(event: AuditEvent) -> AuditRow:
    return AuditRow(
        at=event.at,
        key_id=event.key_id,
        key_name=event.key_name[:MAX_NAME],
        action=event.action[:64],
        target=event.target[:255],
        method=event.method[:8],
        path=event.path[:1024],
        status=event.status,
        result=event.result[:16],
        client=event.client[:64],
        count=event.count,
        model=event.model[:MAX_NAME] if event.model is not None else None,
    )
