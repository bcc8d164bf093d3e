"""A request of instances → one prediction (JSON) per instance, or RequestFailed.

``InProcess`` runs the request through the data plane exactly as the Vertex predict route would:
the same codecs, scheduler (so concurrent requests share framework calls) and handler, with no
HTTP. ``Endpoint`` POSTs it to a running server the way Vertex drives a container: bounded
concurrency, and retries with backoff on connection errors, 429 and 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import ThreadPoolExecutor

import orjson

from hyperserve.handlers.base import Inputs
from hyperserve.handlers.cpr import PREDICTIONS as CPR_PREDICTIONS, RESPONSE, RawReply
from hyperserve.handlers.torchserve.handler import PREDICTIONS, ROWS

from ..codecs import torchserve as torchserve_codec
from ..codecs import vertex_json
from ..dataplane import OFF_LOOP_DECODE_BYTES, DataPlane
from ..errors import ServingError
from ..repository.model import DeployedModel
from ..types import InferRequest, InferResponse
from .errors import JobFailed
from .http_client import Outcome, settle

log = logging.getLogger("hyperserve.batch")


class RequestFailed(Exception):
    """The whole request failed: its rows are retried one by one, and those that fail again carry this."""

    def __init__(self, code: int, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s  # how long the server asked to wait before the next attempt


def _count_check(predictions: list, count: int) -> list:
    if type(predictions) is not list or len(predictions) != count:
        got = len(predictions) if type(predictions) is list else type(predictions).__name__
        raise RequestFailed(500, f"the model answered {got} predictions for {count} instances")
    return predictions


def _settle(future: asyncio.Future, result) -> None:
    """The scheduler's reply: the request's predictions, or its error as RequestFailed."""
    if not future.done():
        if isinstance(result, ServingError):
            future.set_exception(RequestFailed(result.status, result.message))
        elif isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _each(response: InferResponse, requests: list[InferRequest]) -> list:
    """The scheduler's split: every request's predictions, encoded where the model ran."""
    rows = vertex_json.encode_predictions_each(response, sum(r.batch_size for r in requests))
    parts, offset = [], 0
    for request in requests:
        parts.append(rows[offset:offset + request.batch_size])
        offset += request.batch_size
    return parts


class InProcess:
    """``parameters``: what the job sends; a request that decodes to other parameters, another
    signature or another count of instances than it has lines was reshaped by a line of its own."""

    def __init__(self, plane: DataPlane, model: DeployedModel, parameters: bytes | None = None,
                 decode_thread: bool = True):
        self.plane = plane
        self.model = model
        self.inputs = model.handler.capabilities.inputs
        self.batchable = model.handler.capabilities.batchable
        self.parameters = orjson.loads(parameters) if parameters is not None else {}
        # What it decodes it checks, for the handlers whose decoded request it sees whole.
        self.lines_checked = self.inputs is not Inputs.REQUEST
        self.decode_thread = decode_thread
        self._decoder: ThreadPoolExecutor | None = None

    async def _decode(self, decode, body: bytes, *args):
        """A large body decodes on a thread of the job's own, overlapping the loop and the model
        (``decode_thread``: a job of one process; its workers and Ray actors have a core each, and
        decode where they run). Not the server's codec thread: that one runs niced, to keep
        health probes answered, and starves when a job's processes fill every core."""
        if not self.decode_thread or len(body) <= OFF_LOOP_DECODE_BYTES:
            return decode(body, *args)
        if self._decoder is None:
            self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-decode")
        return await asyncio.get_running_loop().run_in_executor(self._decoder, decode, body, *args)

    def _check(self, count: int, decoded: int, parameters: dict, signature_name: str | None = None) -> None:
        if decoded != count or parameters != self.parameters or signature_name is not None:
            raise RequestFailed(400, f"the request decodes to {decoded} instances, not one per line ({count}), "
                                     "or to other parameters")

    def submit(self, body: bytes, count: int) -> asyncio.Future:
        """The request, queued now; the future gets its predictions or RequestFailed. A small
        tensor request is decoded here and answered by the scheduler's callback: no task per
        request, a share of a small model's rows/s (bench/README.md)."""
        if self.inputs is not Inputs.TENSORS or (self.decode_thread and len(body) > OFF_LOOP_DECODE_BYTES):
            return asyncio.ensure_future(self.predict(body, count))
        future = asyncio.get_running_loop().create_future()
        try:
            self._submit_tensors(vertex_json.decode_predict_request(body, self.model.signature,
                                                                    self.model.handler.signature_named),
                                 count, future)
        except ServingError as err:
            future.set_exception(RequestFailed(err.status, err.message))
        except RequestFailed as err:
            future.set_exception(err)
        return future

    async def predict(self, body: bytes, count: int) -> list[bytes]:
        try:
            if self.inputs is Inputs.TENSORS:
                return await self._tensors(body, count)
            if self.inputs is Inputs.ROWS:
                return await self._rows(body, count)
            return await self._whole_request(body, count)
        except ServingError as err:
            raise RequestFailed(err.status, err.message) from None

    async def _tensors(self, body: bytes, count: int) -> list[bytes]:
        model = self.model
        decoded = await self._decode(vertex_json.decode_predict_request, body, model.signature,
                                     model.handler.signature_named)
        future = asyncio.get_running_loop().create_future()
        self._submit_tensors(decoded, count, future)
        return await future

    def _submit_tensors(self, decoded, count: int, future: asyncio.Future) -> None:
        plane, model = self.plane, self.model
        request, fmt = decoded
        if fmt != vertex_json.ROW:
            raise RequestFailed(400, "a line reshaped the request into the columnar format")
        self._check(count, request.batch_size, request.parameters, request.signature_name)
        plane.check_ready(model)
        plane.submit(model, plane.prepare(request, {}), lambda result: _settle(future, result), _each)

    async def _rows(self, body: bytes, count: int) -> list[bytes]:
        rows, parameters = await self._decode(torchserve_codec.instance_rows, body)
        self._check(count, len(rows), parameters)
        response = await self.plane.infer(self.model, InferRequest({ROWS: rows}, len(rows), parameters))
        statuses = response.metadata.get("status") or ()
        for status, prediction in zip(statuses, response.outputs[PREDICTIONS]):
            if status != 200:
                raise RequestFailed(status, str(prediction))
        return [vertex_json.dumps(p) for p in _count_check(list(response.outputs[PREDICTIONS]), count)]

    async def _whole_request(self, body: bytes, count: int) -> list[bytes]:
        from ..protocols.cpr import decode

        request = await self._decode(decode, body, self.batchable)
        response = await self.plane.infer(self.model, request)
        if RESPONSE in response.outputs:
            result = response.outputs[RESPONSE][0]
            if isinstance(result, RawReply):
                if result.status != 200:
                    raise RequestFailed(result.status, bytes(result.body).decode("utf-8", "replace"))
                result = orjson.loads(result.body)
            predictions = result.get(CPR_PREDICTIONS) if type(result) is dict else None
        else:
            predictions = response.outputs[CPR_PREDICTIONS]
        return [vertex_json.dumps(p) for p in _count_check(list(predictions or ()), count)]


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Endpoint:
    """POSTs each request to ``url``; at most ``concurrency`` in flight."""

    lines_checked = False  # the server's decoding is not seen here: lines are scanned before they are sent

    def __init__(self, url: str, *, concurrency: int, retries: int, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, timeout_s: float = 600.0, headers: dict[str, str] | None = None):
        from .http_client import HttpClient

        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        try:
            self.client = HttpClient(url, size=concurrency, timeout_s=timeout_s, headers=headers or {})
        except ValueError as err:
            raise JobFailed(str(err)) from None

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc) -> None:
        self.client.close()

    def _delay(self, attempt: int, last: Exception | None) -> float:
        """Exponential backoff with jitter; longer when the server's Retry-After asked for longer,
        up to ``max_backoff_s`` (a server asking for hours would stall the job)."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
        if isinstance(last, RequestFailed) and last.retry_after_s is not None:
            return max(backoff, min(self.max_backoff_s, last.retry_after_s))
        return backoff

    def submit(self, body: bytes, count: int) -> asyncio.Future:
        """Answered in the client's callback, with no task; only a retry goes the way of ``predict``."""
        answer = asyncio.get_running_loop().create_future()
        self.client.send(body, lambda outcome: self._answer(outcome, answer, body, count))
        return answer

    def _answer(self, outcome: Outcome, answer: asyncio.Future, body: bytes, count: int) -> None:
        if answer.done():  # the job gave up on it
            return
        if isinstance(outcome, OSError):  # ConnectionError and TimeoutError among them
            result = self._unanswered(outcome, 0)
        elif isinstance(outcome, BaseException):
            answer.set_exception(outcome)
            return
        else:
            try:
                result = self._result(*outcome, count)
            except Exception as err:  # noqa: BLE001 - RequestFailed: the job's to see
                answer.set_exception(err)
                return
        if type(result) is list:
            answer.set_result(result)
            return
        retry = asyncio.ensure_future(self.predict(body, count, first=1, last=result))
        answer.add_done_callback(lambda done: retry.cancel() if done.cancelled() else None)
        retry.add_done_callback(lambda done: answer.cancel() if done.cancelled() else
                                settle(answer, done.exception() or done.result()))

    async def predict(self, body: bytes, count: int, first: int = 0, last: Exception | None = None) -> list[bytes]:
        """Attempts ``first`` to ``retries``, with backoff; ``last``: why the attempt before failed."""
        for attempt in range(first, self.retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt - 1, last))
            try:
                status, data, retry_after_s = await self.client.post(body)
            except OSError as err:  # ConnectionError and TimeoutError among them
                last = self._unanswered(err, attempt)
                continue
            result = self._result(status, data, retry_after_s, count)
            if type(result) is list:
                return result
            last = result
        raise last

    def _result(self, status: int, data: bytes, retry_after_s: float | None, count: int) -> list[bytes] | RequestFailed:
        """The predictions; a failure worth another attempt; or RequestFailed raised."""
        if status == 200:
            return predictions_of(data, count)
        failed = RequestFailed(status, _error_message(data, status), retry_after_s)
        if status not in RETRY_STATUSES:
            raise failed
        return failed

    def _unanswered(self, err: Exception, attempt: int) -> JobFailed:
        return JobFailed(f"the endpoint {self.url} did not answer after {attempt + 1} attempts: "
                         f"{type(err).__name__}: {err}")


def predictions_of(data: bytes, count: int) -> list[bytes]:
    """A 200's body → each of its ``count`` predictions' JSON; RequestFailed when they do not fit."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RequestFailed(502, f"the endpoint answered 200 with a body that is not JSON: {data[:200]!r}") \
            from None
    predictions = _count_check(doc.get("predictions") if type(doc) is dict else None, count)
    return _each_json(predictions)


def _each_json(values: list) -> list[bytes]:
    """Each value's JSON. Scalars that are not strings (labels, scores) hold no comma: then one
    call for the list, split at its commas."""
    if not values:
        return []
    inner = orjson.dumps(values)[1:-1]
    if b"[" in inner or b"{" in inner or b'"' in inner:
        return [orjson.dumps(v) for v in values]
    return inner.split(b",")


def _error_message(data: bytes, status: int) -> str:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")[:1000] or f"HTTP {status}"
    if type(doc) is dict:
        for key in ("error", "message", "detail"):
            if key in doc:
                value = doc[key]
                return value if type(value) is str else orjson.dumps(value).decode()
    return data.decode("utf-8", "replace")[:1000]
