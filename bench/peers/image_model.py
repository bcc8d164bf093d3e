"""W3's model for hyperserve: the mean colour of a 224×224×3 uint8 image sent as {"b64": ...}.

The same computation is written for each peer in its own idiom (image_cpr.py, image_mlserver.py,
kserve_server.py --kind image, bentoml_service.py:ImageModel), so W3 measures what each server
does around it: parsing the JSON, decoding base64, and answering.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hyperserve.handlers.base import Handler, HandlerConfig
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

SHAPE = (224, 224, 3)


def mean_colour(image: bytes) -> list[float]:
    return np.frombuffer(image, dtype=np.uint8).reshape(SHAPE).mean(axis=(0, 1)).tolist()


class MeanColourHandler(Handler):
    name = "mean-colour"
    artifact_names = ("image_model.json",)

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        pass

    def signature(self) -> Signature:
        return Signature((TensorSpec("image_bytes", np.dtype(object), (-1,)),),
                         (TensorSpec("mean_rgb", np.dtype(np.float64), (-1, 3)),))

    def predict(self, request: InferRequest) -> InferResponse:
        images = request.inputs["image_bytes"]
        out = np.empty((len(images), 3))
        for i, image in enumerate(images):
            out[i] = np.frombuffer(image, dtype=np.uint8).reshape(SHAPE).mean(axis=(0, 1))
        return InferResponse({"mean_rgb": out})
