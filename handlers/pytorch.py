"""PyTorch: TorchScript (``*.pt``), ``torch.export`` programs and AOTInductor packages (``*.pt2``),
and — only with ``--trust-model-code`` — an eager model (``model.py`` + a state dict) or a whole
pickled module, both of which run the artifact's own code.

CUDA when a GPU is usable (``--device auto``), else CPU; every call under ``torch.inference_mode()``.
Torch releases the GIL while it computes, so calls run on the runner's threads in parallel.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hyperserve.server.errors import InvalidInput, ServingError
from hyperserve.server.types import InferRequest, InferResponse, Signature, TensorSpec

from .base import Handler, HandlerConfig

log = logging.getLogger("hyperserve.handlers.pytorch")

# Messages torch raises when the input, not the model, is wrong (shape or dtype): a 400, not a 500.
_INPUT_ERROR = re.compile(r"shape|size mismatch|must match the size|dimension|expected scalar type|"
                          r"mat1 and mat2|Expected .* to have|got \d+ channels", re.IGNORECASE)
_STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin")


def torch_dtype_to_numpy(dtype) -> np.dtype | None:
    import torch

    try:
        return np.dtype(torch.empty((), dtype=dtype).numpy().dtype)
    except (TypeError, RuntimeError):  # bfloat16 and friends have no numpy twin
        return None


def _is_aoti_package(path: Path) -> bool:
    """AOTInductor packages hold compiled code under .../aotinductor/; torch.export programs do not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any("/aotinductor/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def choose_device(config: HandlerConfig):
    import torch

    if config.device == "cuda":
        if not torch.cuda.is_available():
            raise ServingError("--device cuda was asked for, but torch sees no usable GPU "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})")
        return torch.device("cuda")
    if config.device == "auto" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(config: HandlerConfig) -> None:
    import torch

    if config.intra_op_threads:
        torch.set_num_threads(config.intra_op_threads)
    if config.inter_op_threads:
        try:
            torch.set_num_interop_threads(config.inter_op_threads)
        except RuntimeError as err:  # only settable before the first parallel work in the process
            log.warning("could not set torch inter-op threads: %s", err)


def import_single_class(path: Path, base: type) -> type:
    """The one subclass of ``base`` a model file defines (TorchServe's exactly-one-class rule)."""
    module_name = f"hyperserve_model_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ServingError(f"cannot import model file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module_name and issubclass(c, base)]
    if len(classes) != 1:
        raise ServingError(f"model file {path.name} must define exactly one {base.__name__} subclass, "
                           f"found {[c.__name__ for c in classes]}")
    return classes[0]


