"""Azure ML scoring scripts (``score.py`` with ``init()`` and ``run()``), run unmodified as
Microsoft's inference server runs them (../shared/CONTRACTS.md §7).

``load`` imports the script, runs ``init()`` once (in this worker, before it turns ready) and
reads how ``run`` is decorated. ``predict`` takes one scoring call (the request as the azureml
profile received it) and gives the reply Azure's server would send, encoded: run() is user code
on the model thread, and so is the encoding of what it returned. A script is called by one
thread at a time unless it sets ``HYPERSERVE_THREAD_SAFE = True``; WORKER_COUNT gives processes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperserve.server.codecs import azureml as codec
from hyperserve.server.errors import ServingError
from hyperserve.server.types import Chunks, InferRequest, InferResponse, Signature, TensorSpec

from ..base import Capabilities, Handler, HandlerConfig, Inputs
from . import api, script, swagger

log = logging.getLogger("hyperserve.handlers.azureml")

CALL = "call"
REPLY = "reply"
SCRIPT_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."
RUN_FAILED_HEADER = "x-ms-run-function-failed"


@dataclass(slots=True)
class ScoringCall:
    """A request to the scoring route, as the script may see it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes | memoryview
    remote_addr: str | None = None


@dataclass(slots=True)
class ScoringReply:
    status: int
    body: bytes | Chunks  # Chunks: an AMLResponse's generator, made while it is sent
    content_type: str
    headers: list[tuple[str, str]]  # may repeat a name, as AMLResponse allows
    run_ms: float  # run()'s own time: Azure's x-ms-run-fn-exec-ms


class ScriptFailed(ServingError):
    """run() raised: Azure's 500, marked as the function's failure."""

    status = 500

    def __init__(self, message: str = SCRIPT_FAILED):
        super().__init__(message, headers={RUN_FAILED_HEADER: "True"})


def werkzeug_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    """Header names as Flask's request shows them (``X-Request-Id``): scripts that read
    ``request_headers`` by name see the spelling they were written against."""
    return [(name.title(), value) for name, value in headers.items()]


class AzureMLScriptHandler(Handler):
    name = "azureml"
    capabilities = Capabilities(thread_safe=False, releases_gil=False, batchable=False, inputs=Inputs.SCORING_SCRIPT)

    @classmethod
    def find_artifact(cls, model_path: Path) -> Path | None:
        return None  # never detected: chosen with --entry-script or AZUREML_ENTRY_SCRIPT

    def load(self, artifact: Path, config: HandlerConfig) -> None:
        entry_script = config.options.get("entry_script", "")
        if not entry_script:
            raise ServingError("an Azure ML scoring script needs --entry-script (or AZUREML_ENTRY_SCRIPT)")
        root = Path(config.options.get("app_root") or script.app_root())
        # The platform's value stays: a script may expect <dir>/<model>/<version>/ under it.
        os.environ.setdefault("AZUREML_MODEL_DIR", str(artifact if artifact.is_dir() else artifact.parent))
        self.script = script.load(entry_script, root)
        log.info("invoking the scoring script's init()")
        try:
            self.script.init()
        except BaseException as err:  # noqa: BLE001 - init() is user code; the server must report, not die
            log.error("the scoring script's init() failed (AZUREML_MODEL_DIR=%s)", os.environ["AZUREML_MODEL_DIR"],
                      exc_info=err)
            raise ServingError(f"the scoring script's init() failed: {type(err).__name__}: {err}") from err
        self.documents = swagger.documents(root, self.script.run)
        if getattr(self.script.module, "HYPERSERVE_THREAD_SAFE", False) is True:
            self.capabilities = dataclasses.replace(self.capabilities, thread_safe=True)
        self.description = {"entry_script": str(self.script.path), "run_takes": self.script.run_input.value,
                            "thread_safe": self.capabilities.thread_safe}

    def signature(self) -> Signature:
        return Signature((TensorSpec(CALL),), (TensorSpec(REPLY),))

    def describe(self) -> dict[str, Any]:
        return self.description

    def api_document(self, version: str) -> dict:
        return swagger.document(self.documents, version)

    def predict(self, request: InferRequest) -> InferResponse:
        return InferResponse({REPLY: [self.score(request.inputs[CALL][0])]})

    def score(self, call: ScoringCall) -> ScoringReply:
        inputs = self._inputs(call)
        headers = dict(werkzeug_headers(call.headers))
        started = time.perf_counter()
        try:
            output = self.script.call(inputs, headers)
            run_ms = (time.perf_counter() - started) * 1e3
            if isinstance(output, api.AMLResponse):
                return self._response(output, run_ms)
        except Exception as err:  # noqa: BLE001 - run() is user code
            log.error("the scoring script's run() raised", exc_info=err)
            raise ScriptFailed() from None
        try:
            body = codec.json_output(output)
        except (TypeError, ValueError) as err:  # not JSON-encodable, or a circular reference
            log.error("run()'s output cannot be encoded as JSON: %s", err)
            raise ServingError(INTERNAL_ERROR, status=500) from None
        return ScoringReply(200, body, "application/json", [(RUN_FAILED_HEADER, "False")], run_ms)

    def _inputs(self, call: ScoringCall) -> dict[str, Any]:
        """run()'s arguments, as the decoration asks."""
        run = self.script
        if run.run_input is script.RunInput.REQUEST:
            request = api.AMLRequest(call.method, call.path, call.query, werkzeug_headers(call.headers),
                                     bytes(call.body), codec.query_pairs(call.query), remote_addr=call.remote_addr)
            return {run.input_name: request}
        if call.method not in ("GET", "POST"):
            raise MethodNotScored(call.method)
        if run.run_input is script.RunInput.OBJECT:
            return codec.object_input(call.method, call.query, call.headers.get("content-type", ""), call.body,
                                      run.parameters)
        return {run.input_name: codec.text_input(call.method, call.query, call.headers.get("content-type", ""),
                                                 call.body)}

    @staticmethod
    def _response(response: api.AMLResponse, run_ms: float) -> ScoringReply:
        """An AMLResponse as it is; a generator body is sent as it yields."""
        body = Chunks(response.response) if response.is_streamed else response.get_data()
        headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-type", "content-length")]
        if response.status_code >= 500:
            headers = [(k, v) for k, v in headers if k.lower() != RUN_FAILED_HEADER] + [(RUN_FAILED_HEADER, "True")]
        return ScoringReply(response.status_code, body, response.content_type or "", headers, run_ms)


class MethodNotScored(ServingError):
    """OPTIONS (Azure answers it 200, empty) or another method run() is not called for (405)."""

    status = 405

    def __init__(self, method: str):
        super().__init__("Method not allowed")
        self.method = method

    def __reduce__(self):
        return MethodNotScored, (self.method,)
