"""What the audit trail records of each control-plane action."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# Written in place of a detail (target, path, client, model) that differed between the
# attempts one aggregated row counts.
VARIOUS = "(various)"


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
    result: str  # ok, denied (401/403/429), failed, or dropped (see AuditWriter)
    client: str  # the client's address
    count: int = 1  # attempts this row stands for (repeated refusals are aggregated)
    model: str | None = None  # the model the action was about; None: none (keys, the audit)

    @property
    def changed_nothing(self) -> bool:
        """Refused, or failed on the client's input: such attempts are aggregated, as any
        valid key can repeat them as fast as it likes."""
        return self.result == "denied" or (self.result == "failed" and self.status < 500)
