"""A scikit-learn model behind a TorchServe handler, as some teams ship it: no torch at all."""
import os

import joblib
import numpy as np


class SklearnHandler:
    def initialize(self, context):
        properties = context.system_properties
        self.model = joblib.load(os.path.join(properties["model_dir"], context.manifest["model"]["serializedFile"]))

    def handle(self, data, context):
        x = np.asarray([row["data"] for row in data], dtype=np.float64)
        return [int(v) for v in self.model.predict(x)]
