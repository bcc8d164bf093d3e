"""One linear pass over a JSON text: the first key repeated within one object, and the nesting
depth. Native when the extension is built; this Python twin gives the same answer, token by token,
with no recursion (a stack of the open containers)."""

from __future__ import annotations

import re

from ..native import native

# A string (escapes kept), an unterminated string, or one of the structural characters that matter here.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|"|[{}\[\],]', re.DOTALL)
_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
            ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}
_HEX = re.compile(rb"[0-9a-fA-F]{4}")


def _unescape(text: bytes) -> bytes | None:
    """A string's bytes between its quotes with escapes resolved, as UTF-8 (a lone surrogate as
    its three bytes, like the native scan); None when an escape is malformed."""
    out, i, n = bytearray(), 0, len(text)
    while i < n:
        j = text.find(b"\\", i)
        if j < 0:
            out += text[i:]
            break
        out += text[i:j]
        if j + 1 >= n:
            return None
        c = text[j + 1]
        i = j + 2
        if c != ord("u"):
            if c not in _ESCAPES:
                return None
            out += _ESCAPES[c]
            continue
        if not _HEX.fullmatch(text, i, i + 4):
            return None
        cp = int(text[i:i + 4], 16)
        i += 4
        if 0xD800 <= cp < 0xDC00 and text[i:i + 2] == b"\\u" and _HEX.fullmatch(text, i + 2, i + 6):
            low = int(text[i + 2:i + 6], 16)
            if 0xDC00 <= low < 0xE000:
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                i += 6
        out += chr(cp).encode("utf-8", "surrogatepass")
    return bytes(out)


def scan_json_py(body: bytes | memoryview) -> tuple[str | None, int] | None:
    """(the first repeated key or None, depth), or None when the text is not well-formed."""
    stack: list[set | None] = []  # per open container: its keys so far, as bytes (None: an array)
    expect_key = False
    depth = 0
    for match in _TOKEN.finditer(bytes(body)):
        token = match.group()
        first = token[:1]
        if first == b'"':
            if len(token) == 1:  # a quote that never closes
                return None
            if expect_key:
                expect_key = False
                key = _unescape(token[1:-1]) if b"\\" in token else token[1:-1]
                if key is None:
                    return None
                keys = stack[-1]
                if key in keys:
                    return key.decode("utf-8", "surrogatepass"), depth
                keys.add(key)
        elif first == b"{" or first == b"[":
            stack.append(set() if first == b"{" else None)
            expect_key = first == b"{"
            depth = max(depth, len(stack))
        elif first == b",":
            expect_key = bool(stack) and stack[-1] is not None
        else:
            if not stack or (stack.pop() is None) != (first == b"]"):
                return None
            expect_key = False
    return (None, depth) if not stack else None


def scan_json(body: bytes | memoryview) -> tuple[str | None, int] | None:
    if native is not None:
        return native.scan_json(body)
    return scan_json_py(body)


def unbalanced_lines_py(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if scan_json_py(line) is None]


def unbalanced_lines(lines: list[bytes]) -> list[int]:
    """The positions of the lines that are not each well-formed JSON as ``scan_json`` judges it."""
    if native is not None:
        return native.unbalanced_lines(lines)
    return unbalanced_lines_py(lines)
