"""Vertex/TF Serving JSON ⇄ tensors as pure functions over bytes."""

from __future__ import annotations

import base64
import io

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperserve.server.codecs import raw, vertex_json
from hyperserve.server.errors import InvalidInput
from hyperserve.server.native import native
from hyperserve.server.types import InferResponse, Signature, TensorSpec

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def sig(*inputs: TensorSpec) -> Signature:
    return Signature(inputs, (TensorSpec("out"),))


def decode(body, signature):
    return vertex_json.decode_predict_request(body if isinstance(body, bytes) else orjson.dumps(body), signature)


def error(body, signature) -> str:
    with pytest.raises(InvalidInput) as info:
        decode(body, signature)
    return info.value.message


def test_row_format_single_input_becomes_a_typed_batch():
    request, fmt = decode({"instances": [[1, 2.5], [3, 4]]}, sig(TensorSpec("x", F32, (-1, 2))))
    assert fmt == vertex_json.ROW and request.batch_size == 2
    x = request.inputs["x"]
    assert x.dtype == np.float32 and x.tolist() == [[1, 2.5], [3, 4]]


def test_one_input_model_also_takes_named_instances():
    request, _ = decode({"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}, sig(TensorSpec("x", F32, (-1, 2))))
    assert request.inputs["x"].tolist() == [[1, 2], [3, 4]]


def test_multi_input_instances_are_split_by_name():
    s = sig(TensorSpec("a", F32, (-1, 2)), TensorSpec("b", I64, (-1,)))
    request, _ = decode({"instances": [{"a": [1, 2], "b": 7}, {"a": [3, 4], "b": 8}]}, s)
    assert request.inputs["a"].shape == (2, 2) and request.inputs["b"].tolist() == [7, 8]
    assert request.inputs["b"].dtype == np.int64
    assert "missing input 'b'" in error({"instances": [{"a": [1, 2]}]}, s)
    assert "unknown input 'c'" in error({"instances": [{"a": [1, 2], "b": 1, "c": 2}]}, s)
    assert "instances[0]" in error({"instances": [[1, 2]]}, s)
    assert "instances[1].a[1]: expected a number, got string" in error(
        {"instances": [{"a": [1, 2], "b": 7}, {"a": [3, "x"], "b": 8}]}, s)


def test_columnar_format():
    s = sig(TensorSpec("a", F32, (-1, 2)), TensorSpec("b", I64, (-1,)))
    request, fmt = decode({"inputs": {"a": [[1, 2]], "b": [5]}}, s)
    assert fmt == vertex_json.COLUMNAR and request.inputs["b"].tolist() == [5]
    assert "missing input 'b'" in error({"inputs": {"a": [[1, 2]]}}, s)
    response = InferResponse({"a_out": np.array([1.0]), "b_out": np.array([2])})
    assert orjson.loads(vertex_json.encode_predict_response(response, 1, fmt)) == {
        "outputs": {"a_out": [1.0], "b_out": [2]}}


def test_columnar_inputs_are_whole_tensors_as_tf_serving_takes_them():
    """TF Serving's REST API: columnar inputs need not share a leading dimension, a bare value is a
    rank-0 tensor, and the request is not a batch of instances (it runs alone, outputs whole)."""
    s = sig(TensorSpec("tag", np.dtype(object), (-1,)), TensorSpec("signal", F32, (-1, 5)),
            TensorSpec("factor", F32, ()))
    request, fmt = decode({"inputs": {"tag": ["foo", "bar", "baz"], "signal": [[1, 2, 3, 4, 5]], "factor": 2}}, s)
    assert fmt == vertex_json.COLUMNAR and request.unbatched and request.batch_size == 1
    assert request.inputs["tag"].shape == (3,) and request.inputs["signal"].shape == (1, 5)
    factor = request.inputs["factor"]
    assert factor.shape == () and factor.dtype == np.float32 and float(factor) == 2.0
    assert "expected a number, got string" in error({"inputs": {"tag": ["a"], "signal": [[1] * 5], "factor": "x"}}, s)
    assert "expects a tensor of shape [-1, 5] (-1: any), got [1, 4]" in error(
        {"inputs": {"tag": ["a"], "signal": [[1, 2, 3, 4]], "factor": 1}}, s)
    assert "expects a tensor of shape [] (-1: any), got [1]" in error(
        {"inputs": {"tag": ["a"], "signal": [[1] * 5], "factor": [1]}}, s)
    one, _ = decode({"inputs": "word"}, sig(TensorSpec("w", np.dtype(object), ())))
    assert one.inputs["w"].shape == () and one.inputs["w"].item() == "word"


def test_columnar_outputs_are_written_whole_and_scalars_as_scalars():
    response = InferResponse({"total": np.float32(7.5) * np.ones((), np.float32), "scores": np.arange(6).reshape(2, 3)})
    assert orjson.loads(vertex_json.encode_predict_response(response, 1, vertex_json.COLUMNAR)) == {
        "outputs": {"scores": [[0, 1, 2], [3, 4, 5]], "total": 7.5}}
    only = InferResponse({"total": np.array(3, dtype=np.int64)})
    assert vertex_json.encode_predict_response(only, 1, vertex_json.COLUMNAR) == b'{"outputs":3}'


@pytest.mark.parametrize("body, fragment", [
    ({"instances": [[1, 2], [3]]}, "instances[1]: expected an array of 2 elements, got 1"),
    ({"instances": [[1, 2], [3, "x"]]}, "instances[1][1]: expected a number, got string"),
    ({"instances": [[1, 2], [3, None]]}, "instances[1][1]: expected a number, got null"),
    ({"instances": [[1, 2], [3, True]]}, "instances[1][1]: expected a number, got boolean"),
    ({"instances": [[1, 2], [3, [4]]]}, "instances[1][1]: expected a scalar"),
    ({"instances": [[1, 2, 3]]}, "shape [2]"),
    ({"instances": [1, 2]}, "shape [2]"),
    ({"instances": [[1, 2]], "inputs": [[1, 2]]}, "exactly one of"),
    ({}, "exactly one of"),
    ({"instances": {"x": 1}}, "'instances' must be a list"),
    ({"instances": [[1, 2]], "signature_name": 3}, "'signature_name' must be a string"),
])
def test_float_input_errors_name_the_path(body, fragment):
    assert fragment in error(body, sig(TensorSpec("x", F32, (-1, 2))))


@pytest.mark.parametrize("value, fragment", [
    (1.5, "expected an integer, got 1.5"),
    (True, "expected an integer, got boolean"),
    ("3", "expected an integer, got string"),
    (2**63, "out of range"),
])
def test_integer_inputs_are_strict(value, fragment):
    assert fragment in error({"instances": [[1, value]]}, sig(TensorSpec("x", I64, (-1, 2))))


def test_integers_beyond_64_bits_are_rejected():
    body = b'{"instances": [[1, 1180591620717411303424]]}'
    assert "instances[0][1]: expected an integer" in error(body, sig(TensorSpec("x", I64, (-1, 2))))


def test_int64_parses_exactly():
    big = 2**62 + 1
    request, _ = decode({"instances": [[big, -big]]}, sig(TensorSpec("x", I64, (-1, 2))))
    assert request.inputs["x"].tolist() == [[big, -big]]


def test_float_overflow_becomes_infinity():
    request, _ = decode(b'{"instances": [[1e300, -1e300]]}', sig(TensorSpec("x", F32, (-1, 2))))
    assert request.inputs["x"].tolist() == [[np.inf, -np.inf]]


def test_nan_strings_only_where_the_spec_allows_them():
    allow = sig(TensorSpec("x", F32, (-1, 2), nan_strings=True))
    request, _ = decode({"instances": [[1, "NaN"]]}, allow)
    assert np.isnan(request.inputs["x"][0, 1])
    assert "got string" in error({"instances": [[1, "NaN"]]}, sig(TensorSpec("x", F32, (-1, 2))))
    assert "got string" in error({"instances": [[1, "nope"]]}, allow)


def test_b64_values_become_bytes():
    s = sig(TensorSpec("img_bytes", np.dtype(object), (-1,)))
    payload = bytes(range(200))
    request, _ = decode({"instances": [{"b64": base64.b64encode(payload).decode()}]}, s)
    assert request.inputs["img_bytes"][0] == payload
    assert "instances[0].b64: invalid base64" in error({"instances": [{"b64": "a"}]}, s)
    assert "got a {\"b64\"" in error({"instances": [[{"b64": "AAAA"}, 1]]}, sig(TensorSpec("x", F32, (-1, 2))))


def test_untyped_inputs_infer_like_numpy_and_pass_objects_through():
    s = sig(TensorSpec("instances"))
    request, _ = decode({"instances": [[1, 2], [3, 4]]}, s)
    assert request.inputs["instances"].dtype == np.int64
    request, _ = decode({"instances": [[1.5, 2], [3, 4]]}, s)
    assert request.inputs["instances"].dtype == np.float64
    request, _ = decode({"instances": [["a", "b"]]}, s)
    assert request.inputs["instances"].dtype.kind == "U"
    objects = [{"text": "hi", "n": 1}, {"text": "yo", "n": 2}]
    request, _ = decode({"instances": objects}, s)
    assert request.inputs["instances"] == objects
    ragged = [[1, 2], [3]]
    request, _ = decode({"instances": ragged}, s)
    assert request.inputs["instances"] == ragged


@pytest.mark.parametrize("body", [b"", b"{", b'{"instances": [1,', b"\xff\xfe", b"[" * 500_000,
                                  b'{"instances": ["\xff"]}', b'{"instances": [[1, 2]]}' + b"]" * 3,
                                  b'{"a": 1, "a": 2}', b'{"instances": [[]]}'])
def test_bad_bodies_are_invalid_input_never_a_crash(body):
    with pytest.raises(InvalidInput):
        decode(body, sig(TensorSpec("x", F32, (-1, 2))))


@pytest.mark.parametrize("body, key", [
    (b'{"instances": [[1, 2]], "instances": [[3, 4]]}', "instances"),
    (b'{"instances": [[1, 2]], "parameters": {"a": 1, "a": 2}}', "a"),
    (b'{"instances": [[1, 2]], "extra": 1, "extra": 2}', "extra"),
    (b'{"instances": [{"x": [1, 2], "x" : [1, 2]}]}', "x"),
    (b'{"instances": [[1, 2]], "p": [NaN], "p": 1}', "p"),
])
def test_duplicate_keys_are_refused_anywhere(body, key):
    assert error(body, sig(TensorSpec("x", F32, (-1, 2)))) == f"invalid JSON: duplicate key '{key}' in an object"


def test_a_key_token_inside_a_string_is_not_a_duplicate():
    request, _ = decode(rb'{"instances": [[1, 2]], "parameters": {"a": "\":", "b": "\": x"}}',
                        sig(TensorSpec("x", F32, (-1, 2))))
    assert request.parameters == {"a": '":', "b": '": x'}


@given(st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=3, max_size=3),
                min_size=1, max_size=20))
