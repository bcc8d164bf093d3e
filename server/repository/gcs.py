"""Download everything under a ``gs://bucket/prefix`` in parallel (default credentials).

``STORAGE_EMULATOR_HOST`` points the client at an emulator, as google-cloud-storage does itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from ..errors import ServingError

log = logging.getLogger("hyperserve.repository.gcs")


def split_uri(uri: str) -> tuple[str, str]:
    rest = uri[len("gs://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ServingError(f"invalid gs:// URI {uri!r}: no bucket")
    return bucket, prefix


def _client():
    try:
        from google.cloud import storage
    except ImportError:
        raise ServingError("gs:// model URIs need google-cloud-storage: pip install 'hyperserve[gcs]'") from None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(credentials=AnonymousCredentials(), project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"))
    return storage.Client()


def _safe_relative(name: str, prefix: str) -> PurePosixPath | None:
    rel = name[len(prefix):].lstrip("/") if prefix else name
    if not rel or rel.endswith("/"):
        return None  # the prefix itself or a "directory" placeholder object
    parts = PurePosixPath(rel).parts
    if any(p in ("..", "") for p in parts) or rel.startswith("/"):
        raise ServingError(f"refusing object {name!r}: it would escape the download directory")
    return PurePosixPath(rel)


def download_prefix(uri: str, target: Path, workers: int = 16) -> Path:
    """Mirror ``uri`` into ``target``; a single object downloads as one file."""
    bucket_name, prefix = split_uri(uri)
    client = _client()
    bucket = client.bucket(bucket_name)
    dir_prefix = prefix.rstrip("/") + "/" if prefix else ""
    try:
        blobs = [b for b in client.list_blobs(bucket_name, prefix=dir_prefix)]
        if not blobs and prefix:
            single = bucket.get_blob(prefix)
            if single is not None:
                target.mkdir(parents=True, exist_ok=True)
                dest = target / PurePosixPath(prefix).name
                single.download_to_filename(str(dest))
                return dest
    except ServingError:
        raise
    except Exception as err:
        raise ServingError(f"could not list {uri}: {err}") from err
    if not blobs:
        raise ServingError(f"no objects found under {uri}")
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=_ensure(target.parent)))
    jobs = []
    for blob in blobs:
        rel = _safe_relative(blob.name, dir_prefix)
        if rel is not None:
            jobs.append((blob, staging / rel))

    def download(job):
        blob, dest = job
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(dest))
        return blob.size or 0

    try:
        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(jobs)))) as pool:
            total = sum(pool.map(download, jobs))
    except Exception as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServingError(f"could not download {uri}: {err}") from err
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)  # readers never see a half-downloaded directory
    log.info("downloaded %d objects (%d bytes) from %s to %s", len(jobs), total, uri, target)
    return target


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
