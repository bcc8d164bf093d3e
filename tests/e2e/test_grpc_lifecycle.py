"""The gRPC front-end's lifecycle over real sockets: the standard health service says NOT_SERVING
while the model loads and while the server drains, SIGTERM lets an in-flight ModelInfer finish,
and a port that cannot be bound stops the server with a clear message."""

from __future__ import annotations

import signal
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import CONTROLLED, ServerProcess, free_port

pytestmark = pytest.mark.e2e


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


def test_health_follows_loading_and_draining_and_sigterm_finishes_calls(controlled_dir, tmp_path):
    release = tmp_path / "release"
    grpc_port = free_port()
    address = f"127.0.0.1:{grpc_port}"
    server = ServerProcess([str(controlled_dir(load_until_file=str(release))), "--framework", CONTROLLED,
                            "--grpc-port", str(grpc_port), "--grace-period", "20"]).wait_listening()
    try:
        wait_for(lambda: health(address) == health_pb2.HealthCheckResponse.NOT_SERVING)
        client = grpcclient.InferenceServerClient(address)
        assert not client.is_server_ready()
        release.write_text("go")
        wait_for(lambda: health(address) == health_pb2.HealthCheckResponse.SERVING)
        assert client.is_server_ready()

        tensor = grpcclient.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
        answers = []
        call = threading.Thread(target=lambda: answers.append(
            client.infer("model", [tensor], parameters={"sleep": 1.5}).as_numpy("y")))
        call.start()
        time.sleep(0.5)  # the call is in the model now
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: health(address) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=5)
        call.join(30)
        assert answers and answers[0].tolist() == [3.0], "the in-flight call finished during the drain"
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


def test_a_grpc_port_in_use_stops_the_server_with_a_message(controlled_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess([str(controlled_dir()), "--framework", CONTROLLED, "--grpc-port", str(port)])
        assert server.proc.wait(30) == 2
    assert f"the gRPC port 127.0.0.1:{port} is already served by another process" in server.output()


def test_protocols_and_the_message_limit(controlled_dir):
    grpc_port = free_port()
    rest_only = ServerProcess([str(controlled_dir()), "--framework", CONTROLLED, "--grpc-port", str(grpc_port),
                               "--protocols", "vertex,v2"]).wait_ready()
    try:
        import httpx

        assert httpx.get(rest_only.url + "/v2/health/ready").status_code == 200
        assert httpx.get(rest_only.url + "/ping").status_code == 404  # SageMaker's and TorchServe's: off
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", grpc_port)) != 0, "no gRPC without grpc in --protocols"
    finally:
        rest_only.stop()
    small = ServerProcess([str(controlled_dir()), "--framework", CONTROLLED, "--grpc-port", str(grpc_port),
                           "--grpc-max-message-bytes", "4096"]).wait_ready()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        fits = grpcclient.InferInput("x", [1, 2], "FP32")
        fits.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
        assert client.infer("model", [fits]).as_numpy("y").tolist() == [2.0]
        big = grpcclient.InferInput("x", [1024, 2], "FP32")
        big.set_data_from_numpy(np.ones((1024, 2), dtype=np.float32))  # 8 KiB of raw contents
        with pytest.raises(InferenceServerException, match="RESOURCE_EXHAUSTED"):
            client.infer("model", [big])
        assert client.is_server_ready()
    finally:
        small.stop()
