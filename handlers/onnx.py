"""ONNX Runtime: CUDA when a GPU is really usable, else CPU; inputs cast to declared dtypes."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from hyperserve.server.errors import InvalidInput, ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import Handler, HandlerConfig

log = logging.getLogger("hyperserve.handlers.onnx")

_ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}


def _spec(node) -> TensorSpec:
    dtype = _ONNX_DTYPES.get(node.type)
    shape = None
    if node.shape is not None and node.type.startswith("tensor("):
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    return TensorSpec(node.name, np.dtype(dtype) if dtype is not None else None, shape)


def gpu_present() -> bool:
    """A GPU device node exists and is not hidden; onnxruntime-gpu lists CUDA even without one."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


class OnnxHandler(Handler):
    name = "onnx"
    artifact_names = ("model.onnx",)
    artifact_suffixes = (".onnx",)

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if config.intra_op_threads:
            options.intra_op_num_threads = config.intra_op_threads
        if config.inter_op_threads:
            options.inter_op_num_threads = config.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        want_cuda = config.device == "cuda" or (config.device == "auto" and gpu_present())
        if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif config.device == "cuda":
            raise ServingError("--device cuda was asked for, but onnxruntime has no CUDA provider "
                               "(install hyperserve[onnx-gpu] on a machine with a GPU)")
        try:
            self.session = ort.InferenceSession(str(artifact), sess_options=options, providers=providers)
        except Exception as err:
            raise ServingError(f"onnxruntime could not load {artifact.name}: {err}") from err
        self.providers = self.session.get_providers()
        if want_cuda and "CUDAExecutionProvider" not in self.providers:
            # The CUDA provider failed to initialise (no driver or libraries): say so, serve on CPU.
            if config.device == "cuda":
                raise ServingError("the CUDA execution provider could not be initialised")
            log.warning("CUDA provider unusable; serving %s on CPU", artifact.name)
        self._inputs = tuple(_spec(n) for n in self.session.get_inputs())
        self._outputs = tuple(_spec(n) for n in self.session.get_outputs())
        self._output_names = [o.name for o in self._outputs]

    def signature(self) -> Signature:
        return Signature(self._inputs, self._outputs)

    def describe(self) -> dict[str, Any]:
        return {"providers": self.providers}

    def predict(self, request: InferRequest) -> InferResponse:
        feeds = {}
        for spec in self._inputs:
            value = request.inputs[spec.name]
            if spec.dtype is not None and isinstance(value, np.ndarray) and value.dtype != spec.dtype:
                if spec.dtype.kind == "O":
                    value = value.astype(object)
                else:
                    value = value.astype(spec.dtype)
            feeds[spec.name] = value
        try:
            results = self.session.run(self._output_names, feeds)
        except Exception as err:
            message = str(err)
            if "INVALID_ARGUMENT" in message or "Invalid rank" in message or "Got invalid dimensions" in message:
                raise InvalidInput(f"the model rejected the input: {message}") from None
            raise
        return InferResponse(dict(zip(self._output_names, results)))
