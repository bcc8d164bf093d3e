"""--auth-tokens-file over real sockets: REST on every profile and gRPC (tritonclient), health and
/metrics open unless asked, 401 with WWW-Authenticate, rotation without a restart, and tokens
never in the log."""

from __future__ import annotations

import time

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import ServerProcess, free_port

pytestmark = pytest.mark.e2e

ROW = [6.7, 3.0, 5.2, 2.3]
TOKEN, KEY, NEW = "s3cret-token-0123456789", "azure-style-key-abcdef", "rotated-token-9876543210"

# A predict, metadata or stats route of each REST profile.
PROTECTED = [("POST", "/predict", {"instances": [ROW]}), ("POST", "/v1/models/model:predict", {"instances": [ROW]}),
             ("POST", "/v2/models/model/infer", {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                                            "data": ROW}]}),
             ("GET", "/v2/models/model", None), ("GET", "/v2/models/model/stats", None),
             ("GET", "/v1/models/model/metadata", None), ("POST", "/invocations", {"instances": [ROW]}),
             ("POST", "/predictions/model", {"instances": [ROW]}), ("GET", "/stats", None)]
OPEN = ["/health", "/live", "/ping", "/v2/health/ready", "/v2/health/live", "/v1/models/model"]


def call(server, method, path, body, headers=None):
    return httpx.request(method, server.url + path, json=body, headers=headers or {})


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# one token a line\n{TOKEN}\n\n{KEY}\n")
    return path


def test_every_route_needs_a_token_but_health_and_metrics(start_server, sklearn_dir, tokens_file):
    grpc_port = free_port()
    server = start_server([sklearn_dir, "--auth-tokens-file", tokens_file, "--grpc-port", grpc_port],
                          env={"HYPERSERVE_GRPC_PORT": str(grpc_port)})
    for method, path, body in PROTECTED:
        refused = call(server, method, path, body)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.headers["www-authenticate"] == 'Bearer realm="hyperserve"'
        wrong = call(server, method, path, body, {"authorization": "Bearer not-it"})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert call(server, method, path, body, {"authorization": f"Bearer {TOKEN}"}).status_code < 400, path
        assert call(server, method, path, body, {"x-api-key": KEY}).status_code < 400, path
    for path in OPEN:
        assert httpx.get(server.url + path).status_code == 200, path
    assert httpx.get(server.url + "/metrics").status_code == 200
    # The refusals are counted, and the server went on serving throughout.
    metrics = httpx.get(server.url + "/metrics").text
    assert 'reason="unauthorized"' in metrics

    address = f"127.0.0.1:{grpc_port}"
    client = grpcclient.InferenceServerClient(address)
    tensor = grpcclient.InferInput("input", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.array([ROW]))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("model", [tensor])
    assert "UNAUTHENTICATED" in str(refused.value.status())
    with pytest.raises(InferenceServerException):
        client.infer("model", [tensor], headers={"authorization": "Bearer not-it"})
    answer = client.infer("model", [tensor], headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.as_numpy(answer.get_response().outputs[0].name).tolist() == [2]
    assert client.infer("model", [tensor], headers={"x-api-key": KEY}) is not None
    assert client.is_server_ready()  # health calls stay open
    with grpc.insecure_channel(address) as channel:
        assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
    server.stop()
    assert TOKEN not in server.output() and KEY not in server.output() and "not-it" not in server.output()


def test_health_and_metrics_behind_the_token_when_asked(start_server, sklearn_dir, tokens_file):
    server = start_server([sklearn_dir, "--auth-tokens-file", tokens_file, "--auth-health", "--auth-metrics"],
                          ready=False)
    deadline = time.monotonic() + 60
    while httpx.get(server.url + "/health", headers={"x-api-key": KEY}).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for path in OPEN + ["/metrics"]:
        assert httpx.get(server.url + path).status_code == 401, path
        assert httpx.get(server.url + path, headers={"x-api-key": KEY}).status_code == 200, path


def test_tokens_rotate_without_a_restart(start_server, sklearn_dir, tokens_file):
    server = start_server([sklearn_dir, "--auth-tokens-file", tokens_file])
    old = {"authorization": f"Bearer {TOKEN}"}
    assert call(server, "POST", "/predict", {"instances": [ROW]}, old).status_code == 200
    replacement = tokens_file.with_name("tokens.new")
    replacement.write_text(f"{NEW}\n")
    replacement.replace(tokens_file)  # as a secret mount updates: a new file in its place
    deadline = time.monotonic() + 10
    while call(server, "POST", "/predict", {"instances": [ROW]}, old).status_code != 401:
        assert time.monotonic() < deadline, "the old token is still accepted"
        time.sleep(0.2)
    assert call(server, "POST", "/predict", {"instances": [ROW]},
                {"authorization": f"Bearer {NEW}"}).status_code == 200
    tokens_file.write_text("")  # emptied: nobody gets in, and the server keeps answering
    deadline = time.monotonic() + 10
    while call(server, "POST", "/predict", {"instances": [ROW]}, {"authorization": f"Bearer {NEW}"}).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert httpx.get(server.url + "/health").status_code == 200
    server.stop()
    assert "refusing every request until it holds a token" in server.output()


def test_a_missing_tokens_file_stops_the_start(sklearn_dir, tmp_path):
    proc = ServerProcess([str(sklearn_dir), "--auth-tokens-file", str(tmp_path / "absent")])
    assert proc.proc.wait(60) == 2
    assert "--auth-tokens-file" in proc.output() and "no such file" in proc.output()