class TorchHandler(Handler):
    name = "torch"
    artifact_names = ("model.pt", "model.pt2", "model.torchscript")
    artifact_suffixes = (".pt", ".pt2", ".torchscript")

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        found = super().find_artifact(model_path)
        if found is None and model_path.is_dir() and (model_path / "model.py").is_file():
            weights = sorted(p for p in model_path.iterdir() if p.suffix in _STATE_DICT_SUFFIXES)
            if len(weights) == 1:
                return weights[0]
        return found

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        import torch

        set_threads(config)
        self.device = choose_device(config)
        self.kind = ""
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = (TensorSpec("output"),)
        path = artifact if artifact.is_file() else self.find_artifact(artifact)
        if path is None:
            raise ServingError(f"no PyTorch artifact in {artifact}: expected model.pt (TorchScript), model.pt2 "
                               "(torch.export / AOTInductor) or model.py with a state dict (--trust-model-code)")
        model_file = path.parent / "model.py"
        try:
            if path.suffix == ".pt2":
                self._load_pt2(path)
            elif model_file.is_file() and path.suffix in _STATE_DICT_SUFFIXES and path.name != "model.pt":
                self._load_eager(model_file, path, config)
            else:
                self._load_torchscript_or_pickle(path, config)
        except ServingError:
            raise
        except Exception as err:
            raise ServingError(f"torch could not load {path.name}: {type(err).__name__}: {err}") from err
        if self.kind != "aoti":
            self.module.to(self.device)
        if self.kind not in ("aoti", "export"):  # an exported program is already in inference form
            self.module.eval()
        log.info("PyTorch %s model on %s", self.kind, self.device)

    def _load_pt2(self, path: Path) -> None:
        import torch

        if _is_aoti_package(path):
            loader = getattr(getattr(torch, "_inductor", None), "aoti_load_package", None)
            if loader is None:
                raise ServingError(f"{path.name} is an AOTInductor package; this torch ({torch.__version__}) "
                                   "cannot load those (torch >= 2.6 can)")
            self.module = loader(str(path))
            self.kind = "aoti"
            # A package is compiled for one device: its inputs go there, whatever --device says.
            metadata = self.module.get_metadata() if hasattr(self.module, "get_metadata") else {}
            self.device = torch.device(metadata.get("AOTI_DEVICE_KEY") or self.device.type)
            self._inputs = (TensorSpec("input", np.dtype(np.float32)),)
            return
        self.kind = "export"
        program = torch.export.load(str(path))
        self.module = program.module()
        self._inputs, self._outputs = self._program_signature(program)

    @staticmethod
    def _program_signature(program) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Names, dtypes and shapes of a torch.export program's user inputs and outputs;
        symbolic (dynamic) dimensions become -1."""
        import torch

        def spec(name: str, value) -> TensorSpec:
            if not isinstance(value, torch.Tensor):
                return TensorSpec(name)
            shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
            return TensorSpec(name, torch_dtype_to_numpy(value.dtype), shape)

        nodes = {n.name: n for n in program.graph.nodes}
        inputs = tuple(spec(name, nodes[name].meta.get("val")) for name in program.graph_signature.user_inputs)
        output_node = next(n for n in program.graph.nodes if n.op == "output")
        values = [a.meta.get("val") if hasattr(a, "meta") else None for a in output_node.args[0]]
        user_outputs = values[len(values) - len(program.graph_signature.user_outputs):]
        names = ["output"] if len(user_outputs) == 1 else [f"output_{i}" for i in range(len(user_outputs))]
        return inputs, tuple(spec(n, v) for n, v in zip(names, user_outputs))

    def _load_eager(self, model_file: Path, weights: Path, config: HandlerConfig) -> None:
        import torch

        if not config.trust_model_code:
            raise ServingError(f"{model_file.name} + {weights.name} is an eager model: serving it imports and runs "
                               "model.py; pass --trust-model-code if you trust this artifact")
        cls = import_single_class(model_file, torch.nn.Module)
        self.module = cls()
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        self.module.load_state_dict(state)
        self.kind = "eager"
        self._inputs = self._forward_inputs(inspect.signature(self.module.forward).parameters)

    def _load_torchscript_or_pickle(self, path: Path, config: HandlerConfig) -> None:
        import torch

        try:
            self.module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as jit_error:
            if not config.trust_model_code:
                raise ServingError(f"{path.name} is not TorchScript ({str(jit_error).splitlines()[0]}); if it is a "
                                   "module saved with torch.save, loading it unpickles and runs code: pass "
                                   "--trust-model-code if you trust this artifact") from None
            if str(path.parent) not in sys.path:  # the pickle names its classes' modules, kept beside it
                sys.path.insert(0, str(path.parent))
            self.module = torch.load(str(path), map_location="cpu", weights_only=False)
            if not isinstance(self.module, torch.nn.Module):
                raise ServingError(f"{path.name} holds a {type(self.module).__name__}, not a torch.nn.Module; "
                                   "a state dict needs model.py beside it") from None
            self.kind = "pickled"
            self._inputs = self._forward_inputs(inspect.signature(self.module.forward).parameters)
            return
        self.kind = "torchscript"
        schema = self.module.forward.schema
        args = [a for a in schema.arguments if a.name != "self"]
        self._inputs = tuple(TensorSpec(a.name, np.dtype(np.float32) if str(a.type) == "Tensor" else None)
                             for a in args)
        returns = str(schema.returns[0].type) if schema.returns else "Tensor"
        if returns.startswith("Tuple"):
            count = returns.count("Tensor")
            self._outputs = tuple(TensorSpec(f"output_{i}") for i in range(count))

    @staticmethod
    def _forward_inputs(parameters) -> tuple[TensorSpec, ...]:
        names = [n for n, p in parameters.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return tuple(TensorSpec(n, np.dtype(np.float32)) for n in names) or (TensorSpec("input", np.dtype(np.float32)),)

    def signature(self) -> Signature:
        return Signature(self._inputs, self._outputs)

    def describe(self) -> dict[str, Any]:
        import torch

        return {"kind": self.kind, "device": str(self.device), "torch": torch.__version__}

    def predict(self, request: InferRequest) -> InferResponse:
        import torch

        args = []
        for spec in self._inputs:
            value = request.inputs[spec.name]
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                raise InvalidInput(f"input '{spec.name}': this model takes numeric tensors")
            if spec.dtype is not None and value.dtype != spec.dtype:
                value = value.astype(spec.dtype)
            if spec.shape is not None and (len(spec.shape) != value.ndim or any(
                    d not in (-1, v) for d, v in zip(spec.shape[1:], value.shape[1:]))):
                raise InvalidInput(f"input '{spec.name}': expected shape {list(spec.shape)} (-1: any), "
                                   f"got {list(value.shape)}")
            args.append(torch.from_numpy(np.ascontiguousarray(value)).to(self.device, non_blocking=True))
        try:
            with torch.inference_mode():
                result = self.module(*args)
        except (RuntimeError, ValueError, TypeError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            if _INPUT_ERROR.search(str(err)):
                raise InvalidInput(f"the model rejected the input: {message}") from None
            raise
        return InferResponse(self._outputs_of(result))

    def _outputs_of(self, result) -> dict[str, Any]:
        import torch

        def to_numpy(value):
            if isinstance(value, torch.Tensor):
                return value.detach().cpu().numpy()
            return value

        if isinstance(result, dict):
            return {str(k): to_numpy(v) for k, v in result.items()}
        if isinstance(result, (tuple, list)):
            if len(result) == 1:
                return {"output": to_numpy(result[0])}
            return {f"output_{i}": to_numpy(v) for i, v in enumerate(result)}
        return {"output": to_numpy(result)}
