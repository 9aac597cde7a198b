"""Who decides that a model file may run code as it loads. Pickle/joblib files, and
.skops files holding types skops does not trust by default, can execute anything in the
server. Trusting them is the operator's decision, made where only the operator can make
it: a config.yaml on the server's own disk (``ferry serve``), or ``ferry server``'s
``--trust-model``/``--trust-type``. An upload's config.yaml never can: its ``trusted``
keys are refused, and any that older releases stored are ignored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ferry.config import ModelConfig


@dataclass(frozen=True)
class TrustPolicy:
    """The server's decision for registry models: which models may load code-running
    files, and which extra .skops types every model may hold."""

    models: frozenset[str] = frozenset()
    types: tuple[str, ...] = ()

    @classmethod
    def of(cls, models: Iterable[str] = (), types: Iterable[str] = ()) -> TrustPolicy:
        return cls(frozenset(models), tuple(dict.fromkeys(types)))

    def apply(self, model: str, config: ModelConfig) -> ModelConfig:
        """``config`` with exactly the trust this policy grants ``model``, whatever the
        stored config says."""
        return config.model_copy(update={"trusted": model in self.models, "trusted_types": list(self.types)})

    def describe(self) -> str:
        parts = []
        if self.models:
            parts.append(f"pickles and any .skops type for models {', '.join(sorted(self.models))}")
        if self.types:
            parts.append(f".skops types {', '.join(self.types)} for every model")
        return "; ".join(parts)
