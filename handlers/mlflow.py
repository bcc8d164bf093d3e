"""MLflow models: a directory with an ``MLmodel`` file (../shared/CONTRACTS.md §8).

Two ways to run one:

- **natively**, when the flavor is one hyperserve runs itself (sklearn, onnx, xgboost, a PyTorch
  ``torch.export`` program or TorchScript module, a TensorFlow SavedModel): the MLmodel
  signature becomes the handler's (a column-based one: one input per column; a tensor-based one:
  its tensor), so requests go through the native decoder and the batching scheduler, and MLflow
  itself need not be installed;
- **through ``mlflow.pyfunc``** (custom ``PythonModel``s and every other flavor): MLflow's own
  loader, schema enforcement and scoring functions, so replies and errors are MLflow's
  (``pip install 'hyperserve[mlflow]'``).

Pickles (an sklearn ``model.pkl``, a ``PythonModel``'s ``python_model.pkl``) run the artifact's code
when loaded: they are loaded only with ``--trust-model-code`` or MLflow's own
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``. skops files load without it when every type they hold is
one skops trusts or the MLmodel lists.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperserve.server.errors import ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import Capabilities, Handler, HandlerConfig, Inputs
from .sklearn import SklearnHandler

log = logging.getLogger("hyperserve.handlers.mlflow")

MLMODEL = "MLmodel"
INVOCATION = "invocation"  # PYFUNC: the scoring request (body, content type) MLflow's functions read
REPLY = "reply"
PREDICTIONS = "predictions"
# MLflow's column types → numpy (None: Python objects, as MLflow keeps strings and bytes).
COLUMN_DTYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32,
                 "boolean": np.bool_, "string": None, "binary": None, "datetime": None}
PICKLE_FORMATS = ("pickle", "cloudpickle")


@dataclass(frozen=True)
class MlflowSignature:
    """The MLmodel's input signature, as hyperserve's inputs, and whether it is column-based."""

    inputs: tuple[TensorSpec, ...]
    columns: bool


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    import yaml

    try:
        meta = yaml.safe_load((model_dir / MLMODEL).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ServingError(f"cannot read {model_dir / MLMODEL}: {err}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise ServingError(f"{model_dir / MLMODEL} has no flavors")
    return meta


def input_signature(meta: dict[str, Any]) -> MlflowSignature | None:
    """The signature's inputs; None for a model saved without one."""
    text = (meta.get("signature") or {}).get("inputs")
    if not text:
        return None
    specs = json.loads(text)
    if specs and all(s.get("type") == "tensor" for s in specs):
        tensors = []
        for i, spec in enumerate(specs):
            tensor = spec["tensor-spec"]
            tensors.append(TensorSpec(spec.get("name") or ("instances" if len(specs) == 1 else f"input_{i}"),
                                      None if tensor.get("dtype") in (None, "object") else np.dtype(tensor["dtype"]),
                                      tuple(tensor["shape"]) if tensor.get("shape") is not None else None))
        return MlflowSignature(tuple(tensors), columns=False)
    columns = []
    for i, spec in enumerate(specs):
        dtype = COLUMN_DTYPES.get(spec.get("type"))
        columns.append(TensorSpec(spec.get("name", str(i)), np.dtype(dtype) if dtype is not None else None, (-1,)))
    return MlflowSignature(tuple(columns), columns=True)


def trusts_pickles(config: HandlerConfig, environ=os.environ) -> bool:
    return config.trust_model_code or environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "").lower() == "true"


def _untrusted(what: str) -> ServingError:
    return ServingError(f"{what} is a pickle, which runs the artifact's code when loaded: serve it only if you "
                        "trust it, with --trust-model-code (or MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true)")


