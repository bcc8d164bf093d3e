"""Every setting in one table: its flag, the environment variables that set it, default and help.

Precedence: flag > first set environment variable > default. The platform's own variables
(AIP_*) come first where they exist, so the container needs no flags on Vertex AI.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Option:
    flag: str
    env: tuple[str, ...]
    default: Any
    type: Callable[[str], Any]
    help: str
    shown_default: str = ""  # what --help says the default is, when it depends on other settings

    @property
    def default_text(self) -> str:
        return self.shown_default or str(self.default)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _env(name: str) -> tuple[str, ...]:
    return ("HYPERSERVE_" + name,)


def flag(text: str) -> bool:
    """A yes/no option: the bare flag, or true/false, 1/0, yes/no (environment variables)."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


SERVE_OPTIONS: tuple[Option, ...] = (
    Option("--host", _env("HOST"), "0.0.0.0", str, "address to bind"),
    Option("--workers", _env("WORKERS"), 0, int,
           "worker processes sharing the port (0: one per GPU when one is usable, else one per core; for a scoring "
           "script $WORKER_COUNT, else 1, as Azure's server)"),
    # SAGEMAKER_BIND_TO_PORT: SageMaker's port for a container of an inference pipeline.
    Option("--port", ("AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT") + _env("PORT"), None, int, "port to bind",
           "8080; 5001, Azure ML's, for a scoring script"),
    Option("--protocols", _env("PROTOCOLS"), "all", str,
           "comma-separated protocol profiles to serve: admin, vertex, kserve-v1, tf-serving, sagemaker, "
           "torchserve, v2, azureml, mlflow, grpc (all: every one whose routes do not conflict)"),
    Option("--grpc-port", _env("GRPC_PORT"), 8081, int,
           "port of the Open Inference Protocol v2 gRPC service (0: no gRPC)"),
    Option("--grpc-max-message-bytes", _env("GRPC_MAX_MESSAGE_BYTES"), 100 * 1024 * 1024, int,
           "largest gRPC message received or sent, in bytes"),
    Option("--health-route", ("AIP_HEALTH_ROUTE",), "/health", str, "readiness route (Vertex AI)"),
    Option("--predict-route", ("AIP_PREDICT_ROUTE",), "/predict", str, "predict and rawPredict route (Vertex AI)"),
    Option("--model-name", _env("MODEL_NAME"), "model", str, "name of the model on the KServe v1 routes"),
    Option("--framework", _env("FRAMEWORK"), "auto", str,
           "handler to use: auto (detect from the artifacts), onnx, sklearn, xgboost, or an entry-point name"),
    Option("--predictor", _env("PREDICTOR"), "", str,
           "a Vertex CPR Predictor to serve, as module:Class (default: $PREDICTOR_MODULE:$PREDICTOR_CLASS)"),
    Option("--cpr-handler", _env("CPR_HANDLER"), "", str,
           "a custom Vertex CPR Handler, as module:Class (default: $HANDLER_MODULE:$HANDLER_CLASS)"),
    Option("--entry-script", ("AZUREML_ENTRY_SCRIPT",) + _env("ENTRY_SCRIPT"), "", str,
           "an Azure ML scoring script (init() and run()) to serve, relative to $AML_APP_ROOT (default: "
           "/var/azureml-app when it exists, else the working directory); the model URI becomes $AZUREML_MODEL_DIR"),
    Option("--method", _env("METHOD"), "predict", str,
           "scikit-learn method that answers predict: predict, predict_proba, decision_function, transform"),
    Option("--device", _env("DEVICE"), "auto", str, "auto (GPU when usable), cpu or cuda"),
    Option("--trust-model-code", _env("TRUST_MODEL_CODE"), False, flag,
           "PyTorch: allow an eager model (model.py + state dict) or a pickled module, which run the artifact's code"),
    Option("--install-requirements", _env("INSTALL_REQUIREMENTS"), False, flag,
           "TorchServe archives: pip install the archive's requirementsFile at load"),
    Option("--max-archive-bytes", _env("MAX_ARCHIVE_BYTES"), 32 * 1024**3, int,
           "most bytes a model archive (.mar, .tar.gz) may unpack to; one that unpacks to more, or to over "
           "200 times its own size past the first 64 MiB (a decompression bomb), is refused"),
    Option("--intra-op-threads", _env("INTRA_OP_THREADS"), 0, int,
           "framework intra-op threads (0: its default; with several workers, the cores shared among them)"),
    Option("--inter-op-threads", _env("INTER_OP_THREADS"), 0, int, "framework inter-op threads (0: its default)"),
    Option("--model-threads", _env("MODEL_THREADS"), 0, int,
           "framework calls in flight at once (0: 2 for frameworks that release the GIL, else 1)"),
    Option("--isolation", _env("ISOLATION"), "thread", str,
           "thread: the handler runs on the server's threads; process: in --model-threads child processes "
           "(pure-Python handlers: parallel, and a crash fails only its call)"),
    Option("--max-batch-size", _env("MAX_BATCH_SIZE"), 0, int,
           "most instances queued requests may put into one framework call (0: the handler's, 4096 for "
           "scikit-learn and XGBoost, whose calls cost mostly a fixed overhead, else 64; 1: no batching)"),
    Option("--preferred-batch-sizes", _env("PREFERRED_BATCH_SIZES"), "", str,
           "comma-separated batch sizes to cut batches to when the queue can fill one (e.g. 8,16,32)"),
    Option("--max-queue-delay-us", _env("MAX_QUEUE_DELAY_US"), 0, int,
           "microseconds a partial batch may wait for more requests (0: adaptive, see Batching)"),
    Option("--max-queue", _env("MAX_QUEUE"), 1024, int,
           "requests waiting per model before answering 503 with Retry-After"),
    Option("--warmup-requests", _env("WARMUP_REQUESTS"), 0, int,
           "framework calls made on a batch generated from the signature before the model turns ready"),
    Option("--warmup-file", _env("WARMUP_FILE"), "", str,
           "a predict request body (JSON) run once at load instead of a generated one"),
    Option("--request-timeout", _env("REQUEST_TIMEOUT"), 600.0, float,
           "seconds a predict may take before 504 (0: no limit)"),
    Option("--max-body-size", _env("MAX_BODY_SIZE"), 100 * 1024 * 1024, int, "largest request body in bytes (413 beyond)"),
    Option("--max-header-size", _env("MAX_HEADER_SIZE"), 64 * 1024, int, "largest request head in bytes (431 beyond)"),
    Option("--keepalive-timeout", _env("KEEPALIVE_TIMEOUT"), 75.0, float, "seconds an idle keep-alive connection stays open"),
    Option("--header-timeout", _env("HEADER_TIMEOUT"), 10.0, float, "seconds a client has to send a request's headers"),
    Option("--body-timeout", _env("BODY_TIMEOUT"), 60.0, float, "seconds a client has to send a request's body"),
    Option("--send-timeout", _env("SEND_TIMEOUT"), 60.0, float,
           "seconds a client may leave answers unread (the server's buffer for it full) before it is disconnected"),
    Option("--grace-period", _env("GRACE_PERIOD"), 30.0, float,
           "seconds in-flight requests get to finish after SIGTERM"),
    Option("--load-failure-exit-delay", _env("LOAD_FAILURE_EXIT_DELAY"), 5.0, float,
           "seconds to keep answering 503 after a failed load before exiting non-zero"),
    Option("--cache-dir", _env("CACHE_DIR"), "/tmp/hyperserve", str,
           "where remote artifacts (gs://, s3://, az://, http(s)://) are downloaded and cached by URI and version"),
    Option("--cache-max-bytes", _env("CACHE_MAX_BYTES"), 0, int,
           "most bytes the cache keeps: the least recently used copies are removed past it (0: no limit)"),
    Option("--log-level", _env("LOG_LEVEL"), "info", str, "debug, info, warning or error"),
    Option("--log-format", _env("LOG_FORMAT"), "auto", str,
           "json (one Cloud Logging object a line, on stdout), text (on stderr), or auto: json unless stdout is a "
           "terminal"),
    Option("--access-log", _env("ACCESS_LOG"), 0.0, float,
           "share of answers to log in Cloud Logging's httpRequest shape (0: none, 1: every one, 0.01: one in 100)"),
    Option("--otel", _env("OTEL"), False, flag,
           "OpenTelemetry spans (decode, queue, compute, encode) over OTLP/HTTP, configured by the OTEL_* variables "
           "(default: on when OTEL_EXPORTER_OTLP_ENDPOINT is set)"),
    Option("--metrics", _env("METRICS"), True, flag, "Prometheus metrics at GET /metrics (see Metrics)"),
    Option("--metrics-port", _env("METRICS_PORT"), 0, int, "also serve GET /metrics alone on this port (0: no)"),
    Option("--auth-tokens-file", _env("AUTH_TOKENS"), "", str,
           "a file of access tokens, one a line: every predict, metadata and stats route (REST and gRPC) then "
           "needs 'Authorization: Bearer <token>' or 'x-api-key: <token>'; re-read when it changes"),
    Option("--auth-health", _env("AUTH_HEALTH"), False, flag, "with --auth-tokens-file: health and liveness too"),
    Option("--auth-metrics", _env("AUTH_METRICS"), False, flag, "with --auth-tokens-file: /metrics too"),
    Option("--metrics-dir", ("PROMETHEUS_MULTIPROC_DIR",) + _env("METRICS_DIR"), "", str,
           "where worker processes share their metrics (emptied at start; default: a new temporary directory)"),
)


