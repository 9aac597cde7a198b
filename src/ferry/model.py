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
    your outputs back, so ``predict`` must return one row per input row. Optional
    ``preprocess`` and ``postprocess`` run per request around the batched ``predict``
    (parse text, tokenise, decode a file; turn scores into names).
    """

    inputs: ClassVar[list[TensorSpec] | None] = None
    outputs: ClassVar[list[TensorSpec] | None] = None
    batchable: ClassVar[bool] = False
    # False when the same inputs may give another answer (sampling, a clock, a live
    # lookup): the response cache is then never used for this model.
    deterministic: ClassVar[bool] = True

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        # The version directory, so load() can find files shipped beside model.py.
        self.path = path
        self.config = config

    def load(self) -> None:
        """Read weights and build whatever predict() needs; called once per instance."""

    def preprocess(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request's inputs as the client sent them (the declared ``inputs``) -> what
        ``predict`` takes. Runs per request, in a worker thread, before batching; it may
        run for several requests at once, so keep it free of shared state."""
        return inputs

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request's rows of ``predict``'s outputs -> the declared ``outputs``."""
        return outputs

    def close(self) -> None:
        """Release what load() acquired."""
