"""Engines and migrations. SQLite (a file in the data directory) by default, PostgreSQL
(``postgresql+psycopg://...``) for several server processes on one registry."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock keys: any constant unlikely to clash with another application's.
MIGRATION_LOCK = 0x46455252_0001  # "FERR" + 1
REVISION_LOCK = 0x46455252_0002
# Execution option that makes a SQLite transaction BEGIN IMMEDIATE (see _sqlite_events).
WRITE = "ferry_write"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'registry.db'}"


def connect(url: str, **engine_args: Any) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine_args.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = create_engine(url, **engine_args)
        _sqlite_events(engine)
        return engine
    engine_args.setdefault("pool_pre_ping", True)  # survive a PostgreSQL restart
    return create_engine(url, **engine_args)


def _sqlite_events(engine: Engine) -> None:
    """pysqlite begins transactions lazily (at the first write), so two writers can both
    read ``max(number)`` before either locks the file. Ferry begins write transactions
    with BEGIN IMMEDIATE instead: the write lock is taken before the first read."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # WAL: readers (the revision poll) never wait for a writer.
        _use_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _use_wal(cursor: Any, timeout_s: float = 30.0) -> None:
    """Switch a SQLite file to WAL once. The switch needs the file to itself and, unlike
    other statements, does not wait out busy_timeout: while another process migrates it
    answers "database is locked" at once, so it is retried here."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def migrate(engine: Engine) -> None:
    """``alembic upgrade head``. Safe from several processes at once: on PostgreSQL an
    advisory lock serialises them (DDL is transactional, so the second one then finds
    the schema at head); on SQLite BEGIN IMMEDIATE does the same."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect().execution_options(**{WRITE: True}) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


class SchemaNotReady(Exception):
    """The database is not at this release's schema and this process may not migrate it."""


def wait_for_schema(
    engine: Engine, timeout_s: float, interval_s: float = 1.0, log: Callable[[str], None] | None = None
) -> None:
    """Wait until another process (``ferry migrate``, a Helm hook Job) has brought the
    database to this release's schema. SchemaNotReady after ``timeout_s``, or at once when
    the database is at a revision this release does not know (a newer release migrated it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    known = {script.revision for script in scripts.walk_revisions()}
    deadline = time.monotonic() + timeout_s
    said = None
    while True:
        try:
            current: str | None = current_revision(engine)
            problem = f"the schema is at {current or 'nothing (an empty database)'}, this release needs {head}"
        except OperationalError as exc:  # the database is not up yet
            current, problem = None, f"cannot reach the database: {str(exc.orig or exc).strip().splitlines()[0]}"
        if current == head:
            return
        if current is not None and current not in known:
            raise SchemaNotReady(f"the schema is at {current}, newer than this release's {head}: upgrade Ferry")
        if time.monotonic() >= deadline:
            raise SchemaNotReady(f"{problem} after {timeout_s:g} s: run `ferry migrate`")
        if log is not None and problem != said:
            log(f"waiting for `ferry migrate`: {problem}")
            said = problem
        time.sleep(interval_s)
