"""TorchServe's rows: request bytes → the list of dicts a TorchServe handler's ``handle()`` takes,
and its outputs → bytes. Rules: ../shared/CONTRACTS.md §3.

Two ways in:
- the Vertex JSON envelope: ``{"instances": [...]}``, one row per instance; an instance equal to
  ``{"b64": s}`` becomes bytes, and so does each top-level field of an instance equal to one
  (``{"data": {"b64": s}}`` → ``{"data": b"..."}``); plain strings stay strings;
- TorchServe's own ``/predictions`` route: the raw body is one row ``{"body": value}``, a
  multipart/form-data body one row with a key per field. ``application/json`` values are parsed,
  ``text/*`` decoded as UTF-8, anything else stays bytes.
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import Any

from ..errors import InvalidInput
from .tensors import decode_b64_value, is_b64
from .vertex_json import dumps, parse_json, parse_predict_body


def instance_rows(body: bytes | memoryview) -> tuple[list, dict[str, Any]]:
    """The Vertex envelope → (one row per instance, the request's parameters)."""
    parsed = parse_predict_body(body)
    if parsed.format != "row":
        raise InvalidInput("this model takes the row format: send {\"instances\": [...]}, not \"inputs\"")
    return [_row(instance, i) for i, instance in enumerate(parsed.data)], parsed.parameters


def _row(instance: Any, i: int) -> Any:
    if type(instance) is not dict:
        return instance
    if is_b64(instance):
        return decode_b64_value(instance, f"instances[{i}]")
    row = dict(instance)
    for key, value in instance.items():
        if is_b64(value):
            row[key] = decode_b64_value(value, lambda key=key: f"instances[{i}].{key}")
    return row


def body_rows(body: bytes | memoryview, content_type: str) -> list[dict[str, Any]]:
    """A /predictions body → its one row (TorchServe gives each request one row)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return [_form_fields(content_type, bytes(body))]
    return [{"body": _typed_value(media_type, body, "body")}]


def _typed_value(media_type: str, data: bytes | memoryview, name: str) -> Any:
    if media_type == "application/json":
        try:
            return parse_json(data)
        except InvalidInput as err:
            raise InvalidInput(f"{name}: {err.message}") from None
    if media_type.startswith("text/"):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInput(f"{name}: a {media_type} value is not valid UTF-8 ({err.reason} at byte {err.start})") \
                from None
    return bytes(data)


def _form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    # The stdlib's MIME parser: a well-kept multipart reader that needs no extra dependency.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise InvalidInput("body: malformed multipart/form-data (check the boundary in Content-Type)")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise InvalidInput("body: a multipart/form-data part has no name in its Content-Disposition")
        payload = part.get_payload(decode=True) or b""
        fields[name] = _typed_value(part.get_content_type() if part.get("content-type") else "", payload, name)
    if not fields:
        raise InvalidInput("body: multipart/form-data with no fields")
    return fields


def encode_item(value: Any, content_type: str | None = None) -> tuple[bytes, str]:
    """One handler output as TorchServe sends it: bytes raw, str as UTF-8, anything else JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), content_type or "application/octet-stream"
    if isinstance(value, str):
        return value.encode("utf-8"), content_type or "text/plain; charset=utf-8"
    try:
        return dumps(value), content_type or "application/json"
    except TypeError as err:
        raise TypeError(f"the handler returned a {type(value).__name__}, which cannot be sent as JSON: {err}") \
            from None


def predictions_body(values: list, extra: dict[str, Any] | None = None) -> bytes:
    """Outputs for the Vertex route: ``{"predictions": [...]}``, one per instance."""
    doc: dict[str, Any] = {"predictions": values}
    if extra:
        doc.update(extra)
    return dumps(doc)
