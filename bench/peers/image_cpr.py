"""W3 for Google's CPR server: a Predictor that decodes {"b64"} instances and returns mean colours."""

import base64

import numpy as np
from google.cloud.aiplatform.prediction.predictor import Predictor


class MeanColourPredictor(Predictor):
    def load(self, artifacts_uri: str, **kwargs) -> None:
        pass

    def preprocess(self, prediction_input: dict):
        return [base64.b64decode(inst["b64"]) for inst in prediction_input["instances"]]

    def predict(self, instances):
        return [np.frombuffer(b, dtype=np.uint8).reshape(224, 224, 3).mean(axis=(0, 1)).tolist() for b in instances]

    def postprocess(self, prediction_results) -> dict:
        return {"predictions": prediction_results}
