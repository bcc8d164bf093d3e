"""The native instances decoder and the pure-Python path agree on every body: same arrays
(dtype, shape, bits), same parameters, or the same 400 message."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperserve.server.codecs import vertex_json
from hyperserve.server.errors import InvalidInput
from hyperserve.server.native import native
from hyperserve.server.types import Signature, TensorSpec

pytestmark = pytest.mark.skipif(native is None, reason="needs the compiled hyperserve._native extension "
                                                       "(built by pip install; HYPERSERVE_NO_NATIVE=1 disables it)")

DTYPES = [None, np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32)]

numbers = st.one_of(
    st.integers(-(2**31), 2**31),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e6, 1e6).map(lambda f: round(f, 4)),
    st.sampled_from([math.nan, math.inf, -math.inf]),  # TF Serving's bare tokens NaN, Infinity, -Infinity
)
leaves = st.one_of(numbers, numbers, numbers, st.booleans(), st.none(), st.text(max_size=3),
                   st.just({"b64": "AAAA"}))


@st.composite
def instances(draw):
    depth = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 4)) for _ in range(depth)]

    def build(level):
        if level == depth:
            return draw(leaves) if draw(st.integers(0, 20)) == 0 else draw(numbers)
        n = shape[level] if draw(st.integers(0, 15)) else draw(st.integers(0, 5))  # sometimes ragged
        return [build(level + 1) for _ in range(n)]

    return [build(1) for _ in range(shape[0])]


@st.composite
def bodies(draw):
    doc = {}
    keys = draw(st.permutations(["instances", "parameters", "signature_name", "extra", "inputs"]))
    for key in keys:
        include = draw(st.integers(0, 3))
        if key == "instances" and include:
            doc[key] = draw(instances())
        elif key == "parameters" and include == 1:
            doc[key] = draw(st.one_of(st.dictionaries(st.text(max_size=3), numbers, max_size=2), numbers))
        elif key == "signature_name" and include == 1:
            doc[key] = draw(st.one_of(st.text(max_size=4), numbers))
        elif key == "extra" and include == 1:
            doc[key] = draw(st.one_of(st.lists(numbers, max_size=3), st.text(max_size=4)))
        elif key == "inputs" and include == 1 and draw(st.booleans()):
            doc[key] = [[1, 2]]
    text = json.dumps(doc, separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")])))
    mutation = draw(st.integers(0, 12))
    if mutation == 0 and text:
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.sampled_from(["", "]", "[", ",", "x", "\u00e9", "1e999", '"'])) + text[i + 1:]
    elif mutation == 1:
        text = text.replace('"instances"', '"instances": [[1]], "instances"', 1)  # a duplicate key
    elif mutation == 2:
        text = text.replace('"parameters"', '"parameters": {}, "parameters"', 1)
    return text.encode()


@st.composite
def signatures(draw):
    dtype = draw(st.sampled_from(DTYPES))
    inner = draw(st.one_of(st.none(), st.lists(st.sampled_from([-1, 1, 2, 3, 4]), max_size=2)))
    shape = None if inner is None else (-1, *inner)
    return Signature((TensorSpec("x", dtype, shape),), (TensorSpec("y"),))


def outcome(fn, body, signature):
    try:
        request, fmt = fn(body, signature)
    except InvalidInput as err:
        return ("error", err.message)
    value = request.inputs["x"]
    if isinstance(value, np.ndarray):
        value = (str(value.dtype), value.shape, value.tobytes() if value.dtype != object else value.tolist())
    return ("ok", fmt, request.batch_size, json.dumps(request.parameters, sort_keys=True, default=str), value)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(bodies(), signatures())
def test_native_and_python_paths_agree(body, signature):
    assert outcome(vertex_json.decode_predict_request, body, signature) == outcome(
        vertex_json.decode_predict_request_py, body, signature)


def test_the_fast_path_takes_the_common_bodies():
    body = b'{"instances": [[5.1, 3.5, 1.4, 0.2], [1, 2, 3, 4]], "parameters": {"k": [1, true]}}'
    array, spans = native.decode_instances(body, 1, [4])
    assert array.dtype == np.float32 and array.tolist() == np.float32([[5.1, 3.5, 1.4, 0.2], [1, 2, 3, 4]]).tolist()
    assert json.loads(body[slice(*spans["parameters"])]) == {"k": [1, True]}
    big = json.dumps({"instances": np.random.default_rng(0).random((64, 784)).round(6).tolist()}).encode()
    array, _ = native.decode_instances(big, 1, [784])
    assert array.shape == (64, 784)
    for declined in [b'{"instances": [[1, true]]}', b'{"instances": [[1], [2, 3]]}', b'{"instances": []}',
                     b'{"instances": [["a"]]}',
                     b'{"instances": [[9007199254740993]]}', b'{"instances": [[1]], "instances": [[2]]}',
                     b'{"instances": [[-NaN]]}', b'[1]', b'{"instances": [[1]]} x']:
        assert native.decode_instances(declined, 1, None) is None, declined
    assert native.decode_instances(b'{"instances": [[1.5]]}', 3, None) is None  # a float for an int input
    assert native.decode_instances(b'{"instances": [[NaN]]}', 3, None) is None


def test_tf_servings_bare_tokens_take_the_fast_path_with_the_python_paths_bits():
    body = b'{"instances": [[NaN, Infinity], [-Infinity, 1]]}'
    for target, dtype in [(1, np.float32), (2, np.float64), (0, None)]:
        array, _ = native.decode_instances(body, target, [2])
        sig = Signature((TensorSpec("x", None if dtype is None else np.dtype(dtype), (-1, 2)),), (TensorSpec("y"),))
        slow = vertex_json.decode_predict_request_py(body, sig)[0].inputs["x"]
        assert array.dtype == slow.dtype and array.tobytes() == slow.tobytes()


def test_exactness_of_floats_and_ints():
    values = [0.1, 1e-45, 3.4028235e38, 1e308, -0.0, 123456789.123456789, 2**53, -(2**53), 16777217]
    body = json.dumps({"instances": [[v] for v in values]}).encode()
    for target, dtype in [(1, np.float32), (2, np.float64), (0, None)]:
        sig = Signature((TensorSpec("x", None if dtype is None else np.dtype(dtype), (-1, 1)),), (TensorSpec("y"),))
        fast = vertex_json.decode_predict_request(body, sig)[0].inputs["x"]
        slow = vertex_json.decode_predict_request_py(body, sig)[0].inputs["x"]
        assert fast.dtype == slow.dtype and fast.tobytes() == slow.tobytes()
    assert math.copysign(1, vertex_json.decode_predict_request(body, sig)[0].inputs["x"][4, 0]) == -1


@pytest.mark.parametrize("int_digits", [1, 7, 8, 9, 16, 17, 19, 20])
def test_digit_runs_of_every_length_round_correctly(int_digits):
    # The native parser reads digits eight at a time: runs shorter than, equal to and longer than
    # eight, ending right at the body's end or not, must all give Python's correctly rounded double.
    rng = np.random.default_rng(int_digits)
    texts = []
    for frac_digits in range(0, 22):
        whole = str(int(rng.integers(1, 10))) + "".join(str(d) for d in rng.integers(0, 10, int_digits - 1))
        frac = "".join(str(d) for d in rng.integers(0, 10, frac_digits))
        texts.append(whole + ("." + frac if frac else ""))
        texts.append("0." + "0" * (frac_digits % 5) + (frac or "1"))
    for tail in ("]]}", "]]}   \n"):
        body = ('{"instances": [[' + ", ".join(texts) + tail).encode()
        sig = Signature((TensorSpec("x", np.dtype(np.float64), (-1, len(texts))),), (TensorSpec("y"),))
        if int_digits <= 9:  # short enough that the native path must take the whole body
            assert native.decode_instances(body, 2, None) is not None
        fast = vertex_json.decode_predict_request(body, sig)[0].inputs["x"][0]
        assert fast.tolist() == [float(t) for t in texts]


b64_values = st.one_of(
    st.binary(max_size=40).map(lambda b: __import__("base64").b64encode(b).decode()),
    st.binary(min_size=1, max_size=40).map(lambda b: __import__("base64").b64encode(b).decode().rstrip("=")),
    st.text(alphabet="ABCDabcd0123+/=-_ \\\"é", max_size=12),
)
b64_instances = st.lists(st.one_of(
    st.builds(lambda v: {"b64": v}, b64_values),
    st.builds(lambda v: {"b64": v}, b64_values),
    st.builds(lambda v: {"b64": v, "x": 1}, b64_values),
    st.just("plain string"), st.just(3), st.builds(lambda v: {"b64": len(v)}, b64_values),
), min_size=0, max_size=4)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(b64_instances, st.one_of(st.none(), st.dictionaries(st.text(max_size=3), numbers, max_size=2)))
def test_b64_instances_agree_between_paths(instances, parameters):
    doc = {"instances": instances}
    if parameters is not None:
        doc["parameters"] = parameters
    body = json.dumps(doc).encode()
    signature = Signature((TensorSpec("x", np.dtype(object), (-1,)),), (TensorSpec("y"),))
    assert outcome(vertex_json.decode_predict_request, body, signature) == outcome(
        vertex_json.decode_predict_request_py, body, signature)


def test_signature_name_picks_the_signature_on_both_paths():
    floats = Signature((TensorSpec("x", np.dtype(np.float32), (-1, 2)),), (TensorSpec("y"),))
    ints = Signature((TensorSpec("x", np.dtype(np.int64), (-1, 2)),), (TensorSpec("y"),))

    def by_name(name):
        if name not in ("default", "ints"):
            raise InvalidInput(f"no signature {name!r}")
        return ints if name == "ints" else floats

    body = b'{"signature_name": "ints", "instances": [[1, 2]]}'
    assert native.decode_instances(body, 1, [2]) is not None  # the fast path takes it as floats first
    for decode in (vertex_json.decode_predict_request, vertex_json.decode_predict_request_py):
        request, _ = decode(body, floats, by_name)
        assert request.inputs["x"].dtype == np.int64 and request.signature_name == "ints"
        assert decode(body.replace(b"ints", b"default"), floats, by_name)[0].inputs["x"].dtype == np.float32
        with pytest.raises(InvalidInput, match="no signature 'nope'"):
            decode(body.replace(b"ints", b"nope"), floats, by_name)


def test_an_error_in_another_key_is_named_where_it_is_in_the_whole_body():
    """The fast path parses the other top-level keys one by one; their errors must still point
    into the body, as the Python path's do (found by the property test above)."""
    body = b'{"instances":[0],"extra":"\\0007"}'
    signature = Signature((TensorSpec("x"),), (TensorSpec("y"),))
    assert outcome(vertex_json.decode_predict_request, body, signature) == outcome(
        vertex_json.decode_predict_request_py, body, signature)
    assert "char 26" in outcome(vertex_json.decode_predict_request, body, signature)[1]


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_arrays_keep_the_parsers_buffer_and_agree(dtype):
    """Past 64K numbers the array adopts the parser's buffer (converted in place for 32-bit
    targets) instead of a copy; the values are the Python path's, bit for bit."""
    rng = np.random.default_rng(1)
    values = rng.integers(-1000, 1000, (20_000, 4)) if dtype is None or dtype.kind == "i" \
        else rng.random((20_000, 4)).round(5)
    body = json.dumps({"instances": values.tolist()}).encode()
    signature = Signature((TensorSpec("x", dtype, (-1, 4)),), (TensorSpec("y"),))
    assert outcome(vertex_json.decode_predict_request, body, signature) == outcome(
        vertex_json.decode_predict_request_py, body, signature)
    fast = vertex_json.decode_predict_request(body, signature)[0].inputs["x"]
    assert fast.flags.c_contiguous and fast.flags.writeable


def test_numbers_in_the_wrong_shape_are_refused_without_the_python_path(monkeypatch):
    """A regular array of numbers that the signature's shape does not take gets the Python path's
    400, built from the native parser's shape: a 50 MB body never becomes Python floats."""
    body = json.dumps({"instances": [1.5] * 100_000, "parameters": {"a": 1}}).encode()
    signature = Signature((TensorSpec("x", np.dtype(np.float32), (-1, 4)),), (TensorSpec("y"),))
    expected = outcome(vertex_json.decode_predict_request_py, body, signature)
    assert expected == ("error", "instances: input 'x' expects each instance to have shape [4], got []")
    monkeypatch.setattr(vertex_json, "decode_predict_request_py", lambda *a: pytest.fail("the Python path ran"))
    assert outcome(vertex_json.decode_predict_request, body, signature) == expected
