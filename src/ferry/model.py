"""``ferry.Model``: subclass it in a ``model.py`` to serve anything Python can run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ferry.signature import TensorSpec


class Model:
    """Put a subclass in ``<repo>/<name>/<version>/model.py``.

    Declare ``inputs`` and ``outputs`` (or put them in config.yaml), load what you need
    in ``load()``, and answer in ``predict()``. With ``batchable = True`` the first axis
    of every tensor is the batch: Ferry stacks concurrent requests along it and splits
    your outputs back, so ``predict`` must return one row per input row.
    """

    inputs: ClassVar[list[TensorSpec] | None] = None
    outputs: ClassVar[list[TensorSpec] | None] = None
    batchable: ClassVar[bool] = False

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        # The version directory, so load() can find files shipped beside model.py.
        self.path = path
        self.config = config

    def load(self) -> None:
        """Read weights and build whatever predict() needs; called once per instance."""

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")

    def close(self) -> None:
        """Release what load() acquired."""
