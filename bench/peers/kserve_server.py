"""KServe peer: a kserve.Model wrapping a joblib scikit-learn model (v1 protocol)."""

import argparse
import base64

import joblib
import kserve
import numpy as np


class SklearnModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


class MeanColourModel(kserve.Model):
    """W3: {"instances": [{"b64": ...}]} → the mean colour of each 224×224×3 image."""

    def __init__(self, name: str):
        super().__init__(name)
        self.ready = True

    def predict(self, payload, headers=None):
        out = []
        for inst in payload["instances"]:
            raw = base64.b64decode(inst["b64"])
            out.append(np.frombuffer(raw, dtype=np.uint8).reshape(224, 224, 3).mean(axis=(0, 1)).tolist())
        return {"predictions": out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--kind", choices=("sklearn", "image"), default="sklearn")
    args, _ = parser.parse_known_args()
    model = SklearnModel(args.model_name, args.model_path) if args.kind == "sklearn" else MeanColourModel(args.model_name)
    kserve.ModelServer(http_port=args.http_port, workers=1).start([model])
