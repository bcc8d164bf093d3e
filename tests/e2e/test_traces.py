"""OpenTelemetry spans: in process with the SDK's in-memory exporter (one request → one trace:
the server span and decode, queue, compute, encode in order, with the model and batch size), and
from a `hyperserve serve` process to a real OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time

import httpx
import pytest
import uvloop

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ROW = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture
def traced_server(sklearn_dir):
    """hyperserve's own router, data plane and transport in a thread, spans to memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hyperserve.server.cli import _parser
    from hyperserve.server.http import HttpServer
    from hyperserve.server.serve import build
    from hyperserve.server.tracing import RequestSpans

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    args = _parser().parse_args(["serve", str(sklearn_dir), "--otel", "--grpc-port", "0"])
    router, plane, limits = build(args)
    for model in plane.models:
        model.load()
    spans = RequestSpans(provider.get_tracer("test"))
    plane.recorder.also(spans.observe)
    loop = uvloop.new_event_loop()
    server = HttpServer(router, limits, loop, plane.recorder)
    server.tracing = spans
    started = threading.Event()
    port = []

    def run():
        asyncio.set_event_loop(loop)
        port.append(loop.run_until_complete(server.start("127.0.0.1", 0)))
        started.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    started.wait(10)
    yield f"http://127.0.0.1:{port[0]}", exporter
    asyncio.run_coroutine_threadsafe(server.shutdown(1.0), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    plane.close()


def test_one_request_is_one_trace_with_its_phases_in_order(traced_server):
    url, exporter = traced_server
    r = httpx.post(url + "/predict", json={"instances": [ROW, ROW]}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}  # the caller's trace
    server = next(s for s in spans if s.name == "POST /predict")
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.attributes["hyperserve.model"] == "model" and server.attributes["http.response.status_code"] == 200
    phases = sorted((s for s in spans if s is not server), key=lambda s: s.start_time)
    assert [s.name for s in phases] == ["decode", "queue", "compute", "encode"]
    for span in phases:
        assert span.parent.span_id == server.context.span_id
        assert span.attributes["hyperserve.model"] == "model" and span.attributes["hyperserve.batch_size"] == 2
        assert server.start_time <= span.start_time <= span.end_time <= server.end_time
    for before, after in zip(phases, phases[1:]):
        assert before.end_time <= after.start_time
    assert len(spans) == 5


def test_a_request_without_traceparent_starts_its_own_trace(traced_server):
    url, exporter = traced_server
    assert httpx.post(url + "/v2/models/model/infer", json={"inputs": [
        {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}).status_code == 200
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1 and len(spans) == 5
    assert next(s for s in spans if s.name.startswith("POST")).parent is None
    assert httpx.get(url + "/health").status_code == 200  # not a model's: not traced (probes would flood it)
    assert httpx.post(url + "/predict", json={"instances": [[1, 2]]}).status_code == 400  # a model's: traced
    spans = exporter.get_finished_spans()
    assert len(spans) == 6 and spans[-1].name == "POST /predict" and spans[-1].attributes[
        "http.response.status_code"] == 400


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf), as a collector is."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        outer.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_spans_reach_an_otlp_receiver(start_server, sklearn_dir):
    receiver = OtlpReceiver()
    server = start_server([sklearn_dir], env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                              "OTEL_BSP_SCHEDULE_DELAY": "100"})
    r = httpx.post(server.url + "/predict", json={"instances": [ROW]}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([s for s in receiver.spans if s.trace_id.hex() == TRACE_ID]) < 5:
        time.sleep(0.1)
    traced = [s for s in receiver.spans if s.trace_id.hex() == TRACE_ID]
    assert sorted(s.name for s in traced) == ["POST /predict", "compute", "decode", "encode", "queue"], (
        receiver.spans, server.stop(), server.output())
    # gRPC ModelInfer too, in the trace its metadata names (tritonclient sends it as a header).
    import numpy as np
    import tritonclient.grpc as grpcclient

    grpc_trace = "0af7651916cd43dd8448eb211c80319c"
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.env['HYPERSERVE_GRPC_PORT']}")
    tensor = grpcclient.InferInput("input", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    client.infer("model", [tensor], headers={"traceparent": f"00-{grpc_trace}-b7ad6b7169203331-01"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([s for s in receiver.spans if s.trace_id.hex() == grpc_trace]) < 5:
        time.sleep(0.1)
    names = sorted(s.name for s in receiver.spans if s.trace_id.hex() == grpc_trace)
    assert names == ["compute", "decode", "encode", "inference.GRPCInferenceService/ModelInfer", "queue"]
    receiver.httpd.shutdown()
