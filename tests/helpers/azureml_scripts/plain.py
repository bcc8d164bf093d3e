"""An undecorated scoring script: run() gets the body as text. What it returns depends on the body."""

import json
import os

import numpy as np

model = None


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")) as f:
        model = np.array(json.load(f))


def run(raw_data):
    if raw_data == "":
        return "empty body"
    if raw_data.startswith("text:"):
        return raw_data[5:]  # a str: Azure encodes it as JSON again
    doc = json.loads(raw_data)
    mode = doc.get("mode") if isinstance(doc, dict) else None
    if mode == "raise":
        raise ValueError("asked to fail")
    if mode == "none":
        return None
    if mode == "unencodable":
        return {"value": np.int64(3)}
    if mode == "nan":
        return [float("nan"), float("inf")]
    if mode == "echo":
        return doc
    data = np.array(doc["data"], dtype=float)
    return (data @ model).tolist()
