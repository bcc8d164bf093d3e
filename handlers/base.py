"""The plug-in interface every framework implements. Handlers never see HTTP or JSON."""

from __future__ import annotations

import abc
import enum
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
    max_archive_bytes: int = 32 * 1024**3  # the most a model archive may unpack to
    options: dict[str, Any] = field(default_factory=dict)


class Inputs(enum.Enum):
    """What ``predict`` takes in ``request.inputs``."""

    TENSORS = "tensors"  # named arrays typed by the signature
    ROWS = "rows"  # one Python object per instance (TorchServe handlers; codecs.torchserve)
    REQUEST = "request"  # the whole parsed request in, the whole reply out (Vertex CPR)
    # An Azure ML scoring script: the HTTP call in, the reply its server would send out
    # (handlers.azureml; every profile's predict route gives it the call as /score would).
    SCORING_SCRIPT = "scoring_script"
    # An MLflow model run through mlflow.pyfunc: MLflow's scoring request in, its reply out
    # (handlers.mlflow; MLflow's own parsing and schema enforcement run where the model does).
    PYFUNC = "pyfunc"


class RawBodies(enum.Enum):
    """Whether bodies that are not tensors (images, text) reach ``predict``."""

    NONE = "none"  # refused with 415
    ONE = "one"  # as ``request.raw``, one request per call
    BATCHED = "batched"  # as ``request.inputs[RAW_BODIES]``, a list of RawBody; one output row per body


@dataclass(frozen=True)
class Capabilities:
    """How the scheduler may run a handler and what its protocols may ask of it. Declared, never
    probed: a front-end reads these and calls only the methods they promise."""

    thread_safe: bool = True  # predict may run on several threads at once (else one call in flight)
    releases_gil: bool = True  # framework compute runs outside the GIL, so threads scale
    # A call is Python from end to end: calls under a millisecond run on the event loop, where a
    # thread would only add a hand-off.
    runs_inline: bool = False
    batchable: bool = True  # requests may be concatenated along dimension 0
    raw_bodies: RawBodies = RawBodies.NONE
    inputs: Inputs = Inputs.TENSORS
    named_signatures: bool = False  # signature_names()/signature_named() serve several signatures
    tf_serving_metadata: bool = False  # signature_defs() and signature_method() (:classify, :regress)
    # A loaded model may be forked into worker processes and shared copy-on-write; frameworks with
    # thread pools (ONNX Runtime, OpenMP, torch) load in each worker.
    fork_safe: bool = False
    # Instances one framework call may take when --max-batch-size leaves it to the handler. 64 bounds
    # a GPU model's memory; a framework whose call costs mostly a fixed overhead takes far more.
    default_max_batch_size: int = 64


# The default_max_batch_size of a framework whose call costs mostly a fixed overhead (scikit-learn's
# input checks, XGBoost's set-up): merging a batch job's requests of 64 saves most of it.
FIXED_COST_MAX_BATCH_SIZE = 4096


class Handler(abc.ABC):
    """One loaded model.

    ``capabilities`` tells the scheduler and the protocols what the handler can do (see
    Capabilities); a handler whose capabilities depend on what it loaded sets its own in ``load``.
    Detection: ``artifact_names`` are exact file names, ``artifact_suffixes`` file endings.
    """

    name: ClassVar[str] = ""
    capabilities: Capabilities = Capabilities()
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
        answer every name with it (``named_signatures`` handlers raise InvalidInput for unknown names)."""
        return self.signature()

    def signature_names(self) -> list[str]:
        """Every signature's name, the default first ([] for a model with one unnamed signature)."""
        return []

    def signature_method(self, name: str) -> str:
        """TF Serving's method_name of a signature (``tf_serving_metadata`` handlers)."""
        return "tensorflow/serving/predict"

    def signature_defs(self) -> dict[str, Any]:
        """TF Serving's signature_def metadata (``tf_serving_metadata`` handlers); {} otherwise."""
        return {}

    def api_document(self, version: str) -> dict[str, Any]:
        """The API document (Swagger / OpenAPI) the model's own serving contract publishes at
        ``version`` (Azure ML's /swagger.json); NotFound for a model that publishes none."""
        from hyperserve.server.errors import NotFound

        raise NotFound(f"model handler '{self.name}' publishes no API document")

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

    def close(self) -> None:
        """Release what ``load`` took (processes, sessions); called once, at shutdown."""


def default_threads(config: HandlerConfig) -> int:
    return config.intra_op_threads or max(1, len(os.sched_getaffinity(0)))
