"""A module:function entry point: called with data=None once to initialize, then per batch."""
import os

import torch

_model = None


def handle(data, context):
    global _model
    if _model is None:
        properties = context.system_properties
        _model = torch.jit.load(os.path.join(properties["model_dir"], context.manifest["model"]["serializedFile"]))
    if data is None:
        return None
    x = torch.tensor([row["data"] for row in data], dtype=torch.float32)
    with torch.inference_mode():
        return _model(x).argmax(dim=1).tolist()
