"""The Open Inference Protocol's answers that are not tensors, as plain data: server and model
metadata, Triton's model configuration, statistics and repository index. The REST front-end
writes them as JSON, the gRPC one as the same messages' protobuf (field names match)."""

from __future__ import annotations

from typing import Any

from hyperserve import server as _server_package

from ..codecs.v2 import datatype, dims, tensor_metadata
from ..dataplane import DataPlane
from ..repository.model import DeployedModel

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "model_configuration"]
# Triton's platform names where a framework has one; other frameworks are named as themselves.
_PLATFORMS = {"onnx": "onnxruntime_onnx", "tensorflow": "tensorflow_savedmodel", "torch": "pytorch_libtorch"}
_CONFIG_TYPES = {"BYTES": "STRING"}  # model_config.proto's name for BYTES
_STATES = {"ready": "READY", "loading": "LOADING", "starting": "LOADING", "failed": "UNAVAILABLE",
           "draining": "UNLOADING"}


def server_metadata(plane: DataPlane) -> dict[str, Any]:
    return {"name": plane.server_name, "version": plane.server_version or _server_package.__version__,
            "extensions": EXTENSIONS}


def platform(model: DeployedModel) -> str:
    return _PLATFORMS.get(model.framework, model.framework or "unknown")


def model_metadata(plane: DataPlane, model: DeployedModel) -> dict[str, Any]:
    signature = plane.loaded(model).signature
    versions = [m.version for m in plane.models if m.name == model.name]
    return {"name": model.name, "versions": versions, "platform": platform(model),
            "inputs": [tensor_metadata(s) for s in signature.inputs],
            "outputs": [tensor_metadata(s) for s in signature.outputs]}


def model_config(plane: DataPlane, model: DeployedModel) -> dict[str, Any]:
    """Triton's model configuration: with max_batch_size > 0, dims leave out the batch dimension."""
    plane.loaded(model)
    runner = model.runner
    max_batch = runner.max_batch_size if runner is not None and runner.max_batch_size > 1 else 0

    def tensors(specs):
        return [{"name": s.name, "data_type": "TYPE_" + _CONFIG_TYPES.get(datatype(s.dtype), datatype(s.dtype)),
                 "dims": dims(s.shape)[1:] if max_batch and s.shape else dims(s.shape)} for s in specs]

    signature = model.signature
    config: dict[str, Any] = {"name": model.name, "platform": platform(model), "backend": model.framework,
                              "max_batch_size": max_batch, "input": tensors(signature.inputs),
                              "output": tensors(signature.outputs)}
    if max_batch:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(runner.max_queue_delay * 1e6),
                                      "preferred_batch_size": list(runner.preferred)}
    return config


def _duration(count: int, seconds: float) -> dict[str, int]:
    return {"count": count, "ns": int(seconds * 1e9)}


def model_statistics(plane: DataPlane, model: DeployedModel) -> dict[str, Any]:
    """Triton's per-model statistics from the scheduler's counters. hyperserve times a framework
    call as a whole, so it is all compute_infer; input and output conversion are in the request time."""
    runner = model.runner
    if runner is None:
        return {"name": model.name, "version": model.version, "last_inference": 0, "inference_count": 0,
                "execution_count": 0, "inference_stats": {}, "batch_stats": []}
    stats = runner.stats
    return {
        "name": model.name, "version": model.version, "last_inference": int(stats.last_inference * 1000),
        "inference_count": stats.instances, "execution_count": stats.calls,
        "inference_stats": {"success": _duration(stats.success, stats.success_s),
                            "fail": _duration(stats.failed, stats.failed_s),
                            "queue": _duration(stats.success + stats.failed, stats.queue_s),
                            "compute_infer": _duration(stats.calls, stats.compute_s)},
        "batch_stats": [{"batch_size": size, "compute_infer": _duration(calls, runner.batch_seconds[size])}
                        for size, calls in sorted(runner.batch_sizes.items())],
    }


def repository_index(plane: DataPlane) -> list[dict[str, Any]]:
    index = []
    for model in plane.models:
        status = plane.status(model)
        index.append({"name": model.name, "version": model.version, "state": _STATES.get(status.state, "UNKNOWN"),
                      "reason": "" if status.ready else status.reason})
    return index
