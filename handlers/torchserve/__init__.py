"""TorchServe model archives and their handlers, run unmodified (../shared/CONTRACTS.md §3)."""

from .handler import PredictionException, TorchServeHandler

__all__ = ["PredictionException", "TorchServeHandler"]
