"""Where a job's files are: input URIs with wildcards (local or ``gs://``) → local files to read,
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
from .errors import JobFailed

_WILDCARDS = "*?["


@dataclass(frozen=True)
class InputFile:
    uri: str  # as the user named it (one match of a wildcard)
    path: str  # where it is read from: the file itself, or its downloaded copy
    version: str  # size and mtime (local) or generation (gs://): a re-run resumes only the same inputs


def expand(uris: list[str], cache_dir: Path) -> list[InputFile]:
    """Every file the URIs name, in the order given (each wildcard's matches sorted); gs:// objects
    are downloaded into ``cache_dir`` first, so that indexing and reading are local."""
    files: list[InputFile] = []
    for uri in uris:
        found = _expand_gs(uri, cache_dir) if uri.startswith("gs://") else _expand_local(uri)
        if not found:
            raise JobFailed(f"no input file matches {uri}")
        files.extend(found)
    return files


def _expand_local(uri: str) -> list[InputFile]:
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        raise JobFailed(f"unsupported input scheme in {uri}: use a local path or gs://")
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


def _expand_gs(uri: str, cache_dir: Path) -> list[InputFile]:
    from ..repository.gcs import _client, split_uri

    try:
        bucket_name, name = split_uri(uri)
        client = _client()
        if any(c in name for c in _WILDCARDS):
            literal = min((name.find(c) for c in _WILDCARDS if c in name))
            blobs = [b for b in client.list_blobs(bucket_name, prefix=name[:literal])
                     if fnmatch.fnmatchcase(b.name, name)]
        else:
            blob = client.bucket(bucket_name).get_blob(name)
            blobs = [blob] if blob is not None else []
        files = []
        for blob in sorted(blobs, key=lambda b: b.name):
            if blob.name.endswith("/"):
                continue
            version = str(blob.generation or blob.etag or blob.size)
            digest = hashlib.sha256(f"{bucket_name}/{blob.name}@{version}".encode()).hexdigest()[:20]
            local = cache_dir / "inputs" / digest
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                partial = local.with_suffix(".part")
                blob.download_to_filename(str(partial))
                partial.rename(local)
            files.append(InputFile(f"gs://{bucket_name}/{blob.name}", str(local), version))
        return files
    except (ServingError, JobFailed):
        raise
    except Exception as err:  # noqa: BLE001 - the storage client's errors vary by cause
        raise JobFailed(f"cannot read input {uri}: {err}") from None


def read_listed(uri: str) -> bytes:
    """The bytes of one file a file list names (a row error, not a job failure, when unreadable)."""
    if uri.startswith("gs://"):
        from ..repository.gcs import split_uri

        bucket_name, name = split_uri(uri)
        blob = _storage_client().bucket(bucket_name).get_blob(name)
        if blob is None:
            raise FileNotFoundError(f"{uri} does not exist")
        return blob.download_as_bytes()
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).read_bytes()


@functools.cache
def _storage_client():
    from ..repository.gcs import _client

    return _client()
