"""Token buckets, on a clock the test moves."""

from __future__ import annotations

import pytest

from ferry.security.ratelimit import RateLimiter, parse_rate, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_bursts_to_its_rate_then_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.take("a", 5.0) for _ in range(5)] == [None] * 5
    wait = limiter.take("a", 5.0)
    assert wait == pytest.approx(0.2)
    clock.now += 0.2
    assert limiter.take("a", 5.0) is None
    assert limiter.take("a", 5.0) == pytest.approx(0.2)


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.take("a", 1.0) is None
    assert limiter.take("a", 1.0) is not None
    assert limiter.take("b", 1.0) is None


def test_a_slow_rate_holds_one_request() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("a", 1 / 60) is None
    assert limiter.take("a", 1 / 60) == pytest.approx(60.0)
    clock.now += 60
    assert limiter.take("a", 1 / 60) is None


def test_idle_time_refills_no_more_than_one_second() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.take("a", 2.0)
    clock.now += 3600
    assert [limiter.take("a", 2.0) is None for _ in range(3)] == [True, True, False]


def test_a_changed_rate_starts_a_fresh_bucket() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.take("a", 1.0) is None
    assert limiter.take("a", 1.0) is not None
    assert limiter.take("a", 10.0) is None


@pytest.mark.parametrize(
    ("text", "per_s"), [("50/s", 50.0), ("600/m", 10.0), ("3600/h", 1.0), ("0.5/s", 0.5), ("10 / min", 10 / 60)]
)
def test_parse_rate(text: str, per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["fast", "50", "0/s", "50/d", "-1/s"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after_s(0.01) == 1 and retry_after_s(1.2) == 2 and retry_after_s(60) == 60
