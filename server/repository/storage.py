"""Resolve a model URI to a local path: a directory, a single file, file://, or a remote store
(gs://, s3://, az://, Azure Blob and other http(s):// URLs, through ``download``)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..errors import ServingError
from .stores import is_remote

log = logging.getLogger("hyperserve.repository")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


def fetch(uri: str, cache_dir: Path, *, max_cache_bytes: int = 0, max_archive_bytes: int = 0) -> Path:
    """Return a local directory or file holding the artifacts ``uri`` names. An archive fetched
    from an http(s) URL (.tar.gz, .tgz, .zip) is unpacked beside it, with the same safety checks
    as TorchServe archives (no entry escapes, no decompression bomb)."""
    if not uri:
        raise ServingError("no model given: pass MODEL_URI or set AIP_STORAGE_URI")
    if is_remote(uri):
        from .download import mirror

        path = mirror(uri, cache_dir, max_cache_bytes=max_cache_bytes)
        if uri.startswith(("http://", "https://")) and path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
            return _unpacked(path, max_archive_bytes)
        return path
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ServingError(f"unsupported storage scheme '{scheme}://' in {uri}; use a local path, gs://, s3://, "
                           "az:// or http(s)://")
    path = Path(uri).expanduser()
    if not path.exists():
        raise ServingError(f"model path {path} does not exist")
    return path.resolve()


def _unpacked(archive: Path, max_bytes: int) -> Path:
    """The archive unpacked into <archive>.d, whole or not at all (unpacked aside, then renamed)."""
    from hyperserve.handlers.torchserve.archive import DEFAULT_MAX_ARCHIVE_BYTES, MANIFEST, extract

    target = archive.parent / (archive.name + ".d")
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=archive.parent))
        try:
            extract(archive, staging, max_bytes or DEFAULT_MAX_ARCHIVE_BYTES)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    # An archive made of one directory holds that directory: the model is inside it.
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    if not (target / MANIFEST).is_file() and len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target
