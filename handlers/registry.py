"""Finds handlers through the ``hyperserve.handlers`` entry-point group and detects frameworks."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from hyperserve.server.errors import ServingError

from .base import Handler

# Built-ins in detection order; entry points may add more or override these names.
_BUILTIN = {
    "mlflow": "hyperserve.handlers.mlflow:MlflowHandler",  # first: an MLflow sklearn model also holds model.pkl
    "torchserve": "hyperserve.handlers.torchserve:TorchServeHandler",
    "onnx": "hyperserve.handlers.onnx:OnnxHandler",
    "sklearn": "hyperserve.handlers.sklearn:SklearnHandler",
    "xgboost": "hyperserve.handlers.xgboost:XGBoostHandler",
    "torch": "hyperserve.handlers.pytorch:TorchHandler",
    "tensorflow": "hyperserve.handlers.tensorflow:TensorFlowHandler",
    "cpr": "hyperserve.handlers.cpr:CprHandler",
    "azureml": "hyperserve.handlers.azureml:AzureMLScriptHandler",
}


def available() -> dict[str, str]:
    """Handler name → 'module:Class', built-ins first, then third-party entry points."""
    found = dict(_BUILTIN)
    for ep in entry_points(group="hyperserve.handlers"):
        found[ep.name] = ep.value
    return found


def load_class(name: str) -> type[Handler]:
    """A registered name, or 'package.module:Class' for a handler that is not registered."""
    targets = available()
    target = targets.get(name) or (name if ":" in name else None)
    if target is None:
        raise ServingError(f"unknown framework '{name}'; available: {sorted(targets)} or module:Class", status=400)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ServingError(f"cannot load handler {target}: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, Handler)):
        raise ServingError(f"handler '{name}' ({target}) is not a hyperserve Handler")
    return cls


def _detect_by_name(model_path: Path) -> list[str]:
    """Match artifact file names without importing any framework."""
    from . import mlflow, onnx, pytorch, sklearn, tensorflow, torchserve, xgboost  # light: frameworks load in load()

    matches = []
    for name, cls in (("mlflow", mlflow.MlflowHandler), ("torchserve", torchserve.TorchServeHandler), ("onnx", onnx.OnnxHandler),
                      ("sklearn", sklearn.SklearnHandler), ("xgboost", xgboost.XGBoostHandler),
                      ("torch", pytorch.TorchHandler), ("tensorflow", tensorflow.TensorFlowHandler)):
        if cls.find_artifact(model_path) is not None:
            matches.append(name)
    return matches


def detect(model_path: Path) -> tuple[str, Path]:
    """Which framework serves ``model_path`` (a directory or a file), and its artifact."""
    matches = _detect_by_name(model_path)
    for name in available():
        if name in _BUILTIN or name in matches:
            continue
        try:
            cls = load_class(name)
        except Exception:
            continue
        if cls.find_artifact(model_path) is not None:
            matches.append(name)
    if not matches:
        listing = sorted(p.name for p in model_path.iterdir()) if model_path.is_dir() else [model_path.name]
        raise ServingError(
            f"no model artifact found in {model_path} (files: {listing[:20]}); expected model.onnx, "
            "model.joblib, model.pkl, model.bst, model.json, model.ubj, model.pt, model.pt2, saved_model.pb, a TorchServe "
            "archive (.mar, .tar.gz or a directory with MAR-INF/MANIFEST.json), an MLflow model (MLmodel), "
            "or pass --framework")
    name = matches[0]
    artifact = load_class(name).find_artifact(model_path)
    return name, artifact
