"""The Vertex predict path around the scheduler: large bodies decoded on a codec thread, replies
encoded with the model call (never a large one on the event loop), raw bodies batched for handlers
that ask for it."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import orjson

from hyperserve.handlers.base import HandlerConfig
from hyperserve.server.codecs import vertex_json
from hyperserve.server.dataplane import DataPlane
from hyperserve.server.http import Request
from hyperserve.server.repository.model import DeployedModel
from hyperserve.server.protocols import PROFILES, Context, build_router
from hyperserve.server.repository.models import ModelRepository

CONTROLLED = "tests.helpers.test_handler:ControlledHandler"


def serving(model: DeployedModel):
    """Every REST profile's router over one model, and its data plane."""
    plane = DataPlane(ModelRepository([model], "m"))
    return build_router(Context(plane), list(PROFILES), explicit=False), plane


def test_large_bodies_and_replies_stay_off_the_loop(tmp_path, monkeypatch):
    (tmp_path / "controlled.json").write_text("{}")
    model = DeployedModel("m", str(tmp_path), framework=CONTROLLED, handler_config=HandlerConfig(),
                          cache_dir=tmp_path, threads=1, max_queue=8)
    model.load()
    app, plane = serving(model)
    threads: list[tuple[str, int]] = []
    encode = vertex_json.encode_predict_response

    def recording(response, *args):
        body = encode(response, *args)
        threads.append((threading.current_thread().name, len(body)))
        return body

    monkeypatch.setattr(vertex_json, "encode_predict_response", recording)
    decode = vertex_json.decode_predict_request
    decoded_on: list[str] = []

    def recording_decode(body, signature, *by_name):
        decoded_on.append(threading.current_thread().name)
        return decode(body, signature, *by_name)

    monkeypatch.setattr(vertex_json, "decode_predict_request", recording_decode)

    async def ask(wide: int):
        body = orjson.dumps({"instances": [[1, 2]], "parameters": {"wide": wide}})
        response = await app(Request("POST", "/predict", "", {"content-type": "application/json"}, body, "1.1", True))
        return response

    async def main():
        small, large = await ask(10), await ask(200_000)  # 0.8 MB of float32 outputs
        big_body = orjson.dumps({"instances": [[1.5, 2.5]] * 40_000})  # 0.4 MB of JSON
        big = await app(Request("POST", "/predict", "", {"content-type": "application/json"}, big_body, "1.1", True))
        assert big.status == 200
        return small, large

    small, large = asyncio.run(main())
    assert decoded_on[:2] == [threading.main_thread().name] * 2 and decoded_on[2].startswith("codec")
    plane.close()
    assert small.status == large.status == 200
    assert np.asarray(json.loads(large.body)["predictions"]).shape == (1, 200_000)
    # Encoded on the thread that ran the model call, as part of it (the scheduler's split).
    assert [name.startswith("model-m") for name, _ in threads[:2]] == [True, True]


def test_raw_bodies_share_calls_when_the_handler_batches_them(tmp_path):
    from tests.helpers.test_handler import RawBatchHandler

    (tmp_path / "controlled.json").write_text("{}")
    model = DeployedModel("m", str(tmp_path), framework="tests.helpers.test_handler:RawBatchHandler",
                          handler_config=HandlerConfig(), cache_dir=tmp_path, threads=1, max_queue=16)
    model.load()
    app, plane = serving(model)
    RawBatchHandler.calls.clear()

    def raw(content_type: str, body: bytes):
        return app(Request("POST", "/predict", "", {"content-type": content_type}, body, "1.1", True))

    async def main():
        first = asyncio.ensure_future(raw("image/png", b"x" * 3))
        await asyncio.sleep(0.01)  # the first call runs; the next five queue behind it
        rest = [raw(kind, b"y" * n) for kind, n in
                (("image/jpeg", 5), ("text/plain", 1), ("image/png", 0), ("audio/wav", 7), ("image/jpeg", 2))]
        return await asyncio.gather(first, *rest)

    replies = asyncio.run(main())
    plane.close()
    assert RawBatchHandler.calls == [1, 5]
    assert [orjson.loads(r.body) for r in replies] == [{"predictions": [p]} for p in (
        "image/png 3", "image/jpeg 5", "text/plain 1", "image/png 0", "audio/wav 7", "image/jpeg 2")]


def test_v2_and_vertex_requests_to_one_model_share_a_call(tmp_path):
    """The scheduler sees InferRequests, not protocols: a Vertex JSON body, a v2 JSON body and a v2
    binary body that arrive together run in one framework call, and each gets its own protocol's reply."""
    (tmp_path / "controlled.json").write_text("{}")
    model = DeployedModel("m", str(tmp_path), framework=CONTROLLED, handler_config=HandlerConfig(),
                          cache_dir=tmp_path, threads=1, max_queue=8)
    model.load()
    app, plane = serving(model)
    x = np.array([[5.0, 6.0]], dtype=np.float32)
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 8}}]})

    def post(path, body, **headers):
        return app(Request("POST", path, "", {"content-type": "application/json", **headers}, body, "1.1", True))

    async def main():
        return await asyncio.gather(
            post("/predict", orjson.dumps({"instances": [[1, 2]]})),
            post("/v2/models/m/infer", orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                                                  "data": [3, 4]}]})),
            post("/v2/models/m/infer", header + x.tobytes(), **{"inference-header-content-length": str(len(header))}))

    vertex, v2_json, v2_binary = asyncio.run(main())
    batch_sizes = dict(model.runner.batch_sizes)
    plane.close()
    assert batch_sizes == {3: 1}, "one call for the three requests"
    assert orjson.loads(vertex.body) == {"predictions": [3.0]}
    assert orjson.loads(v2_json.body)["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [1], "data": [7.0]}]
    assert orjson.loads(v2_binary.body)["outputs"][0]["data"] == [11.0]
