"""Codec throughput against the baselines other servers use: stdlib json, orjson, pybase64.

  pytest bench/micro -q --benchmark-columns=mean,ops --benchmark-sort=name

Each benchmark records the body size, so MB/s = body_bytes / mean; `extra_info.mb_per_s` has it.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
import pytest

from hyperserve.server.codecs import vertex_json
from hyperserve.server.codecs.b64 import b64decode_py
from hyperserve.server.native import native
from hyperserve.server.types import Signature, TensorSpec

RNG = np.random.default_rng(0)
MLP_BODY = json.dumps({"instances": np.round(RNG.random((64, 784)), 6).tolist()}).encode()
MLP_SIG = Signature((TensorSpec("x", np.dtype(np.float32), (-1, 784)),), (TensorSpec("y"),))
IRIS_BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
IRIS_SIG = Signature((TensorSpec("instances", None, (-1, 4)),), (TensorSpec("predictions"),))
IMAGE = RNG.integers(0, 256, (224, 224, 3), dtype=np.uint8).tobytes()
IMAGE_BODY = json.dumps({"instances": [{"b64": base64.b64encode(IMAGE).decode()}]}).encode()
IMAGE_SIG = Signature((TensorSpec("image_bytes", np.dtype(object), (-1,)),), (TensorSpec("y"),))


def _speed(benchmark, size: int):
    benchmark.extra_info["body_bytes"] = size
    if benchmark.stats is not None:
        benchmark.extra_info["mb_per_s"] = round(size / benchmark.stats.stats.mean / 1e6, 1)


# 64×784 float32 values written two more ways: float32's shortest repr (7-9 digits), as clients that
# serialize float32 arrays send them, and `json.dumps(array.tolist())` (each float32 as the
# 16-17 digit repr of its double, a 1.0 MB body: the baseline body).
_F32 = RNG.random((64, 784)).astype(np.float32)
MLP_BODIES = {
    "6 decimals": MLP_BODY,
    "float32 shortest": orjson.dumps({"instances": _F32}, option=orjson.OPT_SERIALIZE_NUMPY),
    "float32.tolist()": json.dumps({"instances": _F32.tolist()}).encode(),
}


@pytest.fixture(scope="session")
def from_chars_scan(tmp_path_factory):
    """The bare std::from_chars scan (from_chars_scan.cpp), compiled with g++ -O2 as the issue did."""
    import ctypes
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("g++") is None:
        pytest.skip("needs g++ to build the from_chars reference scan")
    lib = tmp_path_factory.mktemp("scan") / "scan.so"
    subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC", str(Path(__file__).with_name("from_chars_scan.cpp")),
                    "-o", str(lib)], check=True)
    scan = ctypes.CDLL(str(lib)).from_chars_scan
    scan.restype = ctypes.c_size_t
    scan.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    return scan


@pytest.mark.parametrize("body_name", list(MLP_BODIES))
@pytest.mark.parametrize("name", ["hyperserve", "bare from_chars scan (C++)", "orjson+numpy", "stdlib json+numpy"])
def test_decode_64x784_float32(benchmark, name, body_name, request):
    body = MLP_BODIES[body_name]
    if name == "bare from_chars scan (C++)":
        scan = request.getfixturevalue("from_chars_scan")
        out = np.empty(len(body), dtype=np.float32)
        assert scan(body, len(body), out.ctypes.data) == 64 * 784
        decode = lambda: scan(body, len(body), out.ctypes.data)  # noqa: E731
    else:
        decode = {
            "hyperserve": lambda: vertex_json.decode_predict_request(body, MLP_SIG),
            "orjson+numpy": lambda: np.asarray(orjson.loads(body)["instances"], dtype=np.float32),
            "stdlib json+numpy": lambda: np.asarray(json.loads(body)["instances"], dtype=np.float32),
        }[name]
    benchmark(decode)
    _speed(benchmark, len(body))


def test_decode_iris_one_row(benchmark):
    benchmark(lambda: vertex_json.decode_predict_request(IRIS_BODY, IRIS_SIG))
    _speed(benchmark, len(IRIS_BODY))


@pytest.mark.parametrize("name", ["hyperserve", "python twin", "orjson+pybase64", "orjson+stdlib base64"])
def test_decode_b64_image(benchmark, name):
    if name == "orjson+pybase64":
        pybase64 = pytest.importorskip("pybase64", reason="needs pybase64 for this baseline")
        fn = lambda: pybase64.b64decode(orjson.loads(IMAGE_BODY)["instances"][0]["b64"])  # noqa: E731
    elif name == "orjson+stdlib base64":
        fn = lambda: base64.b64decode(orjson.loads(IMAGE_BODY)["instances"][0]["b64"])  # noqa: E731
    elif name == "python twin":
        fn = lambda: b64decode_py(orjson.loads(IMAGE_BODY)["instances"][0]["b64"].encode())  # noqa: E731
    else:
        if native is None:
            pytest.skip("needs the compiled extension")
        fn = lambda: vertex_json.decode_predict_request(IMAGE_BODY, IMAGE_SIG)[0].inputs["image_bytes"][0]  # noqa: E731
    assert fn() == IMAGE
    benchmark(fn)
    _speed(benchmark, len(IMAGE_BODY))


def test_encode_64x10_predictions(benchmark):
    from hyperserve.server.types import InferResponse

    response = InferResponse({"scores": RNG.random((64, 10), dtype=np.float32)})
    body = vertex_json.encode_predict_response(response, 64)
    benchmark(lambda: vertex_json.encode_predict_response(response, 64))
    _speed(benchmark, len(body))
