"""What the audit trail records of each control-plane action."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    key_id: str | None  # None: no valid key was sent
    key_name: str
    action: str  # the route's name: upload_version, set_stage, create_key, ...
    target: str  # digits, digits/4, digits/production, a key id
    method: str
    path: str
    status: int
    result: str  # ok, denied (401/403/429) or failed
    client: str  # the client's address
