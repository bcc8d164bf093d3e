"""A handler written for TorchServe: it subclasses TorchServe's own BaseHandler."""
import torch
from ts.torch_handler.base_handler import BaseHandler


class MLPHandler(BaseHandler):
    def preprocess(self, data):
        rows = [row.get("data") if isinstance(row, dict) else row for row in data]
        rows = [row if row is not None else r.get("body") for row, r in zip(rows, data)]
        return torch.as_tensor(rows, dtype=torch.float32, device=self.device)

    def postprocess(self, data):
        return data.tolist()
