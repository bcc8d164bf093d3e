"""The native base64 decoder and its pure-Python twin agree on every input, valid or not."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperserve.server.codecs.b64 import b64decode, b64decode_py
from hyperserve.server.native import native

needs_native = pytest.mark.skipif(native is None, reason="needs the compiled hyperserve._native extension "
                                                         "(built by pip install; HYPERSERVE_NO_NATIVE=1 disables it)")


def outcome(fn, data):
    try:
        return ("ok", fn(data))
    except ValueError as err:
        return ("error", str(err))


@given(st.binary(max_size=300))
def test_round_trip(raw):
    encoded = base64.b64encode(raw)
    assert b64decode(encoded) == raw
    assert b64decode(encoded.rstrip(b"=")) == raw  # padding is optional


ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@needs_native
@settings(max_examples=500)
@given(st.one_of(
    st.binary(max_size=64),
    st.lists(st.sampled_from(list(ALPHABET) + [ord(" "), ord("\n"), ord("-"), 0xFF]), max_size=64).map(bytes),
    st.binary(max_size=200).map(base64.b64encode),
))
def test_native_and_python_agree(data):
    assert outcome(native.b64decode, data) == outcome(b64decode_py, data)


@needs_native
def test_native_decodes_into_a_buffer_and_from_a_memoryview():
    raw = bytes(range(256)) * 1000
    body = b'{"b64": "' + base64.b64encode(raw) + b'"}'
    span = memoryview(body)[9:-2]
    out = np.empty(native.b64decoded_length(span), dtype=np.uint8)
    assert native.b64decode_into(span, out) == len(raw)
    assert out.tobytes() == raw
    with pytest.raises(ValueError, match="too small"):
        native.b64decode_into(span, np.empty(10, dtype=np.uint8))


@pytest.mark.parametrize("bad, message", [
    (b"abcde", "single dangling character"),
    (b"ab=", "padding does not complete"),
    (b"a===", "outside the base64 alphabet"),
    (b"ab!d", "outside the base64 alphabet"),
    (b"ab=d", "outside the base64 alphabet"),
    (b"YW J", "outside the base64 alphabet"),
])
def test_invalid_inputs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        b64decode(bad)
    with pytest.raises(ValueError, match=message):
        b64decode_py(bad)
