"""One linear pass over a JSON text: the first key repeated within one object, and the nesting
depth. Native when the extension is built; this Python twin gives the same answer, token by token,
with no recursion (a stack of the open containers)."""

from __future__ import annotations

import json
import re

from ..native import native

# A string (escapes kept), or one of the structural characters that matter here.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]')


def scan_json_py(body: bytes | memoryview) -> tuple[str | None, int] | None:
    """(the first repeated key or None, depth), or None when the text is not well-formed."""
    stack: list[set | None] = []  # per open container: its keys so far (None: an array)
    expect_key = False
    depth = 0
    for match in _TOKEN.finditer(bytes(body)):
        token = match.group()
        first = token[:1]
        if first == b'"':
            if expect_key:
                expect_key = False
                try:
                    key = json.loads(token) if b"\\" in token else token[1:-1].decode("utf-8", "surrogatepass")
                except ValueError:
                    return None
                keys = stack[-1]
                if key in keys:
                    return key, depth
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
