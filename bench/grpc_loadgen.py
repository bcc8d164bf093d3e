"""A closed-loop gRPC load generator for the Open Inference Protocol's ModelInfer: ``concurrency``
calls in flight on one HTTP/2 channel (grpc.aio), each sent again as soon as it is answered.

The request is serialized once and sent as bytes, and replies are not parsed (only their status
is read), so the client spends its time on the calls, not on protobuf. The outcomes fill the same
RunStats as the HTTP generator: status 200 for OK, else the gRPC code's number + 1000.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from .loadgen import RunStats

METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class GrpcTarget:
    host: str
    port: int
    model: str

    @classmethod
    def parse(cls, url: str) -> GrpcTarget:
        """grpc://host:port/MODEL"""
        parts = urlsplit(url)
        if parts.scheme != "grpc" or not parts.port or not parts.path.strip("/"):
            raise ValueError(f"a gRPC target is grpc://host:port/MODEL, got {url!r}")
        return cls(parts.hostname or "127.0.0.1", parts.port, parts.path.strip("/"))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class GrpcLoadGenerator:
    def __init__(self, target: GrpcTarget, request: bytes, *, concurrency: int, duration: float | None,
                 total_requests: int | None = None, warmup: float = 0.0,
                 on_progress: Callable[[float, int], None] | None = None, max_message_bytes: int = 100 << 20):
        if duration is None and total_requests is None:
            raise ValueError("give a duration or a request count")
        self.target = target
        self.request = request
        self.concurrency = concurrency
        self.duration = duration
        self.total_requests = total_requests
        self.warmup = warmup
        self.on_progress = on_progress
        self.max_message_bytes = max_message_bytes
        self.stats = RunStats()
        self.measuring = False
        self.stopping = False

    async def _client(self, call) -> None:
        stats = self.stats
        import grpc

        while not self.stopping:
            sent = time.perf_counter_ns()
            try:
                await call(self.request)
                status = 200
            except grpc.aio.AioRpcError as err:
                status = 1000 + err.code().value[0]
                if self.measuring:
                    stats.errors[f"{err.code().name}: {err.details()}"[:200]] += 1
            if self.measuring:
                stats.latencies_us.append((time.perf_counter_ns() - sent) // 1000)
                stats.status_codes.append(status)
                if self.total_requests is not None and len(stats.latencies_us) >= self.total_requests:
                    self.stopping = True

    async def run(self) -> RunStats:
        import grpc

        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes)]
        async with grpc.aio.insecure_channel(self.target.address, options=options) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            call = channel.unary_unary(METHOD)  # bytes in, bytes out: no (de)serializers
            clients = [asyncio.ensure_future(self._client(call)) for _ in range(self.concurrency)]
            if self.warmup > 0:
                await asyncio.sleep(self.warmup)
            self.measuring = True
            self.stats.started = time.perf_counter()
            deadline = None if self.duration is None else self.stats.started + self.duration
            while not self.stopping and (deadline is None or time.perf_counter() < deadline):
                await asyncio.sleep(0.05 if deadline is None else min(0.5, max(0.0, deadline - time.perf_counter())))
                if self.on_progress is not None:
                    self.on_progress(time.perf_counter() - self.stats.started, len(self.stats.latencies_us))
            self.measuring = False
            self.stopping = True
            self.stats.ended = time.perf_counter()
            await asyncio.gather(*clients, return_exceptions=True)
        self.stats.statuses.update(self.stats.status_codes)
        return self.stats


def run(generator: GrpcLoadGenerator) -> RunStats:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(generator.run())
    return uvloop.run(generator.run())