# Where each platform puts the model when the container is started with no model argument, in
# order: Vertex AI's artifact URI, the directory Azure ML mounts, SageMaker's fixed directory.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"


def platform_model_uri(environ=os.environ, sagemaker_dir: str = SAGEMAKER_MODEL_DIR) -> str:
    if environ.get("AIP_STORAGE_URI"):
        return environ["AIP_STORAGE_URI"]
    if environ.get("AZUREML_MODEL_DIR"):
        return azureml_model_path(environ["AZUREML_MODEL_DIR"])
    if os.path.isdir(sagemaker_dir):
        with os.scandir(sagemaker_dir) as entries:
            if any(entries):
                return sagemaker_dir
    return ""


def azureml_model_path(model_dir: str) -> str:
    """Azure ML mounts a model registered from a folder as <AZUREML_MODEL_DIR>/<folder>/: serve
    that folder when it is all the directory holds."""
    try:
        with os.scandir(model_dir) as found:
            entries = list(found)
    except OSError:
        return model_dir  # the load names the missing directory
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0].path
    return model_dir


def env_default(option: Option, environ=os.environ) -> Any:
    for name in option.env:
        value = environ.get(name)
        if value not in (None, ""):
            return option.type(value)
    return option.default


def add_options(parser: argparse.ArgumentParser, options=SERVE_OPTIONS, environ=os.environ) -> None:
    for option in options:
        env_note = f" [env: {', '.join(option.env)}]" if option.env else ""
        extra = {"nargs": "?", "const": True} if option.type is flag else {}
        parser.add_argument(option.flag, dest=option.dest, type=option.type, default=env_default(option, environ),
                            help=f"{option.help} (default: {option.default_text}){env_note}", **extra)


def markdown_table(options=SERVE_OPTIONS) -> str:
    """The README's configuration table, generated so it cannot drift from --help."""
    lines = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for o in options:
        lines.append(f"| `{o.flag}` | {', '.join(f'`{e}`' for e in o.env)} | `{o.default_text}` | {o.help} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m hyperserve.server.config prints the README's table
    print(markdown_table())
