"""BentoML peer: one service wrapping a joblib scikit-learn model; POST /predict {"instances": [...]}."""

import base64
import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class Model:
    def __init__(self):
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api
    def predict(self, instances: list) -> dict:
        return {"predictions": self.model.predict(np.asarray(instances)).tolist()}


@bentoml.service(workers=1)
class ImageModel:
    """W3: {"instances": [{"b64": ...}]} → the mean colour of each 224×224×3 image."""

    @bentoml.api
    def predict(self, instances: list) -> dict:
        out = []
        for inst in instances:
            raw = base64.b64decode(inst["b64"])
            out.append(np.frombuffer(raw, dtype=np.uint8).reshape(224, 224, 3).mean(axis=(0, 1)).tolist())
        return {"predictions": out}
