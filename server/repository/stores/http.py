"""Plain http(s):// files (a model file or an archive) with urllib: no listing, no upload. The
version is the server's ETag, else its Last-Modified, else the size."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from typing import BinaryIO

from ...errors import ServingError
from . import FORBIDDEN, NOT_FOUND, StorageError, StoredObject

CHUNK_BYTES = 1024 * 1024
TIMEOUT_S = 60.0


class HttpStore:
    scheme = "https"

    def __init__(self, origin: str):
        self.origin = origin

    def uri(self, key: str) -> str:
        return f"{self.origin}/{key}"

    def _failed(self, key: str, err: Exception) -> StorageError:
        if isinstance(err, urllib.error.HTTPError):
            if err.code == 404:
                return StorageError(self.uri(key), NOT_FOUND, f"HTTP {err.code}")
            if err.code in (401, 403):
                return StorageError(self.uri(key), FORBIDDEN, f"HTTP {err.code}")
            return StorageError(self.uri(key), "failed", f"HTTP {err.code}", transient=err.code >= 500)
        return StorageError(self.uri(key), "failed", f"{type(err).__name__}: {err}", transient=True)

    def list(self, prefix: str) -> list[StoredObject]:
        found = self.get(prefix)
        return [found] if found is not None else []

    def get(self, key: str) -> StoredObject | None:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.uri(key), method="HEAD"), timeout=TIMEOUT_S) as r:
                headers = r.headers
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            if err.code in (403, 405, 501):  # no HEAD (a pre-signed GET URL refuses it): the GET tells
                return StoredObject(key, None, None, "", self.uri(key))
            raise self._failed(key, err) from None
        except (OSError, ValueError) as err:
            raise self._failed(key, err) from None
        length = headers.get("content-length")
        version = headers.get("etag") or headers.get("last-modified") or (length or "")
        return StoredObject(key, int(length) if length and length.isdigit() else None, None, version, self.uri(key))

    def read_into(self, obj: StoredObject, out: BinaryIO) -> None:
        try:
            with urllib.request.urlopen(obj.handle, timeout=TIMEOUT_S) as response:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise self._failed(obj.key, err) from None

    def upload(self, path: str, key: str, content_type: str = "", once: bool = False) -> bool:
        raise ServingError(f"cannot write to {self.uri(key)}: http(s):// is read-only; write to a local path, gs://, "
                           "s3:// or az://")