def test_float_rows_round_trip(rows):
    request, _ = decode({"instances": rows}, sig(TensorSpec("x", F32, (-1, 3))))
    np.testing.assert_array_equal(request.inputs["x"], np.asarray(rows, dtype=np.float32))


def test_response_one_output_is_a_list_several_are_per_instance_objects():
    one = InferResponse({"scores": np.array([[0.5, 0.5], [1.0, 0.0]], dtype=np.float32)})
    assert orjson.loads(vertex_json.encode_predict_response(one, 2)) == {"predictions": [[0.5, 0.5], [1.0, 0.0]]}
    two = InferResponse({"scores": np.array([[0.5], [1.0]]), "label": np.array(["a", "b"])})
    assert orjson.loads(vertex_json.encode_predict_response(two, 2, extra={"deployedModelId": "7"})) == {
        "predictions": [{"scores": [0.5], "label": "a"}, {"scores": [1.0], "label": "b"}], "deployedModelId": "7"}
    blob = InferResponse({"image_bytes": np.array([b"\x00\xff"], dtype=object)})
    assert orjson.loads(vertex_json.encode_predict_response(blob, 1)) == {"predictions": [{"b64": "AP8="}]}


_OUTPUT_ARRAYS = st.one_of(
    st.lists(st.integers(-2**62, 2**62), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.booleans(), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=bool)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=40).map(
        lambda v: np.array(v, dtype=np.float32)),
    st.lists(st.integers(0, 255), min_size=2, max_size=40).map(lambda v: np.array(v, dtype=np.uint8).reshape(-1, 1)),
    # labels at the ends of their dtypes' ranges, and a strided (not C-contiguous) view
    st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=np.uint64)),
    st.lists(st.integers(-128, 127), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=np.int8)),
    st.lists(st.integers(-2**31, 2**31 - 1), min_size=2, max_size=40).map(
        lambda v: np.asfortranarray(np.array(v[: len(v) // 2 * 2], dtype=np.int32).reshape(-1, 2))),
)


@given(_OUTPUT_ARRAYS, st.data(), st.sampled_from([vertex_json.ROW, vertex_json.COLUMNAR]),
       st.sampled_from([None, {"deployedModelId": "42"}]))
def test_a_batch_reply_encodes_each_request_as_if_alone(values, data, fmt, extra):
    """encode_predict_responses (one call for the batch) gives each request the exact bytes that
    encoding its own rows alone gives: cut at the right rows, whatever the dtype and format."""
    cuts = sorted(data.draw(st.sets(st.integers(1, len(values) - 1), max_size=6)) if len(values) > 1 else [])
    counts = [b - a for a, b in zip([0, *cuts], [*cuts, len(values)])]
    name = data.draw(st.sampled_from(["out", "classes"]))
    batch = vertex_json.encode_predict_responses(InferResponse({name: values}), counts, fmt, extra)
    starts = np.cumsum([0, *counts])
    alone = [vertex_json.encode_predict_response(InferResponse({name: values[a:b]}), b - a, fmt, extra)
             for a, b in zip(starts, starts[1:])]
    assert batch == alone


def test_a_batch_reply_with_several_outputs_is_split_by_request():
    response = InferResponse({"label": np.array([1, 2, 3]), "score": np.array([0.5, 0.25, 1.0])})
    bodies = vertex_json.encode_predict_responses(response, [2, 1])
    assert [orjson.loads(b) for b in bodies] == [
        {"predictions": [{"label": 1, "score": 0.5}, {"label": 2, "score": 0.25}]},
        {"predictions": [{"label": 3, "score": 1.0}]}]


# -- raw bodies --------------------------------------------------------------------------------

def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_npy_body_is_a_view_over_the_request_bytes():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    body = npy(x)
    request = raw.decode_raw_request(raw.NPY, body, sig(TensorSpec("x", F32, (-1, 4))))
    got = request.inputs["x"]
    np.testing.assert_array_equal(got, x)
    assert np.shares_memory(got, np.frombuffer(body, dtype=np.uint8))
    assert request.batch_size == 3


def test_octet_stream_body_is_a_view_shaped_by_the_signature():
    x = np.arange(8, dtype="<f4").reshape(2, 4)
    body = x.tobytes()
    request = raw.decode_raw_request(raw.OCTET_STREAM, body, sig(TensorSpec("x", F32, (-1, 4))))
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert np.shares_memory(request.inputs["x"], np.frombuffer(body, dtype=np.uint8))


def test_npy_errors_are_invalid_input():
    s = sig(TensorSpec("x", F32, (-1, 4)))
    for body in [b"not npy", npy(np.zeros((2, 4), np.float32))[:-3], npy(np.array([{"a": 1}], dtype=object))]:
        with pytest.raises(InvalidInput):
            raw.decode_raw_request(raw.NPY, body, s)
    with pytest.raises(InvalidInput, match="does not fit"):
        raw.decode_raw_request(raw.NPY, npy(np.zeros((2, 3), np.float32)), s)
    with pytest.raises(InvalidInput, match="cannot be cast"):
        raw.decode_raw_request(raw.NPY, npy(np.zeros((2, 4), np.complex64)), s)


def test_other_media_types_stay_bytes():
    request = raw.decode_raw_request("image/png", b"\x89PNG", sig(TensorSpec("x", F32, (-1, 4))))
    assert request.raw.content_type == "image/png" and bytes(request.raw.data) == b"\x89PNG"


def test_nonfinite_tokens_in_and_out():
    s = sig(TensorSpec("x", F32, (-1, 3)))
    request, _ = decode(b'{"instances": [[NaN, Infinity, -Infinity]]}', s)
    x = request.inputs["x"]
    assert np.isnan(x[0, 0]) and x[0, 1] == np.inf and x[0, 2] == -np.inf
    request, _ = decode(b'{"instances": [[1e999, -1e999, 1]]}', s)
    assert request.inputs["x"][0].tolist() == [np.inf, -np.inf, 1]
    assert "expected an integer" in error(b'{"instances": [[NaN, 1]]}', sig(TensorSpec("x", I64, (-1, 2))))
    assert "invalid JSON" in error(b'{"instances": [[nan, 1]]}', s)
    out = InferResponse({"y": np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)})
    assert vertex_json.encode_predict_response(out, 4) == b'{"predictions":[NaN,Infinity,-Infinity,1.5]}'
    assert vertex_json.encode_predict_response(out, 4, nonfinite="null") == b'{"predictions":[null,null,null,1.5]}'


def test_integers_beyond_the_double_range():
    """A float input takes them as ±inf (as TF Serving takes numbers too large for a double); an
    integer input refuses them with a 400 that names the value, shortened."""
    huge = "9" * 400
    floats, _ = decode(f'{{"instances": [[{huge}, -{huge}]]}}'.encode(), sig(TensorSpec("x", F32, (-1, 2))))
    assert floats.inputs["x"].tolist() == [[np.inf, -np.inf]]
    untyped, _ = decode(f'{{"instances": [[{huge}, 1]]}}'.encode(), sig(TensorSpec("x")))
    assert untyped.inputs["x"].tolist() == [[np.inf, 1.0]]
    message = error(f'{{"instances": [[{huge}, 1]]}}'.encode(), sig(TensorSpec("x", I64, (-1, 2))))
    assert message == "instances[0][0]: integer 99999999999999999999…99999999 (400 digits) is out of range"


@pytest.mark.parametrize("depth", [70, 990, 1020])
@pytest.mark.parametrize("key_token", [False, True], ids=["plain", "with-a-key-token-in-a-string"])
def test_deep_nesting_is_a_400_on_every_path(depth, key_token):
    """Nesting that parses but no tensor can hold (numpy has at most 64 dimensions), and nesting
    that sends the duplicate-key check to the stdlib parser (a '":' inside a string): 400s."""
    prefix = b'{"k": "\\":", ' if key_token else b"{"
    body = prefix + b'"instances": [' + b"[" * depth + b"1" + b"]" * depth + b"]}"
    message = error(body, sig(TensorSpec("x", F32)))
    assert "nested deeper than 64 levels" in message or "nested too deeply" in message \
        or "depth limit exceeded" in message, message


def test_the_duplicate_key_check_never_runs_the_stdlib_parser(monkeypatch):
    """A '":' inside a string makes the cheap token count disagree; the exact check is then one
    linear scan (native or its Python twin), not the recursive stdlib parser on the event loop."""
    import json as stdlib_json

    def refuse(*args, **kwargs):
        raise AssertionError("the stdlib parser ran")

    monkeypatch.setattr(stdlib_json, "loads", refuse)
    keys = ",".join(f'"k{i}": 1' for i in range(2000))
    body = f'{{"instances": [[1, 2]], "parameters": {{{keys}, "s": "\\":", "k7": 2}}}}'.encode()
    assert error(body, sig(TensorSpec("x", F32, (-1, 2)))) == "invalid JSON: duplicate key 'k7' in an object"
    request, _ = decode(body.replace(b'"k7": 2', b'"k7x": 2'), sig(TensorSpec("x", F32, (-1, 2))))
    assert request.parameters["s"] == '":'


def test_nan_tokens_with_deep_nesting_are_a_400_before_the_stdlib_parser():
    body = b'{"instances": [[NaN, 1]], "p": ' + b"[" * 600 + b"]" * 600 + b"}"
    assert error(body, sig(TensorSpec("x", F32, (-1, 2)))) == "invalid JSON: nested deeper than 512 levels"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4) | st.lists(
        st.tuples(st.sampled_from(["a", "b", "\\u0061", 'q"', "\\\\", "é"]), children), max_size=4),
    max_leaves=30)


