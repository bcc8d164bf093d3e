"""Azure ML scoring scripts' inputs and outputs, as Microsoft's inference server reads and writes
them (../shared/CONTRACTS.md §7): pure functions over bytes and query strings.

- ``query_parameters``: a GET's query, each value read as JSON when it is JSON (a repeated key → a list);
- ``text_input``: an undecorated ``run``'s body, the whole body as ``str``;
- ``object_input``: an ``@input_schema`` ``run``'s keyword arguments, from a JSON object body;
- ``json_output``: what ``run`` returned, as Python's ``json.dumps`` writes it (``str`` double-encoded).
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Iterable
from urllib.parse import parse_qsl

from ..errors import InvalidInput, UnsupportedMediaType


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def query_pairs(query: str) -> list[tuple[str, str]]:
    """The query's key/value pairs in order, percent-decoded (blank values kept, as werkzeug does)."""
    return parse_qsl(query, keep_blank_values=True)


def query_parameters(query: str) -> dict[str, Any]:
    """``a=1&b=[1,2]&c=x&c=y`` → ``{"a": 1, "b": [1, 2], "c": ["x", "y"]}``."""
    grouped: dict[str, list[str]] = {}
    for key, value in query_pairs(query):
        grouped.setdefault(key, []).append(value)
    return {key: _json_or_text(values[0]) if len(values) == 1 else [_json_or_text(v) for v in values]
            for key, values in grouped.items()}


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def text_input(method: str, query: str, content_type: str, body: bytes | memoryview) -> str:
    """An undecorated ``run``'s input: a POST's body as text (any Content-Type), a GET's query as
    a JSON document. A form body (what ``curl -d`` sends) is "": Flask's ``request.data``, which
    Azure's server passes, is empty for the media types it parses as forms."""
    if method == "GET":
        return json.dumps(query_parameters(query))
    if media_type(content_type) in FORM_TYPES:
        return ""
    try:
        return str(body, "utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"Input cannot be decoded as UTF-8: {err}") from None


def is_json(content_type: str) -> bool:
    """Flask's ``request.is_json``: application/json or application/*+json (parameters ignored)."""
    mimetype = media_type(content_type)
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def object_input(method: str, query: str, content_type: str, body: bytes | memoryview,
                 parameters: Iterable[inspect.Parameter]) -> dict[str, Any]:
    """An ``@input_schema`` ``run``'s keyword arguments: each parameter's value from the body's
    JSON object (a GET's query), else its default; one with neither is a 400."""
    if method == "GET":
        document = query_parameters(query)
    else:
        if not is_json(content_type):
            raise UnsupportedMediaType("Expects Content-Type to be application/json")
        data = bytes(body)
        try:
            document = json.loads(data)
        except ValueError as err:  # json.JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8/16/32
            if data:
                raise InvalidInput(f"POST body could not be decoded as JSON: {err}") from None
            raise InvalidInput("POST body is empty. Expecting a JSON dictionary.") from None
        if not isinstance(document, dict):
            raise InvalidInput("POST body should be a JSON dictionary.")
    values: dict[str, Any] = {}
    for parameter in parameters:
        value = document.get(parameter.name, parameter.default)
        if value is inspect.Parameter.empty:
            raise InvalidInput(f"A value is not provided for the {parameter.name!r} parameter.")
        values[parameter.name] = value
    return values


def json_output(result: Any) -> bytes:
    """``json.dumps(result)``, Python's own encoder, as Azure's server replies: NaN stays ``NaN``,
    a ``str`` is encoded again, ``None`` is ``{}``. TypeError for what it cannot encode."""
    return b"{}" if result is None else json.dumps(result).encode()
