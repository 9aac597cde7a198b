"""Who decides that a model file may run code as it loads or serves. Pickle/joblib
files, .skops files holding types skops does not trust by default, TorchScript (.pt) and
torch.export (.pt2) programs can execute anything in the server: a PyTorch program is
code, and torch's operators include ones that read any file the server can
(``torch.from_file``), so its answers could carry the server's secrets.

Trusting them is the operator's decision, made where only the operator can make it: the
files and config.yaml on the server's own disk (``ferry serve``: pickles still need
``trusted: true``), or ``ferry server``'s ``--trust-model``/``--trust-type`` for uploads.
An upload's config.yaml never can: its ``trusted`` keys are refused, and any that older
releases stored are ignored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ferry.config import ModelConfig
from ferry.errors import ConfigError

# Runtimes whose files are programs: an uploaded one serves only under --trust-model.
CODE_RUNTIMES = {"torch": "a PyTorch program (.pt, .pt2)", "python": "a Python file"}


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

    def check_runtime(self, model: str, runtime: str) -> None:
        """Refuse to load an uploaded program unless the operator trusts ``model``."""
        what = CODE_RUNTIMES.get(runtime)
        if what is not None and model not in self.models:
            raise ConfigError(
                f"refusing to load {what}: its code runs in the server and can read the server's "
                "files. Only the server's operator can allow it: ferry server --trust-model NAME."
            )

    def describe(self) -> str:
        parts = []
        if self.models:
            parts.append(f"pickles, PyTorch programs and any .skops type for models {', '.join(sorted(self.models))}")
        if self.types:
            parts.append(f".skops types {', '.join(self.types)} for every model")
        return "; ".join(parts)
