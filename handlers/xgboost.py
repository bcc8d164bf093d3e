"""XGBoost Boosters from ``model.bst`` / ``model.json`` / ``model.ubj``; the string "NaN" is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import FIXED_COST_MAX_BATCH_SIZE, Capabilities, Handler, HandlerConfig


class XGBoostHandler(Handler):
    name = "xgboost"
    # A call's fixed cost dominates small batches (iris, 20 trees, 2 cores: 64 rows 232 us, 4,096
    # rows 887 us).
    capabilities = Capabilities(default_max_batch_size=FIXED_COST_MAX_BATCH_SIZE)
    artifact_names = ("model.bst", "model.json", "model.ubj")
    artifact_suffixes = ()

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        import xgboost

        self.booster = xgboost.Booster()
        self.booster.load_model(str(artifact))
        if config.intra_op_threads:
            self.booster.set_param({"nthread": config.intra_op_threads})
        n_features = self.booster.num_features()
        self._input = TensorSpec("instances", np.dtype(np.float32), (-1, n_features), nan_strings=True)

    def signature(self) -> Signature:
        return Signature((self._input,), (TensorSpec("predictions", np.dtype(np.float32)),))

    def describe(self) -> dict[str, Any]:
        return {"num_features": self.booster.num_features(), "num_boosted_rounds": self.booster.num_boosted_rounds()}

    def predict(self, request: InferRequest) -> InferResponse:
        x = request.inputs["instances"]
        return InferResponse({"predictions": self.booster.inplace_predict(x, missing=np.nan)})
