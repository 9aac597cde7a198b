"""ferry.bench.report: the percentile math, the per-level figures, and the table, CSV and
JSON written from them."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest

from ferry.bench.report import (
    LevelResult,
    busy_client_lines,
    failure_lines,
    percentile,
    table_header,
    table_row,
    to_csv,
    to_json,
)


def test_nearest_rank_percentiles_are_measured_values() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0.5) == 1


def test_percentiles_of_few_values() -> None:
    assert percentile([7.0], 50) == 7.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0  # ceil(0.5 * 2) = 1st value
    assert percentile([1.0, 2.0], 51) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0  # ceil(3.6) = 4th
    assert percentile([], 50) is None


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_a_percentile_out_of_range_is_refused(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], p)


def level(**overrides: object) -> LevelResult:
    result = LevelResult(concurrency=4, duration_s=2.0, rows_per_request=8)
    result.latencies_s = [i / 1000 for i in range(1, 201)]  # 1..200 ms, unsorted below
    result.latencies_s.reverse()
    for key, value in overrides.items():
        setattr(result, key, value)
    return result


def test_level_figures() -> None:
    result = level(failures=Counter({"HTTP 503": 3, "UNAVAILABLE": 1}), client_cpu_s=0.5)
    assert result.requests == 200
    assert result.errors == 4
    assert result.requests_per_s == 100.0
    assert result.rows_per_s == 800.0
    assert result.percentiles_ms() == pytest.approx({50: 100.0, 90: 180.0, 99: 198.0})
    assert result.client_busy == 0.25


def test_the_table_row_lines_up_with_the_header() -> None:
    header, row = table_header(), table_row(level(failures=Counter({"HTTP 500": 12})))
    assert header.split() == ["concurrency", "req/s", "rows/s", "p50", "ms", "p90", "ms", "p99", "ms", "errors"]
    assert row.split() == ["4", "100.0", "800.0", "100.00", "180.00", "198.00", "12"]
    assert len(row) == len(header)


def test_a_level_without_answers_shows_dashes_and_says_why() -> None:
    empty = LevelResult(concurrency=1, duration_s=1.0, rows_per_request=1)
    assert table_row(empty).split() == ["1", "0.0", "0.0", "-", "-", "-", "0"]
    assert "longer --duration" in failure_lines([empty])[0]
    assert empty.as_dict()["p50_ms"] is None


def test_failure_lines_name_each_status_with_what_the_server_said() -> None:
    result = level(
        failures=Counter({"HTTP 400": 5, "connection error": 9}),
        messages={"HTTP 400": '{"error": "input \'x\'\nis wrong"}', "connection error": "reset"},
    )
    assert failure_lines([result]) == [
        "concurrency 4: 9 x connection error: reset",
        'concurrency 4: 5 x HTTP 400: {"error": "input \'x\' is wrong"}',
    ]


def test_a_busy_client_is_pointed_out() -> None:
    assert busy_client_lines([level(client_cpu_s=1.0)]) == []
    (line,) = busy_client_lines([level(client_cpu_s=1.9)])
    assert "95% of a CPU core" in line


def test_csv_has_one_row_per_level() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv([level(), LevelResult(16, 2.0, 1)]))))
    assert [r["concurrency"] for r in rows] == ["4", "16"]
    assert rows[0]["requests_per_s"] == "100.0"
    assert rows[0]["rows_per_s"] == "800.0"
    assert rows[0]["p99_ms"] == "198.0"
    assert rows[1]["p50_ms"] == ""


def test_json_holds_the_run_and_every_level() -> None:
    doc = json.loads(to_json({"model": "m"}, [level(failures=Counter({"HTTP 503": 2}), client_cpu_s=0.4)]))
    assert doc["model"] == "m"
    (entry,) = doc["levels"]
    assert entry["errors_by_status"] == {"HTTP 503": 2}
    assert entry["requests"] == 200
    assert entry["client_cpu_us_per_request"] == 2000.0