def _json_text(value) -> str:
    """JSON text that may repeat keys (a list of pairs is an object)."""
    import json as stdlib_json

    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ",".join(f'"{k.replace(chr(34), chr(92) + chr(34))}": {_json_text(v)}' for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    return stdlib_json.dumps(value)


@pytest.mark.skipif(native is None, reason="needs the compiled extension (pip install -e .)")
@settings(max_examples=1500, deadline=None)
@given(_json_values)
def test_the_native_key_scan_agrees_with_its_python_twin(value):
    import json as stdlib_json

    from hyperserve.server.codecs.json_scan import scan_json_py

    body = _json_text(value).encode()
    assert native.scan_json(body) == scan_json_py(body)
    pairs_seen = []

    def pairs(items):
        keys = [k for k, _ in items]
        pairs_seen.append(len(keys) != len(set(keys)))
        return dict(items)

    stdlib_json.loads(body, object_pairs_hook=pairs)
    assert (native.scan_json(body)[0] is not None) == any(pairs_seen)


@pytest.mark.skipif(native is None, reason="needs the compiled extension (pip install -e .)")
@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_json_values.map(lambda v: _json_text(v).encode()),
                          st.binary(max_size=24), st.text(alphabet='[]{}",:\\ 1a', max_size=24).map(str.encode)),
                max_size=12))
def test_the_native_line_scan_agrees_with_its_python_twin(lines):
    """A batch job's lines: those that do not stand alone as JSON, found in one native call."""
    from hyperserve.server.codecs.json_scan import scan_json_py, unbalanced_lines_py

    assert native.unbalanced_lines(lines) == unbalanced_lines_py(lines)
    assert unbalanced_lines_py(lines) == [i for i, line in enumerate(lines) if scan_json_py(line) is None]


@given(st.binary(max_size=64), st.integers(0, 40_000), st.sampled_from([b"true", b"false"]), st.booleans())
def test_the_gil_free_token_scan_agrees_with_in(head, padding, token, plant):
    from hyperserve.server.codecs.vertex_json import holds

    raw = head + b"x" * padding + (token[:-1] + b"!" + token if plant else token[:-1])
    assert holds(raw, token) == (token in raw)
