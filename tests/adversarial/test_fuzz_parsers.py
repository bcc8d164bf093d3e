"""A fuzz target for every protocol's request parser: seed bodies of each protocol, mutated (bytes
flipped, cut, spliced with poison), then parsed. The only outcomes allowed are a request or a 4xx
ServingError; anything else (another exception, a 5xx) is a failure. Where a native fast path
exists, it and the pure-Python path must give the same outcome on the same input.

HYPERSERVE_FUZZ_EXAMPLES sets the examples per target (CI: the default; longer runs: raise it)."""

from __future__ import annotations

import os

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperserve.server.codecs import raw as raw_codec
from hyperserve.server.codecs import tf_examples, v2, vertex_json
from hyperserve.server.codecs import torchserve as torchserve_codec
from hyperserve.server.codecs.json_scan import scan_json_py
from hyperserve.server.errors import ServingError
from hyperserve.server.native import native
from hyperserve.server.protocols import cpr
from hyperserve.server.types import Signature, TensorSpec

EXAMPLES = int(os.environ.get("HYPERSERVE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

F32 = np.dtype(np.float32)
SIGNATURES = [
    Signature((TensorSpec("x", F32, (-1, 4)),), (TensorSpec("y"),)),
    Signature((TensorSpec("x", np.dtype(np.int64), (-1, 2)),), (TensorSpec("y"),)),
    Signature((TensorSpec("a", F32, (-1, 2)), TensorSpec("b", np.dtype(object), (-1,))), (TensorSpec("y"),)),
    Signature((TensorSpec("x"),), (TensorSpec("y"),)),
]
POISON = [b"9" * 400, b"-" + b"9" * 30, b"NaN", b"-Infinity", b"1e999", b"[" * 80, b"]" * 80, b'"\\ud800"',
          b"\xff\xfe", b'"a":1,"a":2', b"{}", b"null", b"true", b'{"b64":"!!"}', b'"\\u0000"', b",", b""]
SEEDS = {
    "vertex": [b'{"instances": [[1.5, 2, 3, 4], [5, 6, 7, 8]]}', b'{"instances": [{"a": [1, 2], "b": "x"}]}',
               b'{"inputs": {"a": [[1, 2]], "b": ["x"]}, "signature_name": "serving_default"}',
               b'{"instances": [[1, 2]], "parameters": {"k": [1, {"z": null}]}}',
               b'{"instances": [{"b64": "AAAA"}]}'],
    "v2": [b'{"id": "r", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
           b'{"inputs": [{"name": "b", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}], '
           b'"outputs": [{"name": "y", "parameters": {"binary_data": true}}], "parameters": {"timeout": 5}}',
           b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]}]}'],
    "torchserve": [b'{"instances": [{"data": "abc"}, {"body": {"b64": "AAAA"}}, 3]}', b'[1, 2, 3]', b'{"data": 1}'],
    "tf-examples": [b'{"examples": [{"f": 1.5, "g": [1, 2], "s": "x"}]}',
                    b'{"signature_name": "c", "examples": [{"b": {"b64": "AAAA"}}], "context": {"k": 1}}'],
    "cpr": [b'{"instances": [[1, 2]], "parameters": {"a": 1}}', b'{"x": [1, {"y": "z"}]}'],
}


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    body = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 4))
        at = draw(st.integers(0, len(body)))
        if kind == 0 and body:  # flip a byte
            body[min(at, len(body) - 1)] = draw(st.integers(0, 255))
        elif kind == 1:  # splice in poison
            body[at:at] = draw(st.sampled_from(POISON))
        elif kind == 2:  # cut
            del body[at:at + draw(st.integers(1, 8))]
        elif kind == 3:  # replace a number or a string with poison
            start = body.find(b":", at)
            if start != -1:
                body[start + 1:start + 1] = draw(st.sampled_from(POISON)) + b","
        else:  # repeat a part (duplicate keys, long arrays)
            end = min(len(body), at + draw(st.integers(1, 40)))
            body[at:at] = body[at:end] * draw(st.integers(1, 5))
    return bytes(body)


