from __future__ import annotations

import random
from collections import Counter

import pytest

from ferry.routing import WeightedChoice


def test_picks_follow_the_weights() -> None:
    choice = WeightedChoice({"4": 90, "5": 10}, random.Random(7))
    counts = Counter(choice.pick() for _ in range(10_000))
    assert set(counts) == {"4", "5"}
    assert 8_700 <= counts["4"] <= 9_300


def test_zero_weights_never_answer_and_need_one_positive() -> None:
    choice = WeightedChoice({"1": 0, "2": 100})
    assert {choice.pick() for _ in range(100)} == {"2"}
    with pytest.raises(ValueError):
        WeightedChoice({"1": 0})
