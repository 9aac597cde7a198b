"""ferry.batching: the Batcher queues, groups, runs and splits requests.

The runtime here is a small test double of the ``Runtime`` contract, so each test can
hold the model at a gate, see exactly which rows each call received, and fail on cue.
Real runtimes behind a Batcher are covered by the integration tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from ferry.batching import Batcher
from ferry.errors import FerryError, InvalidInput, ModelFailed, Unavailable
from ferry.runtimes import Runtime
from ferry.signature import Signature, TensorSpec
from ferry.stats import ModelStats

T = TypeVar("T")
Tensors = dict[str, np.ndarray]


class FakeRuntime:
    """y = 2 * x, row by row. Rows holding a negative value make the call fail."""

    def __init__(
        self,
        *,
        batchable: bool = True,
        error: Callable[[str], Exception] = ValueError,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.signature = Signature((TensorSpec("x", "FP32", (-1, -1)),), (TensorSpec("y", "FP32", (-1, -1)),))
        self.batchable = batchable
        self.calls: list[np.ndarray] = []
        self.events: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self._error = error
        self._transform = transform

    def predict(self, inputs: Tensors) -> Tensors:
        x = inputs["x"]
        self.calls.append(x.copy())
        self.events.append("predict")
        self.entered.set()
        assert self.gate.wait(timeout=10), "the test never opened the gate"
        if (x < 0).any():
            raise self._error("negative input")
        y = x * 2
        return {"y": self._transform(y) if self._transform else y}

    def close(self) -> None:
        self.events.append("close")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test body on a fresh event loop, never longer than 20 s."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


def make_batcher(*runtimes: FakeRuntime, stats: ModelStats | None = None, **options: Any) -> Batcher:
    settings: dict[str, Any] = {"max_batch_size": 8, "max_delay_ms": 0, "max_queue_size": 64, "timeout_s": 10.0}
    settings.update(options)
    runtime_list: list[Runtime] = list(runtimes)
    batcher = Batcher(runtime_list, stats=stats or ModelStats(), **settings)
    batcher.start()
    return batcher


def rows(*values: float) -> Tensors:
    """One request: one row per value, each row [v, v + 0.5]."""
    return {"x": np.array([[v, v + 0.5] for v in values], dtype=np.float32)}


async def hold(batcher: Batcher, runtime: FakeRuntime, value: float = 100.0) -> asyncio.Task[Tensors]:
    """Occupy the worker with one request held at the gate, so later ones queue up."""
    runtime.gate.clear()
    runtime.entered.clear()
    task = asyncio.create_task(batcher.submit(rows(value)))
    await until(runtime.entered.is_set)
    return task


async def queue(batcher: Batcher, requests: list[Tensors], **submit: Any) -> list[asyncio.Task[Tensors]]:
    before = batcher.queued
    tasks = [asyncio.create_task(batcher.submit(r, **submit)) for r in requests]
    await until(lambda: batcher.queued == before + len(requests))
    return tasks


def call_rows(runtime: FakeRuntime) -> list[int]:
    return [len(c) for c in runtime.calls]


def seen_values(runtime: FakeRuntime) -> set[float]:
    return {float(v) for call in runtime.calls for v in call[:, 0]}


# -- batching and splitting ------------------------------------------------------------


def test_a_lone_request_runs_at_once() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        result = await batcher.submit(rows(1, 2))
        np.testing.assert_array_equal(result["y"], rows(1, 2)["x"] * 2)
        assert call_rows(runtime) == [2]
        await batcher.drain()

    run(body())


def test_concurrent_requests_of_different_sizes_are_split_back_to_their_requests() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        stats = ModelStats()
        batcher = make_batcher(runtime, stats=stats)
        held = await hold(batcher, runtime)
        requests = [rows(1), rows(2, 3, 4), rows(5, 6), rows(7)]
        tasks = await queue(batcher, requests)

        runtime.gate.set()
        results = await asyncio.gather(*tasks)

        for request, result in zip(requests, results, strict=True):
            assert list(result) == ["y"]
            np.testing.assert_array_equal(result["y"], request["x"] * 2)
        await held
        # The held request alone, then all four queued ones as one call of 7 rows.
        assert call_rows(runtime) == [1, 7]
        assert runtime.calls[1][:, 0].tolist() == [1, 2, 3, 4, 5, 6, 7]

        doc = stats.to_json("m", "1")
        assert doc["execution_count"] == 2
        assert doc["inference_count"] == 8
        assert [b["batch_size"] for b in doc["batch_stats"]] == [1, 7]
        assert doc["inference_stats"]["queue"]["count"] == 5
        assert doc["inference_stats"]["compute_infer"]["count"] == 5
        await batcher.drain()

    run(body())


def test_incompatible_shapes_and_dtypes_are_not_batched_together() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime)
        a = {"x": np.full((1, 2), 1, dtype=np.float32)}
        b = {"x": np.full((2, 3), 2, dtype=np.float32)}
        c = {"x": np.full((1, 2), 3, dtype=np.float32)}
        d = {"x": np.full((1, 2), 4, dtype=np.float64)}
        tasks = await queue(batcher, [a, b, c, d])

        runtime.gate.set()
        results = await asyncio.gather(*tasks)
        await held

        for request, result in zip([a, b, c, d], results, strict=True):
            assert result["y"].shape == request["x"].shape
            assert result["y"].dtype == request["x"].dtype
            np.testing.assert_array_equal(result["y"], request["x"] * 2)
        # a and c share a call; b (other width) and d (other dtype) run apart, in queue order.
        assert [c_.shape for c_ in runtime.calls[1:]] == [(2, 2), (2, 3), (1, 2)]
        assert runtime.calls[1][:, 0].tolist() == [1, 3]
        assert runtime.calls[3].dtype == np.float64
        await batcher.drain()

    run(body())


def test_max_batch_size_is_respected() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, max_batch_size=4)
        held = await hold(batcher, runtime)
        requests = [rows(i) for i in range(6)]
        tasks = await queue(batcher, requests)

        runtime.gate.set()
        results = await asyncio.gather(*tasks)
        await held

        assert call_rows(runtime) == [1, 4, 2]
        for request, result in zip(requests, results, strict=True):
            np.testing.assert_array_equal(result["y"], request["x"] * 2)
        await batcher.drain()

    run(body())


def test_requests_that_would_overflow_the_batch_wait_for_the_next_one() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, max_batch_size=4)
        held = await hold(batcher, runtime)
        requests = [rows(1, 1, 1), rows(2, 2), rows(3, 3)]
        tasks = await queue(batcher, requests)

        runtime.gate.set()
        results = await asyncio.gather(*tasks)
        await held

        assert call_rows(runtime) == [1, 3, 4]
        assert runtime.calls[2][:, 0].tolist() == [2, 2, 3, 3]
        for request, result in zip(requests, results, strict=True):
            np.testing.assert_array_equal(result["y"], request["x"] * 2)
        await batcher.drain()

    run(body())


@pytest.mark.parametrize(("batchable", "max_batch_size"), [(False, 8), (True, 1), (True, 0)])
def test_no_batching_runs_each_request_alone(batchable: bool, max_batch_size: int) -> None:
    async def body() -> None:
        runtime = FakeRuntime(batchable=batchable)
        batcher = make_batcher(runtime, max_batch_size=max_batch_size)
        held = await hold(batcher, runtime)
        tasks = await queue(batcher, [rows(1), rows(2, 3), rows(4)])

        runtime.gate.set()
        await asyncio.gather(held, *tasks)

        assert call_rows(runtime) == [1, 1, 2, 1]
        await batcher.drain()

    run(body())


def test_non_batchable_model_may_return_any_number_of_rows() -> None:
    async def body() -> None:
        runtime = FakeRuntime(batchable=False, transform=lambda y: y.sum(axis=0, keepdims=True))
        batcher = make_batcher(runtime)
        result = await batcher.submit(rows(1, 2, 3))
        assert result["y"].shape == (1, 2)
        await batcher.drain()

    run(body())


def test_instances_run_in_parallel() -> None:
    async def body() -> None:
        first, second = FakeRuntime(), FakeRuntime()
        batcher = make_batcher(first, second, max_batch_size=1)
        first.gate.clear()
        second.gate.clear()
        tasks = [asyncio.create_task(batcher.submit(rows(v))) for v in (1, 2)]
        # Both instances are inside predict at the same time.
        await until(lambda: first.entered.is_set() and second.entered.is_set())
        first.gate.set()
        second.gate.set()
        results = await asyncio.gather(*tasks)
        assert [r["y"][0, 0] for r in results] == [2, 4]
        await batcher.drain()

    run(body())


# -- waiting for company ---------------------------------------------------------------


def test_greedy_by_default_a_free_worker_does_not_wait() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, max_delay_ms=0)
        first = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit(rows(2)))
        await asyncio.gather(first, second)
        assert call_rows(runtime) == [1, 1]
        await batcher.drain()

    run(body())


def test_max_delay_lets_requests_gather() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, max_delay_ms=400)
        started = time.monotonic()
        first = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit(rows(2, 3)))
        a, b = await asyncio.gather(first, second)
        elapsed = time.monotonic() - started

        assert call_rows(runtime) == [3]
        assert a["y"][:, 0].tolist() == [2]
        assert b["y"][:, 0].tolist() == [4, 6]
        assert elapsed >= 0.35  # the partial batch waited out its delay
        await batcher.drain()

    run(body())


def test_a_full_batch_does_not_wait_out_the_delay() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, max_delay_ms=5_000, max_batch_size=2)
        started = time.monotonic()
        first = asyncio.create_task(batcher.submit(rows(1)))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(batcher.submit(rows(2)))
        await asyncio.gather(first, second)
        assert time.monotonic() - started < 2.0
        assert call_rows(runtime) == [2]
        await batcher.drain()

    run(body())


# -- overload, deadlines, cancellation -------------------------------------------------


def test_full_queue_is_refused_with_unavailable() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, max_queue_size=2)
        held = await hold(batcher, runtime)
        tasks = await queue(batcher, [rows(1), rows(2)])

        with pytest.raises(Unavailable, match=r"queue is full \(2 requests waiting\)") as info:
            await batcher.submit(rows(3))
        assert info.value.status == 503
        assert info.value.retry_after_s >= 1

        runtime.gate.set()
        await asyncio.gather(held, *tasks)
        assert 3.0 not in seen_values(runtime)
        await batcher.drain()

    run(body())


def test_a_request_past_its_deadline_is_dropped_with_unavailable() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime)
        (late,) = await queue(batcher, [rows(7)], timeout_s=0.05)
        (patient,) = await queue(batcher, [rows(8)])
        await asyncio.sleep(0.1)

        runtime.gate.set()
        with pytest.raises(Unavailable, match="timed out"):
            await late
        assert (await patient)["y"][0, 0] == 16
        await held
        assert 7.0 not in seen_values(runtime)
        await batcher.drain()

    run(body())


def test_the_batcher_timeout_caps_the_request_timeout() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime, timeout_s=0.05)
        held = await hold(batcher, runtime)
        (late,) = await queue(batcher, [rows(7)], timeout_s=60)
        await asyncio.sleep(0.1)
        runtime.gate.set()
        with pytest.raises(Unavailable):
            await late
        await held
        assert 7.0 not in seen_values(runtime)
        await batcher.drain()

    run(body())


def test_a_queued_request_times_out_while_the_model_is_still_busy() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime)
        (late,) = await queue(batcher, [rows(7)], timeout_s=0.05)
        # The 503 comes at the deadline, not when the model call in front of it ends.
        with pytest.raises(Unavailable, match="timed out"):
            await asyncio.wait_for(late, 2)
        assert not runtime.gate.is_set()
        runtime.gate.set()
        await held
        assert 7.0 not in seen_values(runtime)
        await batcher.drain()

    run(body())


def test_inputs_disagreeing_on_the_batch_dimension_are_refused() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        request = {"x": np.zeros((1, 2), np.float32), "z": np.zeros((3, 2), np.float32)}
        with pytest.raises(InvalidInput, match="same first"):
            await batcher.submit(request)
        assert runtime.calls == []
        await batcher.drain()

    run(body())


def test_drain_gives_up_on_a_stuck_call_after_its_timeout() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime)
        started = time.monotonic()
        await batcher.drain(timeout_s=0.1)
        assert time.monotonic() - started < 5
        assert "close" in runtime.events
        runtime.gate.set()
        held.cancel()

    run(body())


def test_a_cancelled_request_is_never_computed() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime)
        gone, kept = await queue(batcher, [rows(7), rows(8)])

        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        runtime.gate.set()
        assert (await kept)["y"][0, 0] == 16
        await held

        assert 7.0 not in seen_values(runtime)
        assert call_rows(runtime) == [1, 1]
        await batcher.drain()

    run(body())


# -- failures --------------------------------------------------------------------------


def test_one_failing_request_does_not_fail_its_batch_neighbours() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        stats = ModelStats()
        batcher = make_batcher(runtime, stats=stats)
        held = await hold(batcher, runtime)
        good_1, bad, good_2 = await queue(batcher, [rows(1, 2), rows(-1), rows(3)])

        runtime.gate.set()
        assert (await good_1)["y"][:, 0].tolist() == [2, 4]
        assert (await good_2)["y"][:, 0].tolist() == [6]
        with pytest.raises(
            ModelFailed, match=r"the model failed while running the request \(ValueError\); see the server log"
        ) as info:
            await bad
        assert info.value.status == 500
        await held

        # The batch of 4 rows failed, then each request ran alone.
        assert call_rows(runtime) == [1, 4, 2, 1, 1]
        doc = stats.to_json("m", "1")
        assert doc["execution_count"] == 3  # only successful calls count
        assert doc["inference_count"] == 4
        await batcher.drain()

    run(body())


def test_errors_the_model_raises_as_ferry_errors_keep_their_type() -> None:
    async def body() -> None:
        runtime = FakeRuntime(error=InvalidInput)
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime)
        good, bad = await queue(batcher, [rows(1), rows(-1)])
        runtime.gate.set()
        with pytest.raises(InvalidInput, match=r"^negative input$"):
            await bad
        assert (await good)["y"][0, 0] == 2
        await held
        await batcher.drain()

    run(body())


def test_a_failing_lone_request_is_not_retried() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        with pytest.raises(ModelFailed):
            await batcher.submit(rows(-1))
        assert call_rows(runtime) == [1]
        await batcher.drain()

    run(body())


@pytest.mark.parametrize(
    "transform",
    [lambda y: y[:-1], lambda y: np.concatenate([y, y]), lambda y: y.sum()],
    ids=["one-row-short", "twice-the-rows", "scalar"],
)
def test_a_batchable_model_returning_the_wrong_number_of_rows_fails(
    transform: Callable[[np.ndarray], np.ndarray],
) -> None:
    async def body() -> None:
        runtime = FakeRuntime(transform=transform)
        batcher = make_batcher(runtime)
        held = await hold(batcher, runtime, value=0)
        tasks = await queue(batcher, [rows(1, 2), rows(3, 4)])
        runtime.gate.set()
        for task in [held, *tasks]:
            with pytest.raises(ModelFailed, match="one row per input row") as info:
                await task
            assert isinstance(info.value, FerryError)
        await batcher.drain()

    run(body())


# -- lifecycle -------------------------------------------------------------------------


def test_a_batcher_needs_a_runtime() -> None:
    with pytest.raises(ValueError, match="at least one runtime"):
        Batcher([], max_batch_size=1, max_delay_ms=0, max_queue_size=1, timeout_s=1, stats=ModelStats())


def test_drain_finishes_queued_work_then_closes_the_runtimes() -> None:
    async def body() -> None:
        first, second = FakeRuntime(), FakeRuntime()
        batcher = make_batcher(first, second, max_batch_size=1)
        first.gate.clear()
        second.gate.clear()
        requests = [rows(v) for v in range(1, 6)]
        tasks = [asyncio.create_task(batcher.submit(r)) for r in requests]
        await until(lambda: first.entered.is_set() and second.entered.is_set() and batcher.queued == 3)

        drained = asyncio.create_task(batcher.drain())
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable, match="being unloaded"):
            await batcher.submit(rows(9))
        assert not drained.done()
        assert "close" not in first.events + second.events

        first.gate.set()
        second.gate.set()
        await drained

        for task, request in zip(tasks, requests, strict=True):
            assert task.done()
            np.testing.assert_array_equal(task.result()["y"], request["x"] * 2)
        for runtime in (first, second):
            assert runtime.events[-1] == "close"
            assert runtime.events.count("close") == 1
        assert sorted(seen_values(first) | seen_values(second)) == [1, 2, 3, 4, 5]
        assert batcher.queued == 0

    run(body())


def test_drain_of_an_idle_batcher_closes_at_once() -> None:
    async def body() -> None:
        runtime = FakeRuntime()
        batcher = make_batcher(runtime)
        await batcher.drain()
        assert runtime.events == ["close"]
        with pytest.raises(Unavailable):
            await batcher.submit(rows(1))

    run(body())
