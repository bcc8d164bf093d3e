"""scikit-learn estimators and pipelines from ``model.joblib`` / ``model.pkl`` (Vertex semantics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hyperserve.server.errors import InvalidInput, ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import FIXED_COST_MAX_BATCH_SIZE, Capabilities, Handler, HandlerConfig

METHODS = ("predict", "predict_proba", "decision_function", "transform")


def load_pickled(artifact: Path) -> Any:
    """joblib for .joblib, pickle for .pkl (both execute code from the artifact: trust it)."""
    if artifact.suffix == ".pkl":
        import pickle

        with artifact.open("rb") as f:
            return pickle.load(f)
    import joblib

    return joblib.load(artifact)


class SklearnHandler(Handler):
    name = "sklearn"
    # Much of scikit-learn's per-call overhead is Python, so calls run inline when short; its
    # models are plain Python objects and numpy arrays, safe to fork. That overhead (input checks,
    # ~140 us a call on iris) is most of a call: 4,096 rows cost 1.4 times 64, so calls merge more.
    capabilities = Capabilities(releases_gil=False, runs_inline=True, fork_safe=True,
                                default_max_batch_size=FIXED_COST_MAX_BATCH_SIZE)
    artifact_names = ("model.joblib", "model.pkl")
    artifact_suffixes = ()

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        if config.intra_op_threads > 0:
            # BLAS and OpenMP pools (an MLP's matmuls, tree ensembles): one batch job actor or
            # worker per core wants one thread each, not a pool per core in every one of them.
            from threadpoolctl import threadpool_limits

            self._thread_limits = threadpool_limits(limits=config.intra_op_threads)
        self.model = load_pickled(artifact)
        if config.method not in METHODS:
            raise ServingError(f"--method must be one of {METHODS}, got '{config.method}'")
        if not hasattr(self.model, config.method):
            raise ServingError(f"{type(self.model).__name__} has no method '{config.method}'")
        self.method_name = config.method
        self._method = getattr(self.model, config.method)
        n_features = getattr(self.model, "n_features_in_", None)
        shape = (-1, int(n_features)) if n_features is not None else None
        # A plain estimator takes numbers: a typed input gets strict 400s that name the offending
        # value and the native decoder. Pipelines may take strings (categorical columns): objects.
        numeric = shape is not None and not _takes_objects(self.model)
        self._input = TensorSpec("instances", np.dtype(np.float64) if numeric else None, shape)

    def signature(self) -> Signature:
        return Signature((self._input,), (TensorSpec("predictions"),))

    def describe(self) -> dict[str, Any]:
        return {"estimator": type(self.model).__name__, "method": self.method_name}

    def predict(self, request: InferRequest) -> InferResponse:
        x = request.inputs["instances"]
        if not isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=object)
        try:
            return InferResponse({"predictions": self._method(x)})
        except (ValueError, TypeError) as err:  # scikit-learn's input validation: the client's data
            raise InvalidInput(f"the model rejected the instances: {err}") from None


def _takes_objects(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    return isinstance(model, (Pipeline, ColumnTransformer, FeatureUnion))
