"""Routing: which loaded version of a model answers a request. A model's ``Routes`` are
built once per routing change (a swap, a canary split) so that picking costs one random
number and a bisect."""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferry.manager import LoadedVersion


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


@dataclass(frozen=True)
class Routes:
    """What one model's requests are routed to. Replaced whole, never changed in place,
    so a request sees either the old routes or the new."""

    versions: dict[str, LoadedVersion] = field(default_factory=dict)
    # Unversioned requests: the canary split when one is set, else this version.
    latest: LoadedVersion | None = None
    choice: WeightedChoice | None = None

    @classmethod
    def build(
        cls, versions: dict[str, LoadedVersion], default: str | None = None, weights: Mapping[str, int] | None = None
    ) -> Routes:
        """``default`` answers unversioned requests (the highest version if not given or
        not loaded) unless ``weights`` split them over loaded versions."""
        if default not in versions:
            default = max(versions, key=int) if versions else None
        live = {key: weight for key, weight in (weights or {}).items() if key in versions and weight > 0}
        choice = WeightedChoice(live) if live else None
        return cls(versions, versions[default] if default else None, choice)

    def pick(self) -> LoadedVersion | None:
        """The version that answers an unversioned request; None when none is loaded."""
        if self.choice is not None:
            return self.versions[self.choice.pick()]
        return self.latest
