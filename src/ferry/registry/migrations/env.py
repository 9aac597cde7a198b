"""Alembic environment. Migrations run through ``ferry.registry.db.migrate``, which passes
an open connection in ``config.attributes["connection"]`` (and holds the lock that keeps
two processes from migrating at once), so there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

from ferry.registry.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run registry migrations with ferry.registry.db.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: later migrations copy-and-move tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