def load_sklearn(model_dir: Path, flavor: dict[str, Any], config: HandlerConfig) -> Any:
    path = model_dir / flavor.get("pickled_model", "model.pkl")
    fmt = flavor.get("serialization_format", "cloudpickle")
    if fmt in PICKLE_FORMATS:
        if not trusts_pickles(config):
            raise _untrusted(f"the sklearn model {path}")
        import pickle

        with path.open("rb") as f:
            return pickle.load(f)  # cloudpickle's output is a pickle; cloudpickle need not be imported
    if fmt == "skops":
        try:
            import skops.io as sio
        except ImportError:
            raise ServingError(f"the sklearn model {path} is a skops file: pip install skops") from None
        trusted = list(flavor.get("skops_trusted_types") or [])
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in trusted]
        if untrusted and not config.trust_model_code:
            raise ServingError(f"the skops file {path} holds types skops does not trust: {untrusted}; list them in "
                               "the model's skops_trusted_types, or pass --trust-model-code")
        return sio.load(path, trusted=trusted + untrusted)
    raise ServingError(f"the sklearn model {path} is in serialization format {fmt!r}, which hyperserve cannot load")


# The flavors served by hyperserve's own handlers, and those handlers' registry names.
NATIVE_HANDLERS = {"onnx": "onnx", "xgboost": "xgboost", "pytorch": "torch", "tensorflow": "tensorflow"}


