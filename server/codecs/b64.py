"""Strict base64, the pure-Python twin of ``_native.b64decode`` (same results, same messages)."""

from __future__ import annotations

import binascii

from ..native import native

_BAD_CHAR = "invalid base64: character outside the base64 alphabet"


def _layout(data: bytes) -> tuple[int, str | None]:
    n = len(data)
    pad = 0
    while pad < 2 and n > pad and data[n - 1 - pad] == 0x3D:  # '='
        pad += 1
    body = n - pad
    rem = body % 4
    if rem == 1:
        return body, "invalid base64: length leaves a single dangling character"
    if pad and n % 4:
        return body, "invalid base64: padding does not complete a quantum"
    return body, None


def b64decode_py(data: bytes | bytearray | memoryview) -> bytes:
    data = bytes(data)
    body, error = _layout(data)
    if error:
        raise ValueError(error)
    chunk = data[:body]
    if b"=" in chunk:
        raise ValueError(_BAD_CHAR)
    try:
        return binascii.a2b_base64(chunk + b"=" * (-body % 4), strict_mode=True)
    except binascii.Error:
        raise ValueError(_BAD_CHAR) from None


def b64decode(data: bytes | bytearray | memoryview | str) -> bytes:
    """Decode with the native fast path when it is loaded."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(_BAD_CHAR) from None
    if native is not None:
        return native.b64decode(data)
    return b64decode_py(data)
