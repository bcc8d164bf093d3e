"""W3 for MLServer: a custom runtime taking one BYTES input of base64 strings (v2 protocol)."""

import base64

import numpy as np
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class MeanColourModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        data = payload.inputs[0].data
        values = data.root if hasattr(data, "root") else data
        means = []
        for item in values:
            raw = base64.b64decode(item)
            means.extend(np.frombuffer(raw, dtype=np.uint8).reshape(224, 224, 3).mean(axis=(0, 1)).tolist())
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(
            name="mean_rgb", shape=[len(values), 3], datatype="FP64", data=means)])
