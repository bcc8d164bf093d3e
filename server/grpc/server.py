"""The gRPC transport: a grpc.aio server on the worker's event loop, with the standard gRPC health
service (grpc.health.v1.Health, for Kubernetes' and KServe's probes), message size limits, and a
drain that lets in-flight calls finish. Knows the data plane only for readiness."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..dataplane import DataPlane
from ..router import API, HEALTH
from . import grpc_service_pb2_grpc as pb_grpc

SERVICE = "inference.GRPCInferenceService"
WATCH_INTERVAL_S = 0.5


class HealthServicer(health_pb2_grpc.HealthServicer):
    """SERVING only while the data plane is ready: NOT_SERVING while loading and while draining."""

    def __init__(self, plane: DataPlane):
        self.plane = plane

    def _status(self, service: str):
        if service not in ("", SERVICE):
            return None
        serving = self.plane.not_ready_reason() is None
        return health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request, context):
        status = self._status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request, context):
        last = None
        while True:
            status = self._status(request.service)
            if status is None:
                status = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)


# Calls that are health checks: open unless --auth-health puts them behind the token too.
HEALTH_METHODS = frozenset((f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady", f"/{SERVICE}/ModelReady"))
HEALTH_SERVICE = "/grpc.health.v1.Health/"


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """--auth-tokens-file on gRPC: a call without a valid token in its metadata (``authorization:
    Bearer <t>`` or ``x-api-key``) ends UNAUTHENTICATED before its method runs."""

    def __init__(self, guard):
        self.guard = guard

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        method = details.method or ""
        is_health = method in HEALTH_METHODS or method.startswith(HEALTH_SERVICE)
        if handler is None or not self.guard.covers(HEALTH if is_health else API):
            return handler
        metadata = {key: value for key, value in (details.invocation_metadata or ()) if isinstance(value, str)}
        refused = self.guard.refusal(metadata)
        if refused is None:
            return handler
        message = refused[0]

        async def deny(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def deny_stream(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover - makes this an async generator, as a streaming method is

        make = {(False, False): grpc.unary_unary_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}
        streams = handler.response_streaming
        return make[(handler.request_streaming, streams)](deny_stream if streams else deny,
                                                          request_deserializer=handler.request_deserializer,
                                                          response_serializer=handler.response_serializer)


class GrpcServer:
    def __init__(self, plane: DataPlane, servicer, max_message_bytes: int, reuse_port: bool = False, guard=None):
        self.servicer = servicer
        # Worker processes share the port, as HTTP's do; a single process does not (grpcio's
        # default would let another server bind the same port beside it).
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.so_reuseport", 1 if reuse_port else 0)]
        self.server = grpc.aio.server(options=options, interceptors=[TokenInterceptor(guard)] if guard else None)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(plane), self.server)

    async def start(self, host: str, port: int) -> int:
        try:  # grpcio returns 0 or raises, by version, when the port cannot be bound
            bound = self.server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        except RuntimeError as err:
            raise OSError(f"cannot bind the gRPC port {host}:{port}: {err}") from None
        if bound == 0:
            raise OSError(f"cannot bind the gRPC port {host}:{port}")
        await self.server.start()
        return bound

    async def shutdown(self, grace_period: float) -> None:
        """While calls are in flight (``grace_period`` at most), the server keeps answering: health
        says NOT_SERVING and new infers UNAVAILABLE (the data plane is draining). Then it stops."""
        deadline = time.monotonic() + grace_period
        while self.servicer.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.server.stop(max(0.0, deadline - time.monotonic()))