def native_flavor(model_dir: Path, flavors: dict[str, Any]) -> tuple[str | None, Path | None]:
    """The flavor hyperserve runs itself, and its file (None: the model goes through mlflow.pyfunc)."""
    if "onnx" in flavors:
        return "onnx", model_dir / flavors["onnx"].get("data", "model.onnx")
    if "xgboost" in flavors:
        return "xgboost", model_dir / flavors["xgboost"]["data"]
    if "sklearn" in flavors and flavors["sklearn"].get("serialization_format", "cloudpickle") in \
            (*PICKLE_FORMATS, "skops"):
        return "sklearn", None
    if "pytorch" in flavors:
        data = model_dir / flavors["pytorch"].get("model_data", "data")
        if (data / "model.pt2").is_file():  # MLflow 3's default: a torch.export program
            return "pytorch", data / "model.pt2"
        if (data / "model.pth").is_file() and _is_torchscript(data / "model.pth"):
            return "pytorch", data / "model.pth"
        return None, None  # a pickled module: mlflow.pytorch unpickles it
    saved = (flavors.get("tensorflow") or {}).get("saved_model_dir")
    if saved and (model_dir / saved / "saved_model.pb").is_file():
        return "tensorflow", model_dir / saved
    return None, None


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding code/ (a torch.save pickle holds none)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class MlflowHandler(Handler):
    name = "mlflow"
    artifact_names = (MLMODEL,)
    capabilities = Capabilities(releases_gil=False, runs_inline=True)

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        if model_path.is_dir() and (model_path / MLMODEL).is_file():
            return model_path
        if model_path.is_file() and model_path.name == MLMODEL:
            return model_path.parent
        return None

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        model_dir = artifact if artifact.is_dir() else artifact.parent
        self.meta = read_mlmodel(model_dir)
        flavors = self.meta["flavors"]
        self.mlflow_signature = input_signature(self.meta)
        self.inner: Handler | None = None
        self.model: Any = None
        self.pyfunc: Any = None
        native, native_file = native_flavor(model_dir, flavors)
        if native is None:
            self._load_pyfunc(model_dir, flavors, config)
        elif native == "sklearn":
            self.model = load_sklearn(model_dir, flavors["sklearn"], config)
            # --method, else the method MLflow's pyfunc would call (predict_fn)
            method = config.method if config.method != "predict" else \
                flavors.get("python_function", {}).get("predict_fn", "predict")
            self._method = getattr(self.model, method)
            self.capabilities = SklearnHandler.capabilities
        else:
            from . import registry

            self.inner = registry.load_class(NATIVE_HANDLERS[native])()
            self.inner.load(native_file, config)
            if len(self.inner.signature().inputs) != 1:
                raise ServingError(f"MLflow model {model_dir}: its {native} model takes "
                                   f"{len(self.inner.signature().inputs)} inputs; hyperserve serves one-input models")
            self.capabilities = dataclasses.replace(self.inner.capabilities, inputs=Inputs.TENSORS)
        self.flavor = native or "python_function"
        self._signature = self._make_signature()
        self.description = {"mlflow_flavor": self.flavor, "mlflow_version": self.meta.get("mlflow_version"),
                            "served": "natively" if native else "through mlflow.pyfunc",
                            "column_based": bool(self.mlflow_signature and self.mlflow_signature.columns)}

    def _load_pyfunc(self, model_dir: Path, flavors: dict[str, Any], config: HandlerConfig) -> None:
        pyfunc_flavor = flavors.get("python_function")
        if pyfunc_flavor is None:
            raise ServingError(f"MLflow model {model_dir}: flavors {sorted(flavors)} have no python_function "
                               "to load it with")
        pickled = pyfunc_flavor.get("loader_module") in ("mlflow.pyfunc.model", "mlflow.sklearn") or \
            "python_model" in pyfunc_flavor
        if pickled and not trusts_pickles(config):
            raise _untrusted(f"MLflow model {model_dir} ({pyfunc_flavor.get('loader_module')})")
        try:
            import mlflow.pyfunc
        except ImportError:
            raise ServingError(f"MLflow model {model_dir} (flavors {sorted(flavors)}) runs through mlflow.pyfunc: "
                               "pip install 'hyperserve[mlflow]'") from None
        self.pyfunc = mlflow.pyfunc.load_model(str(model_dir))
        # One call at a time: a PythonModel is user code, not written to be called from several threads.
        self.capabilities = Capabilities(thread_safe=False, releases_gil=False, batchable=False,
                                         inputs=Inputs.PYFUNC)

    def _make_signature(self) -> Signature:
        if self.pyfunc is not None:
            return Signature((TensorSpec(INVOCATION),), (TensorSpec(REPLY),))
        if self.mlflow_signature is not None:
            return Signature(self.mlflow_signature.inputs, (TensorSpec(PREDICTIONS),),
                             column_based=self.mlflow_signature.columns)
        if self.inner is not None:
            return self.inner.signature()
        n_features = getattr(self.model, "n_features_in_", None)
        return Signature((TensorSpec("instances", None, (-1, int(n_features)) if n_features else None),),
                         (TensorSpec(PREDICTIONS),))

    def signature(self) -> Signature:
        return self._signature

    def describe(self) -> dict[str, Any]:
        return self.description

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names of a column-based signature (empty for a tensor-based one)."""
        signature = self.mlflow_signature
        return tuple(t.name for t in signature.inputs) if signature is not None and signature.columns else ()

    def predict(self, request: InferRequest) -> InferResponse:
        if self.pyfunc is not None:
            return InferResponse({REPLY: [self.invoke(*request.inputs[INVOCATION][0])]})
        inputs = request.inputs
        columns = self.columns
        if self.model is not None:
            if columns:
                import pandas as pd

                x = pd.DataFrame({name: inputs[name] for name in columns})
            else:
                x = next(iter(inputs.values()))
            return InferResponse({PREDICTIONS: self._method(x)})
        x = np.column_stack([inputs[name] for name in columns]) if columns else next(iter(inputs.values()))
        return self.inner.predict(InferRequest(inputs={self.inner.signature().inputs[0].name: x},
                                               batch_size=request.batch_size))

    def invoke(self, body: bytes, content_type: str) -> tuple[int, bytes, str]:
        """MLflow's own scoring of one request (status, body, media type), errors included."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

        try:
            result = scoring_server.invocations(bytes(body), content_type or "", self.pyfunc,
                                                self.pyfunc.metadata.get_input_schema())
        except MlflowException as err:
            return err.get_http_status_code(), err.serialize_as_json().encode(), "application/json"
        return result.status, result.response.encode() if isinstance(result.response, str) else result.response, \
            result.mimetype

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
