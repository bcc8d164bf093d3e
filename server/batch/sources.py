"""Where a job's files are: input URIs with wildcards (local or remote) → local files to read,
and the bytes a file list names."""

from __future__ import annotations

import fnmatch
import functools
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServingError
from ..repository.download import download_object
from ..repository.stores import is_remote, open_store, read_bytes, split
from .errors import JobFailed

_WILDCARDS = "*?["


@dataclass(frozen=True)
class InputFile:
    uri: str  # as the user named it (one match of a wildcard)
    path: str  # where it is read from: the file itself, or its downloaded copy
    version: str  # size and mtime (local), or the store's version: a re-run resumes only the same inputs


def expand(uris: list[str], cache_dir: Path) -> list[InputFile]:
    """Every file the URIs name, in the order given (each wildcard's matches sorted); remote
    objects (gs://, s3://, az://, http(s)://) are downloaded into ``cache_dir`` first, so that
    indexing and reading are local."""
    files: list[InputFile] = []
    for uri in uris:
        found = _expand_remote(uri, cache_dir) if is_remote(uri) else _expand_local(uri)
        if not found:
            raise JobFailed(f"no input file matches {uri}")
        files.extend(found)
    return files


def _expand_local(uri: str) -> list[InputFile]:
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        raise JobFailed(f"unsupported input scheme in {uri}: use a local path, gs://, s3://, az:// or http(s)://")
    matches = sorted(glob.glob(path)) if any(c in path for c in _WILDCARDS) else [path]
    files = []
    for match in matches:
        try:
            stat = os.stat(match)
        except OSError as err:
            raise JobFailed(f"cannot read input {match}: {err.strerror}") from None
        if not os.path.isfile(match):
            continue
        files.append(InputFile(match, match, f"{stat.st_size}:{stat.st_mtime_ns}"))
    return files


def _expand_remote(uri: str, cache_dir: Path) -> list[InputFile]:
    try:
        store, name = open_store(uri)
        if any(c in name for c in _WILDCARDS):
            literal = min((name.find(c) for c in _WILDCARDS if c in name))
            objects = [o for o in store.list(name[:literal]) if fnmatch.fnmatchcase(o.key, name)]
        else:
            found = store.get(name)
            objects = [found] if found is not None else []
        files = []
        for obj in sorted(objects, key=lambda o: o.key):
            if obj.key.endswith("/"):
                continue
            version = obj.version or str(obj.size)
            digest = hashlib.sha256(f"{store.uri(obj.key)}@{version}".encode()).hexdigest()[:20]
            local = cache_dir / "inputs" / digest
            if not local.exists():
                download_object(store, obj, local)
            files.append(InputFile(store.uri(obj.key), str(local), version))
        return files
    except ServingError as err:
        raise JobFailed(f"cannot read input {uri}: {err.message}") from None


def read_listed(uri: str) -> bytes:
    """The bytes of one file a file list names (a row error, not a job failure, when unreadable)."""
    if is_remote(uri):
        store, key = _store_of(uri)
        data = read_bytes(store, key)
        if data is None:
            raise FileNotFoundError(f"{uri} does not exist")
        return data
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).read_bytes()


def _store_of(uri: str):
    """One client per bucket for a file list's many reads."""
    key = split(uri)[2]
    return _bucket_store(uri[:len(uri) - len(key)]), key


@functools.cache
def _bucket_store(bucket_uri: str):
    return open_store(bucket_uri)[0]
