"""The registry's first schema: models, versions, stages, traffic.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Written out rather than imported from ferry.registry.schema: a migration must keep
# creating the schema of its own day after schema.py moves on.
STATES = "'uploaded', 'validating', 'ready', 'failed', 'archived'"


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("runtime", sa.String(32), nullable=False),
        sa.Column("artifact_digest", sa.String(71), nullable=False),
        sa.Column("artifact_size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("warmup_ms", sa.Float(), nullable=True),
        sa.Column("uploaded_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_versions"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_versions_model_id_models", ondelete="CASCADE"),
        sa.UniqueConstraint("model_id", "number", name="uq_versions_model_id_number"),
        sa.CheckConstraint(f"state IN ({STATES})", name="ck_versions_state"),
    )
    op.create_index("ix_versions_artifact_digest", "versions", ["artifact_digest"])
    op.create_table(
        "stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stages"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_stages_model_id_models", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name="fk_stages_version_id_versions", ondelete="RESTRICT"
        ),
        sa.UniqueConstraint("model_id", "name", name="uq_stages_model_id_name"),
    )
    op.create_index("ix_stages_version_id", "stages", ["version_id"])
    op.create_table(
        "traffic",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("shadow_version", sa.Integer(), nullable=True),
        sa.Column("shadow_percent", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_traffic"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_traffic_model_id_models", ondelete="CASCADE"),
    )
    op.create_index("ix_traffic_revision", "traffic", ["revision"])


def downgrade() -> None:
    op.drop_table("traffic")
    op.drop_table("stages")
    op.drop_table("versions")
    op.drop_table("models")
