"""Azure ML scoring scripts' input and output codecs: pure functions, with Azure's messages."""

from __future__ import annotations

import inspect
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperserve.server.codecs import azureml as codec
from hyperserve.server.errors import InvalidInput, UnsupportedMediaType


def params(*names, **defaults):
    out = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    return out + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v) for n, v in defaults.items()]


def test_query_values_are_json_when_they_are_json_and_repeated_keys_are_lists():
    assert codec.query_parameters("a=1&b=[1,2]&c=a&d=null&e=&c=b%20c") == \
        {"a": 1, "b": [1, 2], "c": ["a", "b c"], "d": None, "e": ""}


def test_an_undecorated_run_gets_text():
    assert codec.text_input("POST", "", "application/json", b'{"x": 1}') == '{"x": 1}'
    assert codec.text_input("GET", "x=1", "", b"") == '{"x": 1}'
    assert codec.text_input("POST", "", "application/x-www-form-urlencoded; charset=utf-8", b"a=1") == ""
    with pytest.raises(InvalidInput, match="Input cannot be decoded as UTF-8: 'utf-8' codec can't decode"):
        codec.text_input("POST", "", "text/plain", b"\xff")


def test_a_schema_run_gets_keyword_arguments_with_azures_errors():
    assert codec.object_input("POST", "", "application/json", b'{"a": 1, "z": 0}', params("a", b=2)) == {"a": 1, "b": 2}
    assert codec.object_input("GET", "a=[1]", "", b"", params("a")) == {"a": [1]}
    assert codec.object_input("POST", "", "application/problem+json", b'{"a": 1}', params("a")) == {"a": 1}
    for content_type, body, error, message in [
        ("text/plain", b"{}", UnsupportedMediaType, "Expects Content-Type to be application/json"),
        ("application/json", b"", InvalidInput, "POST body is empty. Expecting a JSON dictionary."),
        ("application/json", b"{x", InvalidInput, "POST body could not be decoded as JSON: Expecting property name"),
        ("application/json", b"[1]", InvalidInput, "POST body should be a JSON dictionary."),
        ("application/json", b"{}", InvalidInput, "A value is not provided for the 'a' parameter."),
    ]:
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            codec.object_input("POST", "", content_type, body, params("a"))


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_outputs_are_pythons_json_dumps(value):
    body = codec.json_output(value)
    assert body == (b"{}" if value is None else json.dumps(value).encode())
