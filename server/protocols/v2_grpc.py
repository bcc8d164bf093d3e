"""The Open Inference Protocol v2 over gRPC: the service ``inference.GRPCInferenceService`` over
the data plane, with the Triton RPCs tritonclient calls (ModelConfig, ModelStatistics,
RepositoryIndex). Errors are gRPC status codes mapped from the data plane's statuses."""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf import json_format

from hyperserve.handlers.base import Inputs

from ..codecs import v2_grpc
from ..dataplane import DataPlane, failure_status
from ..errors import InvalidInput, ServingError
from ..grpc import grpc_service_pb2 as pb
from ..grpc import grpc_service_pb2_grpc as pb_grpc
from ..tracing import SpanTimes
from . import oip

NAME = "grpc"
log = logging.getLogger("hyperserve.grpc")

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
          501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
          504: grpc.StatusCode.DEADLINE_EXCEEDED}


def status_code(status: int) -> grpc.StatusCode:
    return _CODES.get(status) or (grpc.StatusCode.INVALID_ARGUMENT if status < 500 else grpc.StatusCode.INTERNAL)


async def _abort(plane: DataPlane, context: grpc.aio.ServicerContext, err: BaseException, counted: bool = False):
    """``counted``: the call's answer is recorded by its caller (ModelInfer's metrics)."""
    if not isinstance(err, ServingError):
        log.error("unhandled error while answering a gRPC call", exc_info=err)
    status, message, _ = failure_status(err)
    if not counted:
        plane.error_answers[status] += 1
    await context.abort(status_code(status), message)


def _headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.in_flight = 0  # ModelInfer calls being answered (the drain waits for them)
        self.spans = None  # with tracing on: server/tracing.RequestSpans, for ModelInfer's spans

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.not_ready_reason() is None)

    async def ModelReady(self, request, context):
        try:
            return pb.ModelReadyResponse(ready=self.plane.status(self.plane.model(request.name, request.version)).ready)
        except ServingError as err:
            await _abort(self.plane, context, err)

    async def ServerMetadata(self, request, context):
        return json_format.ParseDict(oip.server_metadata(self.plane), pb.ServerMetadataResponse())

    async def ModelMetadata(self, request, context):
        try:
            metadata = oip.model_metadata(self.plane, self.plane.model(request.name, request.version))
        except ServingError as err:
            await _abort(self.plane, context, err)
        return json_format.ParseDict(metadata, pb.ModelMetadataResponse())

    async def ModelConfig(self, request, context):
        try:
            config = oip.model_config(self.plane, self.plane.model(request.name, request.version))
        except ServingError as err:
            await _abort(self.plane, context, err)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))

    async def ModelStatistics(self, request, context):
        plane = self.plane
        try:
            models = [plane.model(request.name, request.version)] if request.name else list(plane.models)
        except ServingError as err:
            await _abort(self.plane, context, err)
        stats = {"model_stats": [oip.model_statistics(plane, m) for m in models]}
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse())

    async def RepositoryIndex(self, request, context):
        index = [m for m in oip.repository_index(self.plane) if not request.ready or m["state"] == "READY"]
        return json_format.ParseDict({"models": index}, pb.RepositoryIndexResponse())

    async def ModelInfer(self, request, context):
        self.in_flight += 1
        started = time.perf_counter()
        # What the metrics label it with, and its span times when traced.
        call = {"model": None, "status": 200, "trace": SpanTimes() if self.spans is not None else None}
        try:
            return await self._infer(request, context, call)
        except BaseException:
            if call["status"] == 200:  # not a ServingError's abort: a bug, or the call was cancelled
                call["status"] = 500
            raise
        finally:
            self.in_flight -= 1
            seconds = time.perf_counter() - started
            self.plane.recorder.record(NAME, call["model"], call["status"], seconds)
            if call["trace"] is not None and call["model"] is not None:
                self.spans.emit("inference.GRPCInferenceService/ModelInfer", _headers(context), call["model"],
                                call["trace"], started, seconds, call["status"] >= 500,
                                {"rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService",
                                 "rpc.method": "ModelInfer", "hyperserve.profile": NAME,
                                 "hyperserve.status": call["status"]})

    async def _infer(self, request, context, call: dict):
        plane = self.plane
        try:
            model = call["model"] = plane.model(request.model_name, request.model_version)
            plane.check_ready(model)
            if model.handler.capabilities.inputs is not Inputs.TENSORS:
                raise InvalidInput(f"model '{model.name}' ({model.framework}) takes "
                                   f"{model.handler.capabilities.inputs.value}, not tensors")
            infer_request, wanted = v2_grpc.decode_model_infer(request, model.signature, model.name)
            infer_request.trace = call["trace"]
            plane.prepare(infer_request, _headers(context))
            remaining = context.time_remaining()
            if remaining is not None:  # the client's gRPC deadline, when it is the sooner one
                deadline = time.monotonic() + remaining
                if infer_request.deadline is None or deadline < infer_request.deadline:
                    infer_request.deadline = deadline
            response = await model.runner.infer(infer_request)
            return v2_grpc.encode_model_infer(response, wanted, model.name, model.version)
        except ServingError as err:
            call["status"] = err.status
            await _abort(self.plane, context, err, counted=True)
