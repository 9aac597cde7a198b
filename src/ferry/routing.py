"""Routing an unversioned request: a weighted random choice over versions (a canary
split), built once per routing change so picking costs one random number and a bisect."""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from itertools import accumulate


class WeightedChoice:
    """Picks a key with probability weight / sum(weights); keys with weight 0 never."""

    def __init__(self, weights: Mapping[str, int], rng: random.Random | None = None) -> None:
        positive = sorted((key, weight) for key, weight in weights.items() if weight > 0)
        if not positive:
            raise ValueError("a weighted choice needs at least one weight above 0")
        self.keys = [key for key, _ in positive]
        self._bounds = list(accumulate(weight for _, weight in positive))
        self._total = self._bounds[-1]
        self._random = (rng or random.Random()).random

    def pick(self) -> str:
        return self.keys[bisect.bisect_right(self._bounds, self._random() * self._total)]

    def __repr__(self) -> str:
        sizes = [b - a for a, b in zip([0, *self._bounds], self._bounds, strict=False)]
        return f"WeightedChoice({dict(zip(self.keys, sizes, strict=True))})"
