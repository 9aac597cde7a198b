"""ferry.stats: counters in the shape of the OIP statistics extension."""

from __future__ import annotations

import threading
import time

from ferry.stats import Duration, ModelStats


def test_duration_adds_counts_and_nanoseconds() -> None:
    duration = Duration()
    duration.add(100)
    duration.add(50, count=3)
    assert duration.to_json() == {"count": 4, "ns": 150}


def test_new_stats_are_all_zero() -> None:
    doc = ModelStats().to_json("m", "1")
    assert doc["name"] == "m"
    assert doc["version"] == "1"
    assert doc["inference_count"] == 0
    assert doc["execution_count"] == 0
    assert doc["last_inference"] == 0
    assert doc["batch_stats"] == []
    assert set(doc["inference_stats"]) == {
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    }
    assert all(v == {"count": 0, "ns": 0} for v in doc["inference_stats"].values())


def test_record_request_counts_success_and_failure_apart() -> None:
    stats = ModelStats()
    before = int(time.time() * 1000)
    stats.record_request(True, 1_000)
    stats.record_request(True, 2_000)
    stats.record_request(False, 500)
    doc = stats.to_json("m", "1")
    assert doc["inference_stats"]["success"] == {"count": 2, "ns": 3_000}
    assert doc["inference_stats"]["fail"] == {"count": 1, "ns": 500}
    assert before <= doc["last_inference"] <= int(time.time() * 1000)
    # Requests alone are not executions.
    assert doc["execution_count"] == 0
    assert doc["inference_count"] == 0


def test_record_execution_charges_each_request_the_batch_compute_time() -> None:
    stats = ModelStats()
    stats.record_execution(requests=3, rows=5, queue_ns=[10, 20, 30], input_ns=100, infer_ns=1_000, output_ns=7)
    doc = stats.to_json("m", "2")
    assert doc["execution_count"] == 1
    assert doc["inference_count"] == 5
    inference = doc["inference_stats"]
    assert inference["queue"] == {"count": 3, "ns": 60}
    assert inference["compute_input"] == {"count": 3, "ns": 300}
    assert inference["compute_infer"] == {"count": 3, "ns": 3_000}
    assert inference["compute_output"] == {"count": 3, "ns": 21}
    assert doc["batch_stats"] == [
        {
            "batch_size": 5,
            "compute_input": {"count": 1, "ns": 100},
            "compute_infer": {"count": 1, "ns": 1_000},
            "compute_output": {"count": 1, "ns": 7},
        }
    ]


def test_batch_stats_are_per_batch_size_in_order() -> None:
    stats = ModelStats()
    stats.record_execution(1, 8, [0], 1, 2, 3)
    stats.record_execution(1, 1, [0], 1, 2, 3)
    stats.record_execution(2, 8, [0, 0], 10, 20, 30)
    batches = stats.to_json("m", "1")["batch_stats"]
    assert [b["batch_size"] for b in batches] == [1, 8]
    assert batches[1]["compute_infer"] == {"count": 2, "ns": 22}
    assert batches[0]["compute_output"] == {"count": 1, "ns": 3}


def test_updates_from_many_threads_are_not_lost() -> None:
    stats = ModelStats()
    threads_n, per_thread = 8, 2_000

    def hammer() -> None:
        for _ in range(per_thread):
            stats.record_execution(2, 3, [1, 1], 1, 1, 1)
            stats.record_request(True, 1)

    threads = [threading.Thread(target=hammer) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    doc = stats.to_json("m", "1")
    total = threads_n * per_thread
    assert doc["execution_count"] == total
    assert doc["inference_count"] == 3 * total
    assert doc["inference_stats"]["success"]["count"] == total
    assert doc["inference_stats"]["queue"] == {"count": 2 * total, "ns": 2 * total}
    assert doc["batch_stats"][0]["compute_infer"]["count"] == total
