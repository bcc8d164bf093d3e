"""A plain handler class that does not import TorchServe: the context API, metrics, per-item status."""
import os
import time

import torch

from errors import PredictionException


class PlainHandler:
    def __init__(self):
        self.model = None

    def initialize(self, context):
        properties = context.system_properties
        path = os.path.join(properties["model_dir"], context.manifest["model"]["serializedFile"])
        self.model = torch.jit.load(path)
        self.model.eval()
        self.batch_size = properties["batch_size"]

    def handle(self, data, context):
        started = time.time()
        outputs, rows = [], []
        for idx, row in enumerate(data):
            value = row.get("data") if isinstance(row, dict) else row
            if value is None and isinstance(row, dict):
                value = row.get("body")
            if value == "fail":
                raise PredictionException("the input said fail", 418)
            if value == "crash":
                raise ZeroDivisionError("division by zero in the handler")
            if value == "short":
                return []
            if isinstance(value, (bytes, bytearray)):
                outputs.append(value[::-1])
                continue
            if isinstance(value, str):
                outputs.append(value.upper())
                continue
            rows.append((idx, value))
            outputs.append(None)
            context.set_response_header(idx, "x-echo", str(context.get_request_header(idx, "x-echo")))
            context.set_response_header(idx, "x-seen-request-id", str(context.request_ids[idx]))
        if rows:
            with torch.inference_mode():
                result = self.model(torch.tensor([v for _, v in rows], dtype=torch.float32))
            for (idx, _), out in zip(rows, result):
                outputs[idx] = {"scores": out.tolist(), "batch": len(data)}
        context.metrics.add_time("PlainHandlerTime", (time.time() - started) * 1000, None, "ms")
        return outputs
