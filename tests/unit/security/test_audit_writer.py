"""AuditWriter: requests hand events over without touching the database, repeated
refusals become one row with a count, and nothing submitted is lost or miscounted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

import pytest

from ferry.security.audit import VARIOUS, AuditEvent, utcnow
from ferry.security.audit_writer import AuditWriter


class Sink:
    """The database's stand-in: keeps the rows and the threads that wrote them, and can be
    held (a database that does not answer)."""

    def __init__(self) -> None:
        self.rows: list[AuditEvent] = []
        self.threads: set[int] = set()
        self.open = threading.Event()
        self.open.set()
        self.pruned: list[tuple[datetime | None, int | None]] = []

    def record_many(self, events: list[AuditEvent]) -> None:
        self.threads.add(threading.get_ident())
        assert self.open.wait(30), "the test never let the sink go"
        self.rows.extend(events)

    def prune_audit(self, older_than: datetime | None, keep_rows: int | None) -> int:
        self.threads.add(threading.get_ident())
        self.pruned.append((older_than, keep_rows))
        return 0


def _event(key: str = "k1", action: str = "set_stage", status: int = 403, target: str = "scale/staging") -> AuditEvent:
    result = "ok" if status < 400 else "denied" if status in (401, 403, 429) else "failed"
    model = target.split("/")[0]
    return AuditEvent(
        utcnow(), key, key, action, target, "PUT", f"/api/v1/models/{target}", status, result, "1.2.3.4", model=model
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def writer(sink: Sink, clock: Clock) -> Iterator[AuditWriter]:
    writer = AuditWriter(lambda: sink, window_s=60, queue_size=100, clock=clock)
    writer.start()
    yield writer
    sink.open.set()
    writer.close()


def _counts(rows: list[AuditEvent]) -> dict[tuple[str | None, str, int], int]:
    totals: dict[tuple[str | None, str, int], int] = {}
    for row in rows:
        group = (row.key_id, row.action, row.status)
        totals[group] = totals.get(group, 0) + row.count
    return totals


def test_a_flood_of_refusals_is_a_few_rows_whose_counts_add_up(writer: AuditWriter, sink: Sink) -> None:
    n = 5000
    for _ in range(n):
        writer.submit(_event("k1"))
    for _ in range(7):
        writer.submit(_event("k1", status=429))  # another reason: its own row
    for _ in range(3):
        writer.submit(_event("k2", action="rollback", target="other"))
    assert writer.flush(close_windows=True)
    assert _counts(sink.rows) == {("k1", "set_stage", 403): n, ("k1", "set_stage", 429): 7, ("k2", "rollback", 403): 3}
    # The first of each window at once, its repeats in one row.
    assert len(sink.rows) == 6
    first, repeats = [r for r in sink.rows if r.key_id == "k1" and r.status == 403]
    assert (first.count, repeats.count) == (1, n - 1)
    assert repeats.target == "scale/staging" and repeats.model == "scale"


def test_changes_are_each_written_and_in_order(writer: AuditWriter, sink: Sink) -> None:
    events = [_event("k1", status=200, target=f"m{i}") for i in range(50)]
    for event in events:
        writer.submit(event)
    assert writer.flush()
    assert sink.rows == events


def test_the_first_refusal_is_written_before_its_window_closes(writer: AuditWriter, sink: Sink, clock: Clock) -> None:
    writer.submit(_event("k1"))
    writer.submit(_event("k1", target="other/staging"))
    writer.submit(_event("k1"))
    assert writer.flush()
    assert [r.count for r in sink.rows] == [1]  # the repeats wait for their window
    clock.now = 61.0  # the window has closed: the next refusal opens a new one
    writer.submit(_event("k1"))
    assert writer.flush()
    assert [r.count for r in sink.rows] == [1, 2, 1]
    # The repeats differed in target: the row says so rather than naming one of them.
    assert (sink.rows[1].target, sink.rows[1].path, sink.rows[1].model) == (VARIOUS, VARIOUS, None)
    assert sink.rows[1].client == "1.2.3.4"


def test_submit_never_waits_for_the_database(sink: Sink, clock: Clock) -> None:
    """With the database stuck, requests still hand their events over at once: beyond the
    queue's bound they are counted, and the count is written once the database answers."""
    writer = AuditWriter(lambda: sink, window_s=60, queue_size=100, clock=clock)
    writer.start()
    sink.open.clear()  # every write now hangs until the test lets it go
    submitter = threading.get_ident()
    total = 0
    try:
        for i in range(5000):  # changes: none aggregated
            writer.submit(_event("k1", status=200, target=f"m{i}"))
            total += 1
        for _ in range(5000):  # refusals: aggregated, never queued after the first
            writer.submit(_event("k2"))
            total += 1
    finally:
        sink.open.set()
        writer.close()
    assert submitter not in sink.threads  # the database is only ever touched by the writer
    assert sum(row.count for row in sink.rows) == total
    dropped = [row for row in sink.rows if row.result == "dropped"]
    # Counted as they came, and written each time the writer got through (once or twice).
    assert 1 <= len(dropped) <= 2 and all(row.action == "audit_dropped" for row in dropped)
    assert sum(row.count for row in dropped) > 5000 - 2 * 100
    assert len(sink.rows) <= 100 + 100 + 2 + 1  # the batch taken, the queue, the drops, k2's repeats


def test_close_writes_open_windows(sink: Sink, clock: Clock) -> None:
    """At shutdown (SIGTERM) every counted repeat is written: nothing is lost."""
    writer = AuditWriter(lambda: sink, window_s=3600, clock=clock)
    writer.start()
    for _ in range(10):
        writer.submit(_event("k1"))
    writer.close()
    assert [r.count for r in sink.rows] == [1, 9]


def test_without_a_window_every_refusal_is_a_row(sink: Sink, clock: Clock) -> None:
    writer = AuditWriter(lambda: sink, window_s=0, clock=clock)
    writer.start()
    for _ in range(5):
        writer.submit(_event("k1"))
    writer.close()
    assert [r.count for r in sink.rows] == [1] * 5


def test_a_server_fault_is_never_aggregated(writer: AuditWriter, sink: Sink) -> None:
    for _ in range(3):
        writer.submit(_event("k1", status=500))
    assert writer.flush()
    assert [r.count for r in sink.rows] == [1, 1, 1]


def test_retention_is_applied_from_the_writer_thread(sink: Sink, clock: Clock) -> None:
    writer = AuditWriter(lambda: sink, retention_days=30, max_rows=1000, clock=clock)
    writer.start()
    try:
        assert writer.flush()
    finally:
        writer.close()
    assert len(sink.pruned) == 1
    older_than, keep = sink.pruned[0]
    assert keep == 1000 and older_than is not None
    assert 29.9 < (utcnow() - older_than).total_seconds() / 86400 < 30.1
    assert threading.get_ident() not in sink.threads
