"""W4's TorchServe handler: rows of {"data": [floats]} (or a JSON list body) through a TorchScript MLP."""

import json

import torch


class MLPHandler:
    def __init__(self):
        self.model = None

    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(f"{model_dir}/{serialized}", map_location="cpu")
        self.model.eval()

    def handle(self, rows, context):
        batch = []
        for row in rows:
            value = row.get("data") if row.get("data") is not None else row.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value)
            if isinstance(value, dict):
                value = value.get("data", value.get("instances"))
            batch.append(value)
        with torch.inference_mode():
            out = self.model(torch.tensor(batch, dtype=torch.float32))
        return out.tolist()
