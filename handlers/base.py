"""The plug-in interface every framework implements. Handlers never see HTTP or JSON."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hyperserve.server.types import InferRequest, InferResponse, Signature


@dataclass
class HandlerConfig:
    device: str = "auto"  # auto | cpu | cuda
    intra_op_threads: int = 0  # 0: the framework's default
    inter_op_threads: int = 0
    method: str = "predict"  # scikit-learn: which estimator method answers predict
    trust_model_code: bool = False  # PyTorch: eager models and pickled modules run the artifact's code
    install_requirements: bool = False  # TorchServe archives: pip install their requirementsFile
    options: dict[str, Any] = field(default_factory=dict)


class Handler(abc.ABC):
    """One loaded model.

    Class attributes tell the scheduler how to run it: ``releases_gil`` (framework compute runs
    outside the GIL, so threads scale), ``holds_gil`` (a call is Python from end to end and safe on
    any thread: calls shorter than a millisecond then run on the event loop, where a thread would
    only add a hand-off) and ``batchable`` (requests may be concatenated along dimension 0).
    ``accepts_raw`` says whether bodies other than tensors reach ``predict`` (as ``request.raw``, one
    request per call); with ``batches_raw`` too, concurrent raw bodies share calls instead: ``predict``
    gets ``request.inputs[RAW_BODIES]``, a list of ``RawBody``, and answers one row per body.
    ``takes_rows`` says that the model takes one Python object per instance, as TorchServe handlers do.
    ``fork_safe`` lets a supervisor load the model once and fork workers that share its memory
    copy-on-write; frameworks with thread pools (ONNX Runtime, OpenMP, torch) load in each worker.
    Detection: ``artifact_names`` are exact file names, ``artifact_suffixes`` file endings.
    """

    name: ClassVar[str] = ""
    fork_safe: ClassVar[bool] = False  # a loaded model may be forked into worker processes
    releases_gil: ClassVar[bool] = True
    holds_gil: ClassVar[bool] = False
    batchable: ClassVar[bool] = True
    accepts_raw: ClassVar[bool] = False
    batches_raw: ClassVar[bool] = False  # with accepts_raw: raw bodies arrive as a list, one row each
    takes_rows: ClassVar[bool] = False  # inputs are TorchServe rows (codecs.torchserve), not tensors
    takes_request: ClassVar[bool] = False  # the whole parsed request in, the whole reply out (Vertex CPR)
    artifact_names: ClassVar[tuple[str, ...]] = ()
    artifact_suffixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        """The artifact this handler would load from a directory or file, or None."""
        if model_path.is_file():
            return model_path if cls.matches_file(model_path.name) else None
        for name in cls.artifact_names:
            if (model_path / name).is_file():
                return model_path / name
        candidates = sorted(p for p in model_path.iterdir() if p.is_file() and p.name.endswith(cls.artifact_suffixes)) \
            if cls.artifact_suffixes else []
        return candidates[0] if len(candidates) == 1 else None

    @classmethod
    def matches_file(cls, filename: str) -> bool:
        return filename in cls.artifact_names or (bool(cls.artifact_suffixes) and filename.endswith(cls.artifact_suffixes))

    @abc.abstractmethod
    def load(self, artifact: Path, config: HandlerConfig) -> None:
        """Load the model from ``artifact`` (a file or a directory)."""

    @abc.abstractmethod
    def signature(self) -> Signature:
        """Inputs and outputs: names, dtypes (None: Python objects) and shapes (-1: variable)."""

    def signature_named(self, name: str) -> Signature:
        """The signature a request's ``signature_name`` asks for; models with one signature
        answer every name with it (TF Serving's models override this)."""
        return self.signature()

    def queue_delay_s(self) -> float | None:
        """A batching delay the artifact itself asks for (e.g. TF Serving's batch_timeout_micros);
        used when the server sets none."""
        return None

    @abc.abstractmethod
    def predict(self, request: InferRequest) -> InferResponse:
        """Run the model on a batch; every output's first dimension is the batch size."""

    def describe(self) -> dict[str, Any]:
        """What ``hyperserve inspect`` prints besides the signature."""
        return {}


def default_threads(config: HandlerConfig) -> int:
    return config.intra_op_threads or max(1, len(os.sched_getaffinity(0)))
