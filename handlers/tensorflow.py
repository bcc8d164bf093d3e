"""TensorFlow SavedModels with TF Serving's semantics (../shared/CONTRACTS.md §2).

Loads ``saved_model.pb`` + ``variables/`` (tag ``serve``), serves every signature by name
(``serving_default`` unless the request says ``signature_name``), and reads each signature's
input/output names, dtypes and shapes into hyperserve's signature, so the codec decodes straight
into the right dtypes, strings included. TensorFlow is imported only here, when a SavedModel is
served. A TF Serving batching file (``batching_parameters_config``, text proto) beside the model
sets the batch size and timeout.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from hyperserve.server.errors import InvalidInput, ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import Capabilities, Handler, HandlerConfig

log = logging.getLogger("hyperserve.handlers.tensorflow")

DEFAULT_SIGNATURE = "serving_default"
BATCHING_FILES = ("batching_parameters_config", "config/batching_parameters_config", "batching_parameters.txt")


def read_batching_parameters(model_dir: Path) -> dict[str, int]:
    """TF Serving's batching parameters (``max_batch_size { value: 32 }`` ...), if the model has them."""
    for name in BATCHING_FILES:
        path = model_dir / name
        if path.is_file():
            text = path.read_text()
            return {key: int(value) for key, value in
                    re.findall(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}", text)}
    return {}


def _spec(name: str, tensor_spec) -> TensorSpec:
    import tensorflow as tf

    dtype = None
    if tensor_spec.dtype == tf.string:
        dtype = np.dtype(object)
    else:
        try:
            dtype = np.dtype(tensor_spec.dtype.as_numpy_dtype)
        except TypeError:
            dtype = None
    shape = None
    if tensor_spec.shape.rank is not None:
        shape = tuple(-1 if d is None else int(d) for d in tensor_spec.shape.as_list())
    return TensorSpec(name, dtype, shape)


def _dtype_name(tensor_spec) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tensor_spec.dtype.as_datatype_enum)


def _tensor_info(tensor_spec) -> dict[str, Any]:
    """TF Serving's metadata shape of one tensor: dtype name and dims."""
    info: dict[str, Any] = {"dtype": _dtype_name(tensor_spec), "name": tensor_spec.name or ""}
    if tensor_spec.shape.rank is None:
        info["tensor_shape"] = {"dim": [], "unknown_rank": True}
    else:
        info["tensor_shape"] = {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                        for d in tensor_spec.shape.as_list()], "unknown_rank": False}
    return info


