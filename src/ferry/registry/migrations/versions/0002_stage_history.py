"""Stage history: each stage's undo stack, for rollback.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "stage_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stage_history"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_stage_history_model_id_models", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name="fk_stage_history_version_id_versions", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_stage_history_model_id", "stage_history", ["model_id"])
    op.create_index("ix_stage_history_version_id", "stage_history", ["version_id"])
    # Stages set before this migration start their history where they stand now: there
    # is nothing earlier to roll back to.
    op.execute(
        "INSERT INTO stage_history (model_id, stage, version_id, changed_at) "
        "SELECT model_id, name, version_id, CURRENT_TIMESTAMP FROM stages ORDER BY id"
    )


def downgrade() -> None:
    op.drop_table("stage_history")
