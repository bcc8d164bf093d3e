"""Resolve a model URI to a local path: a directory, a single file, file:// or gs://."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..errors import ServingError

log = logging.getLogger("hyperserve.repository")


def fetch(uri: str, cache_dir: Path) -> Path:
    """Return a local directory or file holding the artifacts ``uri`` names."""
    if not uri:
        raise ServingError("no model given: pass MODEL_URI or set AIP_STORAGE_URI")
    if uri.startswith("gs://"):
        from .gcs import download_prefix

        target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        return download_prefix(uri, target)
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ServingError(f"unsupported storage scheme '{scheme}://' in {uri}; use a local path or gs://")
    path = Path(uri).expanduser()
    if not path.exists():
        raise ServingError(f"model path {path} does not exist")
    return path.resolve()
