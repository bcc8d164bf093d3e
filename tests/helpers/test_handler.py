"""A handler whose timing and failures tests control: load delay/failure from files in the model
dir, per-request sleep/raise from the request parameters. Served with --framework
tests.helpers.test_handler:ControlledHandler."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hyperserve.handlers.base import Capabilities, Handler, HandlerConfig, RawBodies
from hyperserve.server.types import RAW_BODIES, InferRequest, InferResponse, Signature, TensorSpec


class ControlledHandler(Handler):
    name = "controlled"
    # Not fork-safe: it loads in every worker, so a restarted worker is not ready at once.
    capabilities = Capabilities(raw_bodies=RawBodies.ONE)

    @classmethod
    def find_artifact(cls, model_path: Path):
        return model_path / "controlled.json" if (model_path / "controlled.json").is_file() else None

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        settings = json.loads(Path(artifact).read_text())
        time.sleep(settings.get("load_delay", 0))
        release = settings.get("load_until_file")
        deadline = time.monotonic() + 60
        while release and not Path(release).exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # the test decides when loading finishes
        if settings.get("load_error"):
            raise RuntimeError(settings["load_error"])

    def signature(self) -> Signature:
        return Signature((TensorSpec("x", np.dtype(np.float32), (-1, 2)),), (TensorSpec("y", np.dtype(np.float32)),))

    def predict(self, request: InferRequest) -> InferResponse:
        params = request.parameters
        time.sleep(float(params.get("sleep", 0)))
        if "raise" in params:
            raise ValueError(params["raise"])
        if "exit" in params:  # a crash that takes the whole process down
            import os

            os._exit(int(params["exit"]))
        if "pid" in params:
            import os

            return InferResponse({"y": [os.getpid()] * request.batch_size})
        if request.raw is not None:
            return InferResponse({"y": [len(request.raw.data)]})
        if "wide" in params:  # a large reply: (batch, wide) floats
            return InferResponse({"y": np.ones((request.batch_size, int(params["wide"])), dtype=np.float32)})
        return InferResponse({"y": request.inputs["x"].sum(axis=1)})


class RawBatchHandler(ControlledHandler):
    """Takes raw bodies in batches: answers each body's length and media type; records call sizes.
    Each call takes 50 ms, so that requests sent meanwhile queue and share the next one."""

    name = "raw-batch"
    capabilities = Capabilities(raw_bodies=RawBodies.BATCHED)
    calls: list[int] = []

    def predict(self, request: InferRequest) -> InferResponse:
        bodies = request.inputs[RAW_BODIES]
        type(self).calls.append(len(bodies))
        time.sleep(0.05)
        return InferResponse({"y": [f"{b.content_type} {len(b.data)}" for b in bodies]})


class InlineControlledHandler(ControlledHandler):
    """The same answers from a handler that holds the GIL (as scikit-learn does), so its short
    calls run on the event loop: the scheduler's inline path."""

    name = "inline-controlled"
    capabilities = Capabilities(releases_gil=False, runs_inline=True, raw_bodies=RawBodies.ONE)
