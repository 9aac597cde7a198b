"""The registry's tables (SQLAlchemy 2 declarative). Changing anything here needs a new
Alembic revision in ``migrations/versions``; a test compares the two."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class VersionState(enum.StrEnum):
    UPLOADED = "uploaded"  # bytes stored, not looked at yet
    VALIDATING = "validating"  # being loaded and warmed up
    READY = "ready"  # may take traffic
    FAILED = "failed"  # never takes traffic; failure_reason says why
    ARCHIVED = "archived"  # kept for the record, not served


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the registry")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    task: Mapped[str] = mapped_column(String(128), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The highest version number ever given out: numbers are never reused, even after
    # the newest version is deleted.
    last_version: Mapped[int] = mapped_column(Integer, default=0)


_STATES = ", ".join(f"'{state.value}'" for state in VersionState)


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("model_id", "number"),
        CheckConstraint(f"state IN ({_STATES})", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(String(32))
    artifact_digest: Mapped[str] = mapped_column(String(71), index=True)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    # The original file name: its suffix picks the loader (.onnx, .skops, .pt2, ...).
    filename: Mapped[str] = mapped_column(String(255))
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default=VersionState.UPLOADED.value)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    warmup_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    uploaded_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StageRow(Base):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # RESTRICT: the database itself refuses to drop a version a stage points at.
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="RESTRICT"), index=True)


class TrafficRow(Base):
    """One row per model. ``revision`` is bumped to the global maximum + 1 on every stage
    or traffic change, so ``SELECT max(revision)`` tells another server process cheaply
    that something changed."""

    __tablename__ = "traffic"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    # {"<version number>": weight}; JSON object keys are strings. Empty: no split set.
    weights: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    shadow_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shadow_percent: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=0, index=True)


class StageHistoryRow(Base):
    """Each stage's undo stack: ``set_stage`` pushes the version a stage now points at,
    ``delete_stage`` pushes NULL (no version), ``Registry.rollback`` pops the top entry,
    so the entry beneath it is current again. ``version_id`` is also NULL for an entry
    whose version has since been deleted: it cannot be rolled back to."""

    __tablename__ = "stage_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKeyRow(Base):
    """An API key: its id and the SHA-256 digest of its secret, never the secret."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # Model names the key is limited to; NULL: every model.
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditRow(Base):
    """One control-plane action, allowed or refused, or ``count`` repeats of an attempt
    that changed nothing (ferry.security.audit_writer). Rows are only ever added, and
    deleted by retention."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    key_id: Mapped[str | None] = mapped_column(String(12), nullable=True, index=True)
    key_name: Mapped[str] = mapped_column(String(128), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), default="", index=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(64), default="")
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The model the action was about (NULL: none, e.g. keys): what a key limited to some
    # models may read of the trail.
    model: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
