"""The audit trail on real databases (SQLite, and PostgreSQL as in test_registry.py): the
AuditWriter's rows and counts, retention, model-scoped reads, and the migration that
added ``count`` and ``model``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from ferry.registry import connect, default_url, migrate
from ferry.registry.db import MIGRATIONS
from ferry.registry.keys import KeyStore
from ferry.security.audit import AuditEvent, utcnow
from ferry.security.audit_writer import AuditWriter
from tests.postgres import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    urls = iter([default_url(tmp_path / "data")]) if request.param == "sqlite" else postgres_schema()
    engine = connect(next(urls))
    yield engine
    engine.dispose()  # before the schema is dropped
    for _ in urls:  # drops the PostgreSQL schema
        pass


@pytest.fixture
def store(engine: Engine) -> KeyStore:
    migrate(engine)
    return KeyStore(engine)


def _event(key_id: str | None = "k1", status: int = 403, target: str = "scale/staging", **kw: object) -> AuditEvent:
    fields: dict[str, object] = {
        "at": utcnow(),
        "key_id": key_id,
        "key_name": "key",
        "action": "set_stage",
        "target": target,
        "method": "PUT",
        "path": f"/api/v1/models/{target}",
        "status": status,
        "result": "ok" if status < 400 else "denied",
        "client": "127.0.0.1",
        "model": target.split("/")[0],
    }
    fields.update(kw)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_a_flood_of_refusals_is_two_rows_with_the_whole_count(store: KeyStore) -> None:
    writer = AuditWriter(lambda: store, window_s=60)
    writer.start()
    n = 2000
    for _ in range(n):
        writer.submit(_event())
    writer.submit(_event(status=200))
    writer.close()
    rows = store.audit(limit=1000)
    assert [(r.result, r.count) for r in rows] == [("denied", n - 1), ("ok", 1), ("denied", 1)]
    assert rows[0].model == "scale" and rows[0].target == "scale/staging"


def test_retention_by_age_and_by_rows(store: KeyStore) -> None:
    now = utcnow()
    store.record_many([_event(target=f"old{i}", at=now - timedelta(days=100)) for i in range(3)])
    store.record_many([_event(target=f"new{i}") for i in range(12)])
    assert store.prune_audit(older_than=now - timedelta(days=90)) == 3
    assert {r.target for r in store.audit(limit=100)} == {f"new{i}" for i in range(12)}
    assert store.prune_audit(keep_rows=5) == 7
    assert [r.target for r in store.audit(limit=100)] == [f"new{i}" for i in reversed(range(7, 12))]
    assert store.prune_audit(older_than=now - timedelta(days=90), keep_rows=5) == 0


def test_the_writer_prunes_in_the_background(store: KeyStore) -> None:
    store.record_many([_event(target="old", at=utcnow() - timedelta(days=10))])
    store.record_many([_event(target="new")])
    writer = AuditWriter(lambda: store, retention_days=7)
    writer.start()
    try:
        assert writer.flush()  # the first pass prunes
    finally:
        writer.close()
    assert [r.target for r in store.audit()] == ["new"]


def test_reads_limited_to_some_models(store: KeyStore) -> None:
    store.record_many(
        [
            _event(target="scale/1"),
            _event(target="other/production"),
            _event(target="k2", action="create_key", model=None),
            _event(target="scale"),
        ]
    )
    assert [r.target for r in store.audit(models={"scale"})] == ["scale", "scale/1"]
    assert [r.target for r in store.audit(models={"scale", "other"})] == ["scale", "other/production", "scale/1"]
    assert store.audit(models=set()) == []
    assert len(store.audit()) == 4


def test_the_migration_gives_old_rows_their_model(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        for action, target in [("set_stage", "digits/production"), ("create_key", "3f9c0a1b2c4d"), ("audit", "")]:
            connection.exec_driver_sql(
                "INSERT INTO audit_events (at, key_id, key_name, action, target, method, path, status, result, "
                f"client) VALUES (CURRENT_TIMESTAMP, NULL, '', '{action}', '{target}', 'PUT', '/', 200, 'ok', '')"
            )
    migrate(engine)
    rows = {r.action: r for r in KeyStore(engine).audit()}
    assert rows["set_stage"].model == "digits" and rows["set_stage"].count == 1
    assert rows["create_key"].model is None and rows["audit"].model is None
