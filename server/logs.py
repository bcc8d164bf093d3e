"""Logging as Cloud Logging reads it: one JSON object a line on stdout (``severity``, ``message``,
``time``, the trace of the request being answered, ``httpRequest`` for the access log), or plain
text on a terminal. A traceback goes in ``message``, so Error Reporting picks it up. Nothing here
ever logs a request's body or its headers (tokens among them)."""

from __future__ import annotations

import contextvars
import logging
import os
import random
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

# The trace of the request whose answer is being made: (trace id, span id, sampled), or None.
TRACE: contextvars.ContextVar[tuple[str, str, bool] | None] = contextvars.ContextVar("hyperserve_trace",
                                                                                    default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HEX = frozenset("0123456789abcdef")
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO", "DEBUG": "DEBUG"}
ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


def _hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX and text != "0" * length


def trace_of(headers: dict[str, str]) -> tuple[str, str, bool] | None:
    """W3C ``traceparent`` (version-trace-span-flags), else ``X-Cloud-Trace-Context``
    (TRACE/SPAN;o=1, the span id in decimal); None when neither is there or well formed."""
    parent = headers.get("traceparent")
    if parent:
        parts = parent.strip().lower().split("-")
        if len(parts) >= 4 and _hex(parts[1], 32) and _hex(parts[2], 16) and len(parts[3]) == 2:
            try:
                return parts[1], parts[2], bool(int(parts[3], 16) & 1)
            except ValueError:
                return None
        return None
    cloud = headers.get("x-cloud-trace-context")
    if cloud:
        trace, _, rest = cloud.strip().partition("/")
        span, _, options = rest.partition(";")
        trace = trace.lower()
        if not _hex(trace, 32):
            return None
        try:
            span_hex = f"{int(span):016x}" if span else ""
        except ValueError:
            span_hex = ""
        return trace, span_hex, options.strip() == "o=1"
    return None


def project_id(environ=os.environ) -> str:
    for name in ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID", "GCLOUD_PROJECT"):
        if environ.get(name):
            return environ[name]
    return ""


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, project: str = ""):
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": message,
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "logger": record.name,
            "logging.googleapis.com/sourceLocation": {"file": record.pathname, "line": str(record.lineno),
                                                      "function": record.funcName},
        }
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["@type"] = ERROR_EVENT
        trace = getattr(record, "trace", None) or TRACE.get()
        if trace is not None:
            trace_id, span_id, sampled = trace
            entry["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace_id}" if self.project \
                else trace_id
            if span_id:
                entry["logging.googleapis.com/spanId"] = span_id
            entry["logging.googleapis.com/trace_sampled"] = sampled
        http_request = getattr(record, "http_request", None)
        if http_request is not None:
            entry["httpRequest"] = http_request
        return orjson.dumps(entry, default=str).decode()


def json_chosen(log_format: str, stream=None) -> bool:
    """--log-format: json, text, or auto (JSON unless stdout is a terminal)."""
    if log_format not in ("auto", "json", "text"):
        raise SystemExit(f"hyperserve: --log-format takes auto, json or text, got {log_format!r}")
    if log_format == "auto":
        stream = stream or sys.stdout
        return not (hasattr(stream, "isatty") and stream.isatty())
    return log_format == "json"


def configure(level: str, log_format: str = "auto") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if json_chosen(log_format):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(CloudLoggingFormatter(project_id()))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # The Azure SDK logs every HTTP request and response at INFO: a storage client's chatter.
    for chatty in ("azure", "botocore", "urllib3"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


class RequestTrace:
    """The transport's hook around a request's dispatch: TRACE holds its trace while the route
    runs (and in the tasks it starts, which copy the context), so what it logs carries the trace."""

    @staticmethod
    def enter(request):
        headers = request.headers
        if "traceparent" not in headers and "x-cloud-trace-context" not in headers:
            return None  # the usual request: nothing to set
        return TRACE.set(trace_of(headers))

    @staticmethod
    def exit(token) -> None:
        if token is not None:
            TRACE.reset(token)


# -- the access log -------------------------------------------------------------------------------

access_log = logging.getLogger("hyperserve.access")


def access_logger(rate: float, chance=random.random):
    """The RequestRecorder's observer that logs a ``rate`` share of answers, in Cloud Logging's
    httpRequest shape: method, path (never the query, which may carry secrets), status, latency,
    user agent and protocol."""

    def observe(request, status: int, seconds: float) -> None:
        if rate < 1.0 and chance() >= rate:
            return
        http_request = {"requestMethod": request.method, "requestUrl": request.path, "status": status,
                        "latency": f"{seconds:.6f}s", "protocol": f"HTTP/{request.http_version}"}
        agent = request.headers.get("user-agent")
        if agent:
            http_request["userAgent"] = agent
        access_log.info("%s %s %d %.2fms", request.method, request.path, status, seconds * 1000,
                        extra={"http_request": http_request, "trace": trace_of(request.headers)})

    return observe
