"""The audit trail: ``count`` (one row for many repeats of a refused attempt) and
``model`` (what a key limited to some models may read).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Actions about keys or the trail itself, not about a model: their target is a key id.
NOT_ABOUT_A_MODEL = ("create_key", "revoke_key", "list_keys", "audit")


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as table:
        table.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(sa.Column("model", sa.String(128), nullable=True))
    op.create_index("ix_audit_events_model", "audit_events", ["model"])
    # Rows written before: the model is the target's first part (digits/4 -> digits).
    events = sa.table(
        "audit_events", sa.column("action", sa.String), sa.column("target", sa.String), sa.column("model", sa.String)
    )
    connection = op.get_bind()
    targets = connection.execute(
        sa.select(events.c.target).where(events.c.target != "", events.c.action.not_in(NOT_ABOUT_A_MODEL)).distinct()
    ).scalars()
    for target in list(targets):
        connection.execute(
            events.update()
            .where(events.c.target == target, events.c.action.not_in(NOT_ABOUT_A_MODEL))
            .values(model=target.split("/")[0][:128])
        )


def downgrade() -> None:
    op.drop_index("ix_audit_events_model", "audit_events")
    with op.batch_alter_table("audit_events") as table:
        table.drop_column("model")
        table.drop_column("count")