def outcome(parse, *args):
    """"ok", or the 4xx a client would get; any other exception or a 5xx fails the target."""
    try:
        parse(*args)
    except ServingError as err:
        assert 400 <= err.status < 500, f"{err.status}: {err.message}"
        return ("error", err.status, err.message)
    return ("ok",)


@FUZZ
@given(mutated(SEEDS["vertex"]), st.sampled_from(SIGNATURES))
def test_fuzz_vertex_and_kserve_v1_and_tf_serving_predict(body, signature):
    slow = outcome(vertex_json.decode_predict_request_py, body, signature)
    if native is not None:
        assert outcome(vertex_json.decode_predict_request, body, signature)[:2] == slow[:2]


@FUZZ
@given(mutated(SEEDS["v2"]), st.sampled_from(SIGNATURES), st.integers(0, 64))
def test_fuzz_oip_v2_rest_infer(body, signature, binary_bytes):
    outcome(v2.decode_infer_request, body, None, signature, "m")
    tail = bytes(range(binary_bytes))
    outcome(v2.decode_infer_request, body + tail, len(body), signature, "m")  # the binary extension
    outcome(v2.decode_infer_request, body + tail, len(body) + binary_bytes + 1, signature, "m")


@FUZZ
@given(mutated(SEEDS["torchserve"]), st.sampled_from(["application/json", "text/plain", "image/png",
                                                      "multipart/form-data; boundary=x", ""]))
def test_fuzz_torchserve_and_sagemaker_rows(body, content_type):
    outcome(torchserve_codec.instance_rows, body)
    outcome(torchserve_codec.body_rows, body, content_type)


@FUZZ
@given(mutated(SEEDS["tf-examples"]))
def test_fuzz_tf_serving_classify_and_regress(body):
    outcome(tf_examples.decode_examples, body)


@FUZZ
@given(mutated(SEEDS["cpr"]), st.booleans())
def test_fuzz_vertex_cpr(body, row_wise):
    outcome(cpr.decode, body, row_wise)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["application/x-npy", "application/octet-stream", "text/csv",
                                                 "image/jpeg", ""]), st.sampled_from(SIGNATURES))
def test_fuzz_raw_bodies(body, content_type, signature):
    from hyperserve.server.errors import UnsupportedMediaType  # noqa: F401 - a 415 is a 4xx too

    npy = np.lib.format
    import io

    buffer = io.BytesIO()
    npy.write_array(buffer, np.arange(8, dtype=np.float32).reshape(2, 4))
    for candidate in (body, buffer.getvalue()[:len(body)] + body, buffer.getvalue()):
        outcome(raw_codec.decode_raw_request, content_type, candidate, signature)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["x", "a", "b", ""]), st.sampled_from(["FP32", "INT64", "BYTES", "BOOL",
                                                                                 "BF16", "FP16", "NOPE"]),
                          st.lists(st.integers(-3, 2**40), max_size=4), st.binary(max_size=40)), max_size=3),
       st.sampled_from(SIGNATURES), st.booleans())
def test_fuzz_oip_v2_grpc_infer(inputs, signature, raw):
    from hyperserve.server.codecs import v2_grpc
    from hyperserve.server.grpc import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape, contents in inputs:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            request.raw_input_contents.append(contents)
        else:
            tensor.contents.fp32_contents.extend(np.frombuffer(contents[: len(contents) // 4 * 4], np.float32))
    outcome(v2_grpc.decode_model_infer, request, signature, "m")


@FUZZ
@given(mutated(SEEDS["vertex"] + SEEDS["v2"]))
def test_fuzz_the_json_key_scan_native_against_python(body):
    if native is None:
        pytest.skip("needs the compiled extension (pip install -e .)")
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # the scan runs only on what orjson accepted
    assert native.scan_json(body) == scan_json_py(body)
