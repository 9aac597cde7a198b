"""ferry.web.live: percentiles of the sparse latency histogram, and LiveStats sampling
real ModelStats of a few stand-in versions (a fake clock sets each interval's length)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from ferry.manager import ModelManager
from ferry.stats import LATENCY_BOUNDS_NS, ModelStats
from ferry.web import live
from ferry.web.live import LiveStats, percentile_ms

MS = 1_000_000  # ns


# -- percentile_ms --------------------------------------------------------------------


def _ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def test_an_empty_histogram_has_no_percentile() -> None:
    assert percentile_ms({}, 0.5) is None
    assert percentile_ms({}, 0.99) is None


def test_one_bucket_is_interpolated_between_its_bounds() -> None:
    low, high = LATENCY_BOUNDS_NS[9], LATENCY_BOUNDS_NS[10]
    assert percentile_ms({10: 4}, 0.5) == _ms(low + (high - low) * 0.5)
    assert percentile_ms({10: 4}, 0.25) == _ms(low + (high - low) * 0.25)
    assert percentile_ms({10: 4}, 1.0) == _ms(high)
    p99 = percentile_ms({10: 4}, 0.99)
    assert p99 is not None and _ms(low) < p99 <= _ms(high)
    # The first bucket starts at zero.
    assert percentile_ms({0: 10}, 0.5) == _ms(LATENCY_BOUNDS_NS[0] / 2)
    assert percentile_ms({0: 10}, 0.0) == 0.0


def test_percentiles_pick_the_bucket_holding_their_rank() -> None:
    histogram = {0: 50, 10: 50}
    assert percentile_ms(histogram, 0.5) == _ms(LATENCY_BOUNDS_NS[0])  # the end of the first bucket
    low, high = LATENCY_BOUNDS_NS[9], LATENCY_BOUNDS_NS[10]
    assert percentile_ms(histogram, 0.99) == _ms(low + (high - low) * (99 - 50) / 50)
    # The order the dict was built in does not matter.
    assert percentile_ms({10: 50, 0: 50}, 0.99) == percentile_ms(histogram, 0.99)


def test_the_overflow_bucket_reads_as_the_last_bound() -> None:
    overflow = len(LATENCY_BOUNDS_NS)
    assert percentile_ms({overflow: 3}, 0.5) == _ms(LATENCY_BOUNDS_NS[-1])
    assert percentile_ms({0: 99, overflow: 1}, 0.5) == _ms(LATENCY_BOUNDS_NS[0] * 0.5 / 0.99)
    assert percentile_ms({0: 99, overflow: 1}, 1.0) == _ms(LATENCY_BOUNDS_NS[-1])


def test_percentiles_of_recorded_requests_fall_in_their_bucket() -> None:
    stats = ModelStats()
    for ns in (3 * MS, 3 * MS, 3 * MS, 200 * MS):
        stats.record_request(True, ns)
    *_, counts = stats.snapshot()
    histogram = {i: n for i, n in enumerate(counts) if n}
    p50 = percentile_ms(histogram, 0.5)
    p99 = percentile_ms(histogram, 0.99)
    assert p50 is not None and p99 is not None
    # Within a factor of 1.5 (one bucket) of the true values.
    assert 3 / 1.5 <= p50 <= 3 * 1.5
    assert 200 / 1.5 <= p99 <= 200 * 1.5


# -- LiveStats --------------------------------------------------------------------------


@dataclass
class Batcher:
    queued: int = 0


@dataclass
class Version:
    name: str
    version: str
    stats: ModelStats = field(default_factory=ModelStats)
    batcher: Batcher = field(default_factory=Batcher)


class Models:
    """What LiveStats reads of a ModelManager: the loaded versions."""

    def __init__(self, *versions: Version) -> None:
        self.versions = list(versions)

    def loaded(self) -> list[Version]:
        return list(self.versions)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(live, "time", clock)
    return clock


def _live(models: Models, keep: int = 150) -> LiveStats:
    return LiveStats(cast(ModelManager, models), interval_s=2.0, keep=keep)


def _requests(stats: ModelStats, ok: int, failed: int = 0, ns: int = 2 * MS) -> None:
    for _ in range(ok):
        stats.record_request(True, ns)
    for _ in range(failed):
        stats.record_request(False, ns)


def _sample_after(stats: LiveStats, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    stats.sample()


def test_one_interval_counts_requests_errors_batches_and_queue(clock: Clock) -> None:
    models = Models(Version("digits", "1"), Version("digits", "2"), Version("other", "1"))
    stats = _live(models)
    one, two, other = (v.stats for v in models.versions)
    _requests(one, ok=6, failed=2)
    _requests(two, ok=2)
    _requests(other, ok=7, failed=1)
    one.record_execution(4, 4, [0] * 4, 0, 1000, 0)
    one.record_execution(4, 8, [0] * 4, 0, 1000, 0)
    models.versions[0].batcher.queued = 3
    models.versions[1].batcher.queued = 1
    one.request_started()  # still running when sampled
    _sample_after(stats, clock, 2.0)

    report = stats.report(["digits"])
    assert report["interval_s"] == 2.0
    assert report["time"] == [round(1_700_000_000.0 + 1002.0, 3)]
    assert set(report["models"]) == {"digits"}
    digits = report["models"]["digits"]
    assert digits["requests"] == 10 and digits["errors"] == 2
    assert digits["series"]["rps"] == [5.0]
    assert digits["series"]["errors"] == [1.0]
    assert digits["series"]["batch"] == [6.0]  # 12 rows in 2 model calls
    assert digits["series"]["queue"] == [4]
    assert digits["now"] == {
        "rps": 5.0,
        "error_ratio": 0.2,
        "p50_ms": digits["now"]["p50_ms"],
        "p99_ms": digits["now"]["p99_ms"],
        "batch": 6.0,
        "queue": 4,
        "inflight": 1,
    }
    assert 2 / 1.5 <= digits["now"]["p50_ms"] <= 2 * 1.5
    assert set(digits["versions"]) == {"1", "2"}
    assert digits["versions"]["1"]["series"]["rps"] == [4.0]
    assert digits["versions"]["1"]["series"]["errors"] == [1.0]
    assert digits["versions"]["2"]["series"]["rps"] == [1.0]
    assert digits["versions"]["2"]["series"]["batch"] == [None]  # no model calls recorded
    assert digits["versions"]["2"]["now"]["error_ratio"] == 0.0
    # The total sums only the models asked for.
    assert report["total"]["requests"] == 10 and report["total"]["errors"] == 2
    assert report["total"]["series"]["rps"] == [5.0]
    both = stats.report(["digits", "other"])
    assert set(both["models"]) == {"digits", "other"}
    assert both["total"]["requests"] == 18 and both["total"]["errors"] == 3
    assert both["total"]["series"]["rps"] == [9.0]
    assert both["models"]["other"]["versions"]["1"]["series"]["rps"] == [4.0]
    nothing = stats.report([])
    assert nothing["models"] == {} and nothing["total"]["requests"] == 0
    assert nothing["total"]["series"]["rps"] == [0.0]


def test_each_interval_holds_what_happened_in_it(clock: Clock) -> None:
    models = Models(Version("m", "1"))
    stats = _live(models)
    counters = models.versions[0].stats
    _requests(counters, ok=4)
    _sample_after(stats, clock, 2.0)
    _sample_after(stats, clock, 2.0)  # nothing happened
    _requests(counters, ok=3, failed=3)
    counters.record_execution(6, 6, [0] * 6, 0, 1000, 0)
    _sample_after(stats, clock, 4.0)  # a late sample: a longer interval

    m = stats.report(["m"])["models"]["m"]
    assert m["series"]["rps"] == [2.0, 0.0, 1.5]
    assert m["series"]["errors"] == [0.0, 0.0, 0.75]
    assert m["series"]["batch"] == [None, None, 6.0]
    assert m["series"]["p50_ms"][1] is None and m["series"]["p50_ms"][0] is not None
    assert m["requests"] == 10 and m["errors"] == 3
    # "now": the last 8 s are all within the last ten.
    assert m["now"]["rps"] == round(10 / 8, 2)
    assert m["now"]["error_ratio"] == 0.3


def test_now_covers_about_the_last_ten_seconds(clock: Clock) -> None:
    models = Models(Version("m", "1"))
    stats = _live(models)
    _requests(models.versions[0].stats, ok=100)
    _sample_after(stats, clock, 2.0)
    for _ in range(4):
        _sample_after(stats, clock, 2.0)
    m = stats.report(["m"])["models"]["m"]
    assert m["now"]["rps"] == 10.0  # 100 requests in the last five 2 s intervals
    assert m["now"]["p50_ms"] is not None
    _sample_after(stats, clock, 2.0)
    m = stats.report(["m"])["models"]["m"]
    assert m["now"]["rps"] == 0.0  # the busy interval is now older than ten seconds
    assert m["now"]["p50_ms"] is None and m["now"]["error_ratio"] == 0.0
    assert m["requests"] == 100  # still counted since the start
    assert len(m["series"]["rps"]) == 6


def test_a_reloaded_version_never_goes_negative(clock: Clock) -> None:
    models = Models(Version("m", "1"))
    stats = _live(models)
    _requests(models.versions[0].stats, ok=50, failed=5)
    models.versions[0].stats.record_execution(50, 50, [0] * 50, 0, 1000, 0)
    _sample_after(stats, clock, 2.0)
    # Loaded again: a new ModelStats starting from zero, already with a little traffic.
    models.versions[0] = Version("m", "1")
    _requests(models.versions[0].stats, ok=1, failed=1, ns=900 * MS)
    _sample_after(stats, clock, 2.0)

    m = stats.report(["m"])["models"]["m"]
    series = m["series"]
    assert series["rps"] == [27.5, 1.0]
    assert series["errors"] == [2.5, 0.5]
    assert series["batch"] == [50.0, None]  # one call of 50 rows, then none
    assert all(v >= 0 for v in series["rps"] + series["errors"])
    p50 = series["p50_ms"][1]
    assert p50 is not None and 900 / 1.5 <= p50 <= 900 * 1.5  # only the new requests
    assert m["requests"] == 57 and m["errors"] == 6


def test_a_version_that_comes_and_goes_keeps_its_series_aligned(clock: Clock) -> None:
    one, two = Version("m", "1"), Version("m", "2")
    models = Models(one)
    stats = _live(models)
    _requests(one.stats, ok=2)
    _sample_after(stats, clock, 2.0)
    models.versions.append(two)
    _requests(two.stats, ok=4)
    _sample_after(stats, clock, 2.0)
    models.versions.remove(one)
    _requests(two.stats, ok=2)
    _sample_after(stats, clock, 2.0)

    versions = stats.report(["m"])["models"]["m"]["versions"]
    assert versions["1"]["series"]["rps"] == [1.0, 0.0, 0.0]
    assert versions["2"]["series"]["rps"] == [0.0, 2.0, 1.0]
    # Unloaded and loaded again: counted from its new ModelStats, not from the old reading.
    models.versions.append(Version("m", "1"))
    _requests(models.versions[-1].stats, ok=6)
    _sample_after(stats, clock, 2.0)
    report = stats.report(["m"])["models"]["m"]
    assert report["versions"]["1"]["series"]["rps"][-1] == 3.0
    assert report["requests"] == 14


def test_versions_sort_by_number(clock: Clock) -> None:
    models = Models(Version("m", "10"), Version("m", "9"), Version("m", "1"))
    stats = _live(models)
    _sample_after(stats, clock, 2.0)
    assert list(stats.report(["m"])["models"]["m"]["versions"]) == ["1", "9", "10"]


def test_only_the_last_intervals_are_kept(clock: Clock) -> None:
    models = Models(Version("m", "1"))
    stats = _live(models, keep=3)
    for i in range(5):
        _requests(models.versions[0].stats, ok=2 * i)
        _sample_after(stats, clock, 2.0)
    report = stats.report(["m"])
    assert len(report["time"]) == 3
    assert report["models"]["m"]["series"]["rps"] == [2.0, 3.0, 4.0]
    assert report["models"]["m"]["requests"] == 20  # totals are not trimmed


def test_run_samples_every_interval() -> None:
    models = Models(Version("m", "1"))
    stats = LiveStats(cast(ModelManager, models), interval_s=0.01)
    models.versions[0].stats.record_request(True, MS)

    async def briefly() -> None:
        task = asyncio.create_task(stats.run())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(briefly())
    report: dict[str, Any] = stats.report(["m"])
    assert len(report["time"]) >= 3
    assert report["models"]["m"]["requests"] == 1
    assert sum(report["models"]["m"]["series"]["rps"]) > 0
