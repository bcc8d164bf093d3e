"""Runs a TorchServe archive's handler: resolves it from MANIFEST.json exactly as TorchServe does,
calls ``initialize(context)`` once and ``handle(rows, context)`` per batch, and checks what it returns.

TorchServe gives each handler a process of its own and calls it from one thread, so this handler
declares itself not thread-safe: the scheduler never has two of its calls in flight.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

from hyperserve.server.errors import ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from ..base import Capabilities, Handler, HandlerConfig, Inputs
from . import archive
from .context import Context, Metrics, RequestProcessor

log = logging.getLogger("hyperserve.handlers.torchserve")

ROWS = "rows"
PREDICTIONS = "predictions"
SERVER_VERSION = "0.12.0"  # the TorchServe release whose handler API this follows


class PredictionException(Exception):
    """Raise from a handler to answer with ``error_code`` and ``message`` (same as ts.utils.util's)."""

    def __init__(self, message: str, error_code: int = 500):
        self.message = message
        self.error_code = error_code
        super().__init__(message)


def _is_prediction_exception(err: BaseException) -> bool:
    return type(err).__name__ == "PredictionException" and isinstance(getattr(err, "error_code", None), int)


def _classes_defined_in(module) -> list[type]:
    return [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]


def _import_fresh(module_name: str, model_dir: Path):
    """Import a handler module from the model dir; a same-named module of another archive that
    was imported earlier in this process is not reused."""
    existing = sys.modules.get(module_name)
    if existing is not None:
        origin = getattr(existing, "__file__", None) or ""
        if not Path(origin).resolve().is_relative_to(model_dir.resolve()):
            del sys.modules[module_name]
    return importlib.import_module(module_name)


def resolve_entry_point(handler: str, model_dir: Path) -> tuple[Callable, Callable[[Context], Any], str]:
    """(handle, initialize, description) for the manifest's ``handler`` (TorchServe's rules)."""
    if not handler:
        raise ServingError("the archive's MANIFEST.json names no handler")
    module_part, _, function_name = handler.partition(":")
    module_name = module_part[:-3] if module_part.endswith(".py") else module_part
    module_name = module_name.replace("\\", "/").split("/")[-1]
    local = (model_dir / f"{module_name}.py").is_file() or (model_dir / module_name / "__init__.py").is_file()
    if local:
        module = _import_fresh(module_name, model_dir)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            if importlib.util.find_spec("ts") is None:
                raise ServingError(f"handler {handler!r} is not in the archive; TorchServe's built-in handlers "
                                   "need the torchserve package: pip install 'hyperserve[torchserve]'") from None
            try:
                module = importlib.import_module(f".{module_name}", "ts.torch_handler")
            except ImportError as err:
                raise ServingError(f"handler {handler!r} is neither a module in the archive nor a TorchServe "
                                   f"built-in handler ({err})") from None
    function_name = function_name or "handle"
    entry = getattr(module, function_name, None)
    if entry is not None and not inspect.isclass(entry) and callable(entry):
        return entry, lambda context: entry(None, context), f"{module.__name__}:{function_name}"
    if ":" in handler:
        raise ServingError(f"handler {handler!r}: module {module.__name__} has no function {function_name!r}")
    classes = _classes_defined_in(module)
    if len(classes) != 1:
        raise ServingError(f"handler module {module.__name__} must define exactly one class (or a handle "
                           f"function); it defines {[c.__name__ for c in classes]}")
    instance = classes[0]()
    if not callable(getattr(instance, "handle", None)):
        raise ServingError(f"handler class {classes[0].__name__} has no handle method")
    return instance.handle, instance.initialize if hasattr(instance, "initialize") else (lambda context: None), \
        f"{module.__name__}.{classes[0].__name__}"


def _gpu_id(config: HandlerConfig) -> int | None:
    if config.device == "cpu" or importlib.util.find_spec("torch") is None:
        return None
    import torch

    if torch.cuda.is_available():
        return 0
    if config.device == "cuda":
        raise ServingError("--device cuda was asked for, but torch sees no usable GPU")
    return None


class TorchServeHandler(Handler):
    name = "torchserve"
    capabilities = Capabilities(thread_safe=False, releases_gil=False, inputs=Inputs.ROWS)
    artifact_suffixes = archive.ARCHIVE_SUFFIXES
    model_dir: Path | None = None

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        if archive.is_model_dir(model_path):
            return model_path
        return super().find_artifact(model_path)

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        model_dir = artifact if artifact.is_dir() else archive.extract(artifact, max_bytes=config.max_archive_bytes)
        self.model_dir = model_dir
        try:
            self._load(model_dir, config)
        except BaseException:
            archive.remove_extracted(model_dir)  # a refused archive leaves nothing behind
            raise

    def close(self) -> None:
        if self.model_dir is not None:
            archive.remove_extracted(self.model_dir)

    def _load(self, model_dir: Path, config: HandlerConfig) -> None:
        self.manifest = archive.read_manifest(model_dir)
        model = self.manifest["model"]
        self.yaml_config = archive.read_yaml_config(model_dir, self.manifest)
        self.batch_size = int(self.yaml_config.get("batchSize", 1) or 1)
        self.max_batch_delay_ms = float(self.yaml_config.get("maxBatchDelay", 0) or 0)
        self.requirements = model.get("requirementsFile")
        if self.requirements:
            self._requirements(archive.member(model_dir, self.requirements, "requirementsFile"), config)
        if str(model_dir) not in sys.path:
            sys.path.insert(0, str(model_dir))
        self._handle, initialize, self.entry_point = resolve_entry_point(model.get("handler", ""), model_dir)
        self.metrics = Metrics(model.get("modelName", model_dir.name))
        self.context = Context(model.get("modelName", model_dir.name), str(model_dir), self.manifest,
                               self.batch_size, _gpu_id(config), SERVER_VERSION, self.metrics, self.yaml_config)
        try:
            initialize(self.context)
        except Exception as err:
            raise ServingError(f"the handler's initialize() failed: {type(err).__name__}: {err}") from err
        log.info("TorchServe archive %s: handler %s, batch size %d", model.get("modelName", "?"),
                 self.entry_point, self.batch_size)

    def _requirements(self, path: Path, config: HandlerConfig) -> None:
        if not config.install_requirements:
            log.warning("the archive lists requirements in %s; they are not installed "
                        "(pass --install-requirements to pip install them at load)", path.name)
            return
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ServingError(f"pip install -r {path.name} failed: {result.stderr.strip()[-500:]}")
        log.info("installed the archive's requirements from %s", path.name)

    def signature(self) -> Signature:
        return Signature((TensorSpec(ROWS),), (TensorSpec(PREDICTIONS),), max_batch_size=self.batch_size)

    def describe(self) -> dict[str, Any]:
        model = self.manifest["model"]
        return {"handler": self.entry_point, "model_name": model.get("modelName"),
                "model_version": model.get("modelVersion"), "serialized_file": model.get("serializedFile"),
                "model_file": model.get("modelFile"), "requirements_file": self.requirements,
                "batch_size": self.batch_size, "max_batch_delay_ms": self.max_batch_delay_ms,
                "model_dir": str(self.model_dir)}

    def predict(self, request: InferRequest) -> InferResponse:
        rows = request.inputs[ROWS]
        ids: dict[int, str] = {}
        processors: list[RequestProcessor] = []
        for part in request.parts or (request,):
            request_id = part.headers.get("x-request-id") or str(uuid.uuid4())
            for _ in range(part.batch_size):
                ids[len(processors)] = request_id
                processors.append(RequestProcessor(part.headers))
        context = self.context
        context.request_ids = ids
        context.request_processor = processors
        self.metrics.request_ids = ids
        try:
            results = self._handle(rows, context)
        except MemoryError:
            raise ServingError("out of resources: the handler ran out of memory", status=507) from None
        except Exception as err:
            if _is_prediction_exception(err):
                raise ServingError(str(err.message), status=err.error_code) from None
            raise
        if not isinstance(results, list):
            raise ServingError(f"invalid model predict output: handle() returned a {type(results).__name__}, "
                               "not a list", status=503)
        if len(results) != len(rows):
            raise ServingError(f"number of batch response mismatched: handle() returned {len(results)} "
                               f"items for {len(rows)} rows", status=503)
        return InferResponse({PREDICTIONS: results}, metadata={
            "status": [p.get_response_status_code() for p in processors],
            "headers": [p.get_response_headers() for p in processors],
        })
