"""What the audit trail records of each control-plane action."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferry.registry.keys import KeyStore

log = logging.getLogger("ferry.audit")


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


def write_later(store: KeyStore, event: AuditEvent) -> None:
    """Write ``event`` in a worker thread, after the answer: the audit write never delays
    it. A failed write is logged."""
    task = asyncio.get_running_loop().run_in_executor(None, store.record, event)
    task.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not write an audit event: %s", future.exception())
