"""Ferry: turn a trained model file into a production inference service."""

from ferry.model import Model

__all__ = ["Model", "__version__"]
__version__ = "0.1.0"
