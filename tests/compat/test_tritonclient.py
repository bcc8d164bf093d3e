"""tritonclient (HTTP and gRPC, sync and asyncio), unmodified, against hyperserve's Open Inference
Protocol v2 front-ends; the same models answer identically on the Vertex routes."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpclient_aio
from tritonclient.utils import InferenceServerException

from tests.conftest import mlp_reference

pytestmark = pytest.mark.e2e

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
CLIENTS = {"http": httpclient, "grpc": grpcclient}


def client(server, kind: str):
    return CLIENTS[kind].InferenceServerClient(server.http_url if kind == "http" else server.grpc_url)


def mlp_input(kind: str, x: np.ndarray = X, binary: bool = True):
    tensor = CLIENTS[kind].InferInput("x", list(x.shape), "FP32")
    if kind == "http":
        tensor.set_data_from_numpy(x, binary_data=binary)
    else:
        tensor.set_data_from_numpy(x)
    return tensor


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_server_and_model_metadata(triton_server, kind):
    c = client(triton_server, kind)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("mlp") and c.is_model_ready("mlp", "1")
    as_json = {"as_json": True} if kind == "grpc" else {}
    server = c.get_server_metadata(**as_json)
    assert server["name"] == "hyperserve" and "binary_tensor_data" in server["extensions"]
    model = c.get_model_metadata("mlp", **as_json)
    assert model["name"] == "mlp" and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"] if kind == "grpc" else [-1, 4]}]
    assert [o["name"] for o in model["outputs"]] == ["scores", "label"]
    config = c.get_model_config("mlp", **as_json)
    config = config.get("config", config)
    assert int(config["max_batch_size"]) > 1 and config["input"][0]["data_type"] == "TYPE_FP32"
    stats = c.get_inference_statistics("mlp", **as_json)
    assert stats["model_stats"][0]["name"] == "mlp"
    index = c.get_model_repository_index(**as_json)
    index = index.get("models", index) if isinstance(index, dict) else index
    assert {m["name"] for m in index} == {"mlp", "iris", "upper"}


@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (False, False), (False, True)],
                         ids=["binary-in-binary-out", "json-in-json-out", "json-in-binary-out"])
def test_http_infer(triton_server, binary_in, binary_out):
    c = client(triton_server, "http")
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in ("scores", "label")]
    result = c.infer("mlp", [mlp_input("http", binary=binary_in)], outputs=outputs, request_id="r-7")
    expected = mlp_reference(triton_server.weights, X)
    np.testing.assert_allclose(result.as_numpy("scores"), expected, rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), expected.argmax(axis=1))
    assert result.get_response()["id"] == "r-7"


def test_http_default_outputs_are_binary_and_all_of_them(triton_server):
    result = client(triton_server, "http").infer("mlp", [mlp_input("http")])
    response = result.get_response()
    assert {o["name"] for o in response["outputs"]} == {"scores", "label"}
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert result.as_numpy("label").dtype == np.int64


def test_grpc_infer_raw_contents(triton_server):
    c = client(triton_server, "grpc")
    result = c.infer("mlp", [mlp_input("grpc")], outputs=[grpcclient.InferRequestedOutput("scores")])
    np.testing.assert_allclose(result.as_numpy("scores"), mlp_reference(triton_server.weights, X), rtol=1e-5)
    assert result.as_numpy("label") is None  # only what was asked for


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_scikit_learn_takes_fp32_under_any_input_name(triton_server, kind):
    tensor = CLIENTS[kind].InferInput("input-0", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    labels = client(triton_server, kind).infer("iris", [tensor]).as_numpy("predictions")
    assert labels.tolist() == [0, 2, 1]


@pytest.mark.parametrize("kind,binary", [("http", True), ("http", False), ("grpc", True)],
                         ids=["http-binary", "http-json", "grpc"])
def test_bytes_round_trip(triton_server, kind, binary):
    words = np.array([b"hello", "w\u00f6rld".encode(), b"", b"a b c"], dtype=object)
    tensor = CLIENTS[kind].InferInput("text", [len(words)], "BYTES")
    if kind == "http":
        tensor.set_data_from_numpy(words, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("upper", binary_data=binary)]
    else:
        tensor.set_data_from_numpy(words)
        outputs = None
    result = client(triton_server, kind).infer("upper", [tensor], outputs=outputs)
    upper = result.as_numpy("upper")
    assert [bytes(v) if not isinstance(v, str) else v.encode() for v in upper] == \
        [b"HELLO", "W\u00f6RLD".encode(), b"", b"A B C"]


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_unknown_model_and_bad_shape_raise(triton_server, kind):
    c = client(triton_server, kind)
    with pytest.raises(InferenceServerException, match="model 'nope' is not served here") as unknown:
        c.infer("nope", [mlp_input(kind)])
    assert unknown.value.status() in ("404", "StatusCode.NOT_FOUND")
    wide = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(InferenceServerException, match=r"expected \[-1, 4\], got \[2, 5\]") as bad:
        c.infer("mlp", [mlp_input(kind, wide)])
    assert bad.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert c.is_server_ready()  # and it keeps serving


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_500_concurrent_async_infers(triton_server, kind):
    rng = np.random.default_rng(3)
    rows = rng.random((500, 4), dtype=np.float32)
    module = httpclient_aio if kind == "http" else grpcclient_aio

    async def main():
        url = triton_server.http_url if kind == "http" else triton_server.grpc_url
        c = module.InferenceServerClient(url, **({"conn_limit": 500} if kind == "http" else {}))
        try:
            async def one(i):
                tensor = module.InferInput("x", [1, 4], "FP32")
                tensor.set_data_from_numpy(rows[i:i + 1])
                return (await c.infer("mlp", [tensor], request_id=str(i))).as_numpy("scores")[0]
            return await asyncio.gather(*(one(i) for i in range(500)))
        finally:
            await c.close()

    answers = np.stack(asyncio.run(main()))
    np.testing.assert_allclose(answers, mlp_reference(triton_server.weights, rows), rtol=1e-5)


def test_v2_and_vertex_routes_answer_identically(triton_server):
    vertex = httpx.post(f"http://{triton_server.http_url}/predict", json={"instances": X.tolist()}).json()
    v1 = httpx.post(f"http://{triton_server.http_url}/v1/models/mlp:predict", json={"instances": X.tolist()}).json()
    result = client(triton_server, "http").infer("mlp", [mlp_input("http")])
    assert vertex["predictions"] == v1["predictions"]
    np.testing.assert_array_equal(np.array([p["scores"] for p in vertex["predictions"]], dtype=np.float32),
                                  result.as_numpy("scores"))
    assert [p["label"] for p in vertex["predictions"]] == result.as_numpy("label").tolist()
