"""An Azure ML scoring script for the iris model, run unchanged by hyperserve (or by Azure's own server).

POST /score {"instances": [[5.1, 3.5, 1.4, 0.2]]} → {"predictions": [0]}
"""

import json
import os

import joblib
import numpy as np

model = None


def init():
    global model
    # Azure mounts a model registered from a folder under its own name: <AZUREML_MODEL_DIR>/model/
    root = os.environ["AZUREML_MODEL_DIR"]
    path = next(os.path.join(d, "model.joblib") for d, _, files in os.walk(root) if "model.joblib" in files)
    model = joblib.load(path)


def run(raw_data):
    rows = np.asarray(json.loads(raw_data)["instances"], dtype=float)
    return {"predictions": model.predict(rows).tolist()}
