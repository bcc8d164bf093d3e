"""CPR code as users write it: a plain Predictor, one built on Google's base class, a custom Handler."""

from __future__ import annotations

import json
import os
import threading
import time

import joblib
import numpy as np


class PlainPredictor:
    """No Google import at all: the four methods CPR calls."""

    def load(self, artifacts_uri: str) -> None:
        self.model = joblib.load(os.path.join(artifacts_uri, "model.joblib"))
        self.calls_in_flight = 0
        self.lock = threading.Lock()

    def preprocess(self, prediction_input: dict):
        if prediction_input.get("parameters", {}).get("fail"):
            raise ValueError("asked to fail", 42)
        self.slow = float(prediction_input.get("parameters", {}).get("sleep", 0))
        return np.asarray(prediction_input["instances"])

    def predict(self, instances):
        with self.lock:
            self.calls_in_flight += 1
            overlapping = self.calls_in_flight > 1
        time.sleep(self.slow)
        with self.lock:
            self.calls_in_flight -= 1
        return self.model.predict(instances), overlapping

    def postprocess(self, prediction_results) -> dict:
        predictions, overlapping = prediction_results
        return {"predictions": predictions.tolist(), "overlapping": overlapping}


try:
    from fastapi import Response
    from google.cloud.aiplatform.prediction.handler import Handler
    from google.cloud.aiplatform.prediction.predictor import Predictor

    class ProbaPredictor(Predictor):
        """Subclasses Google's Predictor; load() gets the local artifacts directory."""

        def load(self, artifacts_uri: str, **kwargs) -> None:
            self.model = joblib.load(os.path.join(artifacts_uri, "model.joblib"))

        def preprocess(self, prediction_input: dict):
            return np.asarray(prediction_input["instances"], dtype=np.float64)

        def predict(self, instances):
            return self.model.predict_proba(instances)

        def postprocess(self, prediction_results) -> dict:
            return {"predictions": prediction_results.round(6).tolist()}

    class CsvHandler(Handler):
        """A custom CPR Handler: text/csv rows in, one label per line out."""

        def __init__(self, artifacts_uri: str, predictor=None):
            self.predictor = predictor()
            self.predictor.load(artifacts_uri)

        async def handle(self, request):
            body = (await request.body()).decode()
            rows = [[float(v) for v in line.split(",")] for line in body.strip().splitlines()]
            labels = self.predictor.predict(np.asarray(rows))
            return Response(content="\n".join(json.dumps(float(v)) for v in labels.max(axis=1)),
                            media_type="text/plain", headers={"x-rows": str(len(rows))})
except ImportError:  # google-cloud-aiplatform[prediction] is optional
    pass
