"""Access control off the platforms' gateways: --auth-tokens-file names a file of tokens, one per
line, and every covered route (and gRPC call) needs one of them as ``Authorization: Bearer <t>`` or
``x-api-key: <t>`` (Azure's key auth). The file is re-read when it changes, so tokens rotate
without a restart. Tokens are compared as SHA-256 digests with hmac.compare_digest, against every
token, so the time taken says nothing of how much of a guess was right; they are never logged."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from typing import Callable

from .errors import ServingError
from .router import API, HEALTH, METRICS

log = logging.getLogger("hyperserve.access")

RELOAD_CHECK_S = 1.0  # how often a request may stat the file (a rotation shows within this)
CHALLENGE = 'Bearer realm="hyperserve"'


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_tokens(path: str) -> list[bytes]:
    """The digests of the file's tokens: one a line; blank lines and lines from '#' are skipped."""
    with open(path, encoding="utf-8") as source:
        tokens = [line.strip() for line in source]
    return [_digest(t) for t in tokens if t and not t.startswith("#")]


def presented(headers: dict[str, str]) -> str | None:
    """The token a request carries, or None."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class AccessTokens:
    def __init__(self, path: str):
        self.path = path
        self._stamp = self._stat()
        if self._stamp is None:
            raise ServingError(f"--auth-tokens-file {path}: no such file")
        try:
            self._digests = read_tokens(path)
        except (OSError, UnicodeDecodeError) as err:
            raise ServingError(f"--auth-tokens-file {path}: cannot read it: {err}") from None
        if not self._digests:
            raise ServingError(f"--auth-tokens-file {path}: it holds no token")
        self._checked = time.monotonic()

    def _stat(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._digests = read_tokens(self.path) if stamp is not None else []
        except (OSError, UnicodeDecodeError) as err:
            self._digests = []  # fail closed: a token file we cannot read admits no one
            log.error("cannot read the tokens file %s: %s; refusing every request until it is fixed", self.path, err)
            return
        if not self._digests:
            log.error("the tokens file %s is gone or empty; refusing every request until it holds a token", self.path)
        else:
            log.info("reloaded %d access tokens from %s", len(self._digests), self.path)

    def allows(self, token: str | None) -> bool:
        self._reload_if_changed()
        if token is None:
            return False
        given = _digest(token)
        allowed = False
        for digest in self._digests:  # every one, whatever matched
            allowed |= hmac.compare_digest(given, digest)
        return allowed


class Guard:
    """The router's guard: which route kinds need a token, and the wrapper that asks for it."""

    def __init__(self, tokens: AccessTokens, *, health: bool = False, metrics: bool = False):
        self.tokens = tokens
        self.kinds = {API} | ({HEALTH} if health else set()) | ({METRICS} if metrics else set())

    def covers(self, kind: str) -> bool:
        return kind in self.kinds

    def refusal(self, headers: dict[str, str]) -> tuple[str, dict[str, str]] | None:
        """None when the request may pass; else the 401's message and headers."""
        token = presented(headers)
        if self.tokens.allows(token):
            return None
        if token is None:
            return ("this route needs a token: send 'Authorization: Bearer <token>' or 'x-api-key: <token>'",
                    {"www-authenticate": CHALLENGE})
        return "the token is not valid", {"www-authenticate": f'{CHALLENGE}, error="invalid_token"'}

    def protect(self, endpoint: Callable, error: Callable) -> Callable:
        refusal = self.refusal

        def guarded(request, params):
            refused = refusal(request.headers)
            if refused is not None:
                return error(401, *refused)
            return endpoint(request, params)

        return guarded
