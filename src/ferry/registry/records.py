"""What the Registry hands out: plain frozen records, so callers never hold an ORM object
whose session has closed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ferry.registry.schema import ModelRow, TrafficRow, VersionRow, VersionState


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    task: str
    labels: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: ModelRow) -> Model:
        return cls(row.name, row.description, row.task, dict(row.labels or {}), row.created_at)


@dataclass(frozen=True)
class Version:
    model: str
    number: int
    runtime: str
    artifact_digest: str
    artifact_size: int
    filename: str
    state: VersionState
    uploaded_by: str
    created_at: datetime
    signature: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    failure_reason: str | None = None
    warmup_ms: float | None = None

    @classmethod
    def of(cls, row: VersionRow, model: str) -> Version:
        return cls(
            model=model,
            number=row.number,
            runtime=row.runtime,
            artifact_digest=row.artifact_digest,
            artifact_size=row.artifact_size,
            filename=row.filename,
            state=VersionState(row.state),
            uploaded_by=row.uploaded_by,
            created_at=row.created_at,
            signature=row.signature,
            config=row.config,
            failure_reason=row.failure_reason,
            warmup_ms=row.warmup_ms,
        )


@dataclass(frozen=True)
class Traffic:
    """The split over versions. Empty ``weights``: no split set; the router follows the
    production stage."""

    model: str
    weights: dict[int, int] = field(default_factory=dict)
    shadow_version: int | None = None
    shadow_percent: int = 0
    revision: int = 0
    updated_at: datetime | None = None

    @classmethod
    def of(cls, row: TrafficRow, model: str) -> Traffic:
        weights = {int(number): int(weight) for number, weight in (row.weights or {}).items()}
        return cls(model, weights, row.shadow_version, row.shadow_percent, row.revision, row.updated_at)

    def uses(self, number: int) -> bool:
        """Whether version ``number`` gets any request, as a weight or as the shadow."""
        return self.weights.get(number, 0) > 0 or self.shadow_version == number
