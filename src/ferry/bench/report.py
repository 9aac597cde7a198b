"""What a run measured: per concurrency level, throughput and latency percentiles, and
failures by status; written as a table, CSV or JSON. Pure functions of the numbers."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 90, 99)


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted values: the smallest value with at least
    ``p`` percent of the values at or below it (what perf_analyzer and wrk report: always
    a latency that was measured, never an interpolation). None for no values."""
    if not ordered:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"a percentile is above 0 and at most 100, not {p}")
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass
class LevelResult:
    """One concurrency level: the latencies (seconds) of the successful requests that
    completed within the measured window, and the failures that did."""

    concurrency: int
    duration_s: float
    rows_per_request: int
    latencies_s: list[float] = field(default_factory=list, repr=False)
    failures: Counter[str] = field(default_factory=Counter)
    # The first message seen per failure status, for the report.
    messages: dict[str, str] = field(default_factory=dict)
    # CPU time ferry bench itself used during the window (None: not measured).
    client_cpu_s: float | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request

    @property
    def client_busy(self) -> float | None:
        """The client's CPU time over the window's length: 1.0 is one core kept busy."""
        return None if self.client_cpu_s is None else self.client_cpu_s / self.duration_s

    def percentiles_ms(self) -> dict[int, float | None]:
        ordered = sorted(self.latencies_s)
        values = {p: percentile(ordered, p) for p in PERCENTILES}
        return {p: None if v is None else v * 1000 for p, v in values.items()}

    def as_dict(self) -> dict[str, Any]:
        p = self.percentiles_ms()
        return {
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 3),
            "requests": self.requests,
            "errors": self.errors,
            "requests_per_s": round(self.requests_per_s, 2),
            "rows_per_s": round(self.rows_per_s, 2),
            **{f"p{k}_ms": None if v is None else round(v, 3) for k, v in p.items()},
            "client_cpu_s": None if self.client_cpu_s is None else round(self.client_cpu_s, 3),
            "client_cpu_us_per_request": (
                round(self.client_cpu_s / self.requests * 1e6, 1)
                if self.client_cpu_s is not None and self.requests
                else None
            ),
            "errors_by_status": dict(self.failures),
            "error_messages": dict(self.messages),
        }


# The table is printed a row at a time, as each level finishes: fixed column widths.
COLUMNS = (("concurrency", 11), ("req/s", 10), ("rows/s", 10), ("p50 ms", 8), ("p90 ms", 8), ("p99 ms", 8),
           ("errors", 7))  # fmt: skip


def table_header() -> str:
    return "  ".join(name.rjust(width) for name, width in COLUMNS)


def table_row(level: LevelResult) -> str:
    p = level.percentiles_ms()
    cells = [
        str(level.concurrency),
        f"{level.requests_per_s:,.1f}",
        f"{level.rows_per_s:,.1f}",
        *("-" if p[k] is None else f"{p[k]:.2f}" for k in PERCENTILES),
        f"{level.errors:,}",
    ]
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))


# Above this share of one core, the client's event loop (one thread) is close to being
# what limits the rate rather than the server.
BUSY_CLIENT = 0.9


def busy_client_lines(levels: Sequence[LevelResult]) -> list[str]:
    """A warning per level where ferry bench itself was nearly saturated."""
    return [
        f"concurrency {level.concurrency}: ferry bench used {level.client_busy:.0%} of a CPU core, so it may be "
        "what limits req/s: run it on another machine, or check the figure with a second client (e.g. wrk)"
        for level in levels
        if level.client_busy is not None and level.client_busy > BUSY_CLIENT
    ]


def failure_lines(levels: Sequence[LevelResult]) -> list[str]:
    """One line per level and failure status, most frequent first, with what was said."""
    lines = []
    for level in levels:
        for status, count in level.failures.most_common():
            message = " ".join(level.messages.get(status, "").split())
            lines.append(f"concurrency {level.concurrency}: {count:,} x {status}" + (f": {message}" if message else ""))
        if not level.requests and not level.errors:
            lines.append(
                f"concurrency {level.concurrency}: no request completed within {level.duration_s:g} s; "
                "try a longer --duration"
            )
    return lines


CSV_FIELDS = ("concurrency", "duration_s", "requests", "errors", "requests_per_s", "rows_per_s", "p50_ms", "p90_ms",
              "p99_ms")  # fmt: skip


def to_csv(levels: Sequence[LevelResult]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for level in levels:
        writer.writerow({k: "" if v is None else v for k, v in level.as_dict().items()})
    return out.getvalue()


def to_json(run: dict[str, Any], levels: Sequence[LevelResult]) -> str:
    """``run``: what was measured (URL, model, protocol, ...); then one entry per level."""
    return json.dumps({**run, "levels": [level.as_dict() for level in levels]}, indent=2) + "\n"