class TensorFlowHandler(Handler):
    name = "tensorflow"
    capabilities = Capabilities(named_signatures=True, tf_serving_metadata=True)
    artifact_names = ("saved_model.pb", "saved_model.pbtxt")

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        if model_path.is_dir() and any((model_path / n).is_file() for n in cls.artifact_names):
            return model_path
        return None

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        model_dir = artifact if artifact.is_dir() else artifact.parent
        import tensorflow as tf

        self._configure(tf, config)
        try:
            self.model = tf.saved_model.load(str(model_dir), tags=["serve"])
        except Exception as err:
            raise ServingError(f"TensorFlow could not load the SavedModel in {model_dir}: "
                               f"{type(err).__name__}: {str(err).splitlines()[0]}") from err
        self.functions = dict(self.model.signatures)
        if not self.functions:
            raise ServingError(f"the SavedModel in {model_dir} has no serving signatures "
                               "(export it with signatures=... or a @tf.function with an input_signature)")
        self.default = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in self.functions else sorted(self.functions)[0]
        self.batching = read_batching_parameters(model_dir)
        self.methods = self._read_methods(model_dir)
        self.signatures: dict[str, Signature] = {}
        for name, fn in self.functions.items():
            inputs = fn.structured_input_signature[1]
            outputs = fn.structured_outputs
            self.signatures[name] = Signature(
                tuple(_spec(k, v) for k, v in sorted(inputs.items())),
                tuple(_spec(k, v) for k, v in sorted(outputs.items())),
                max_batch_size=self.batching.get("max_batch_size", 0))
        self.device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        log.info("SavedModel %s: signatures %s on %s", model_dir, sorted(self.functions), self.device)

    @staticmethod
    def _read_methods(model_dir: Path) -> dict[str, str]:
        """Each signature's method_name (predict, classify, regress): the loaded object does not keep it."""
        from tensorflow.core.protobuf import saved_model_pb2

        saved = saved_model_pb2.SavedModel()
        binary = model_dir / "saved_model.pb"
        try:
            if binary.is_file():
                saved.ParseFromString(binary.read_bytes())
            else:
                from google.protobuf import text_format

                text_format.Parse((model_dir / "saved_model.pbtxt").read_text(), saved)
        except Exception as err:  # noqa: BLE001 - the model loaded; only :classify/:regress need this
            log.warning("could not read the signatures' method names: %s", err)
            return {}
        for graph in saved.meta_graphs:
            if "serve" in graph.meta_info_def.tags:
                return {name: sig.method_name for name, sig in graph.signature_def.items()}
        return {}

    def signature_method(self, name: str) -> str:
        self.signature_named(name)
        return self.methods.get(name) or "tensorflow/serving/predict"

    @staticmethod
    def _configure(tf, config: HandlerConfig) -> None:
        """Threads and devices must be set before TensorFlow runs anything."""
        try:
            if config.intra_op_threads:
                tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
            if config.inter_op_threads:
                tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
            gpus = tf.config.list_physical_devices("GPU")
            if config.device == "cpu":
                tf.config.set_visible_devices([], "GPU")
            else:
                for gpu in gpus:  # grow on demand instead of taking the whole GPU at start
                    tf.config.experimental.set_memory_growth(gpu, True)
                if config.device == "cuda" and not gpus:
                    raise ServingError("--device cuda was asked for, but TensorFlow sees no GPU")
        except RuntimeError as err:  # already initialised in this process
            log.warning("TensorFlow runtime already configured: %s", err)

    def signature(self) -> Signature:
        return self.signatures[self.default]

    def signature_named(self, name: str) -> Signature:
        signature = self.signatures.get(name)
        if signature is None:
            raise InvalidInput(f"Serving signature name: \"{name}\" not found in signature def "
                               f"(the model has {sorted(self.signatures)})", status=400)
        return signature

    def signature_names(self) -> list[str]:
        return [self.default, *sorted(n for n in self.signatures if n != self.default)]

    def queue_delay_s(self) -> float | None:
        micros = self.batching.get("batch_timeout_micros")
        return micros / 1e6 if micros else None

    def signature_defs(self) -> dict[str, Any]:
        """The signatures as TF Serving's metadata route writes them."""
        defs = {}
        for name, fn in self.functions.items():
            defs[name] = {
                "inputs": {k: _tensor_info(v) for k, v in fn.structured_input_signature[1].items()},
                "outputs": {k: _tensor_info(v) for k, v in fn.structured_outputs.items()},
                "method_name": self.methods.get(name) or "tensorflow/serving/predict",
            }
        return defs

    def describe(self) -> dict[str, Any]:
        return {"signatures": sorted(self.functions), "default_signature": self.default, "device": self.device,
                "batching": self.batching}

    def predict(self, request: InferRequest) -> InferResponse:
        import tensorflow as tf

        name = request.signature_name or self.default
        signature = self.signature_named(name)
        feeds = {}
        for spec in signature.inputs:
            value = request.inputs[spec.name]
            if spec.dtype is not None and spec.dtype.kind == "O":
                feeds[spec.name] = tf.constant(value, dtype=tf.string)
            else:
                feeds[spec.name] = tf.constant(value, dtype=spec.dtype)
        try:
            outputs = self.functions[name](**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            message = getattr(err, "message", None) or str(err)
            raise InvalidInput(message.splitlines()[0]) from None
        return InferResponse({key: value.numpy() for key, value in sorted(outputs.items())})
