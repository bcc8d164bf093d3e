"""A remote model's files on local disk: listed, downloaded in parallel, each file written
atomically and checked (size always; MD5 where the store gives one), retried when a transfer
fails midway, and cached by URI and version under --cache-dir within --cache-max-bytes.

Layout: <cache>/<sha(uri)>-<sha(version)>/ holds a complete copy (its ``.complete`` marker is
written last); downloads go to <cache>/.download-<pid>-*/ first, and one left by a process that
died is removed by the next. A copy in use is touched, so eviction takes the least recent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import orjson

from ..errors import ServingError
from .stores import ObjectStore, StorageError, StoredObject, open_store

log = logging.getLogger("hyperserve.repository")

COMPLETE = ".complete"
STAGING_PREFIX = ".download-"
ATTEMPTS = 3  # per file: a dropped connection or a short read is tried again, twice
BACKOFF_S = 0.5


def _relative(key: str, prefix: str) -> PurePosixPath | None:
    rel = key[len(prefix):].lstrip("/") if prefix else key
    if not rel or rel.endswith("/"):
        return None  # the prefix itself, or a "directory" placeholder
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or any(p in ("..", "") for p in parts):
        raise ServingError(f"refusing object {key!r}: it would escape the download directory")
    return PurePosixPath(rel)


class _Hashing:
    """A file that counts and hashes what is written to it."""

    def __init__(self, out):
        self.out = out
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data) -> int:
        self.out.write(data)
        self.md5.update(data)
        self.size += len(data)
        return len(data)


def download_object(store: ObjectStore, obj: StoredObject, dest: Path, attempts: int = ATTEMPTS) -> int:
    """One object into ``dest``, whole and checked or not at all."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    uri = store.uri(obj.key)
    for attempt in range(1, attempts + 1):
        try:
            with open(partial, "wb") as out:
                hashing = _Hashing(out)
                store.read_into(obj, hashing)
            if obj.size is not None and hashing.size != obj.size:
                raise StorageError(uri, "incomplete", f"got {hashing.size} of {obj.size} bytes", transient=True)
            if obj.md5 is not None and hashing.md5.digest() != obj.md5:
                raise StorageError(uri, "corrupt", "its MD5 does not match the store's", transient=True)
            os.replace(partial, dest)
            return hashing.size
        except StorageError as err:
            partial.unlink(missing_ok=True)
            if not err.transient or attempt == attempts:
                raise
            log.warning("%s (attempt %d of %d); trying again", err.message, attempt, attempts)
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        except OSError as err:  # our disk, not the store
            partial.unlink(missing_ok=True)
            raise ServingError(f"cannot write {dest} (downloading {uri}): {err}") from None
    raise AssertionError("unreachable")


def _version(objects: list[StoredObject]) -> str:
    listing = sorted((o.key, o.size, o.version) for o in objects)
    return hashlib.sha256(orjson.dumps(listing)).hexdigest()[:16]


def _size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _remove_abandoned(cache_dir: Path) -> None:
    """Downloads left by processes that died midway (their pid is in the name)."""
    for staging in cache_dir.glob(STAGING_PREFIX + "*"):
        try:
            pid = int(staging.name[len(STAGING_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def evict(cache_dir: Path, max_bytes: int, keep: Path) -> None:
    """Remove the least recently used complete copies until the cache fits ``max_bytes``."""
    if max_bytes <= 0:
        return
    copies = []
    for entry in cache_dir.iterdir():
        marker = entry / COMPLETE
        if entry.is_dir() and marker.exists():
            copies.append((marker.stat().st_mtime, entry, _size_of(entry)))
    total = sum(size for _, _, size in copies)
    for _, entry, size in sorted(copies, key=lambda c: c[0]):
        if total <= max_bytes:
            break
        if entry == keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
        log.info("evicted %s (%d bytes) from the model cache", entry.name, size)


def mirror(uri: str, cache_dir: Path, *, max_cache_bytes: int = 0, workers: int = 16) -> Path:
    """The local copy of everything ``uri`` names: a directory for a prefix, a file for one object."""
    store, prefix = open_store(uri)
    single = store.get(prefix) if prefix and not prefix.endswith("/") else None
    if single is not None:
        objects, base = [single], prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    else:
        dir_prefix = prefix.rstrip("/") + "/" if prefix else ""
        objects, base = store.list(dir_prefix), dir_prefix
    if not objects:
        raise StorageError(uri, "not found", "no objects under it")
    jobs = [(obj, rel) for obj in objects if (rel := _relative(obj.key, base)) is not None]
    cache_dir.mkdir(parents=True, exist_ok=True)
    copy = cache_dir / f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{_version(objects)}"
    found = copy / (str(jobs[0][1]) if single is not None else "")
    # Without a version (an http(s) server that gave no ETag, Last-Modified or size) a copy cannot
    # be known to be current: it is downloaded again, in place of the last one.
    versioned = all(obj.version for obj in objects)
    if versioned and (copy / COMPLETE).exists():
        os.utime(copy / COMPLETE)
        log.info("using the cached copy of %s in %s", uri, copy)
        return found
    _remove_abandoned(cache_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=cache_dir))
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            total = sum(pool.map(lambda job: download_object(store, job[0], staging / job[1]), jobs))
        (staging / COMPLETE).write_bytes(orjson.dumps({"uri": uri, "objects": len(jobs), "bytes": total}))
        if copy.exists():  # an incomplete copy from an older layout or a crash between the renames
            shutil.rmtree(copy)
        staging.rename(copy)  # readers never see a half-downloaded copy
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    log.info("downloaded %d objects (%d bytes) from %s in %.1fs (%.0f MB/s)", len(jobs), total, uri, seconds,
             total / 1e6 / max(seconds, 1e-9))
    evict(cache_dir, max_cache_bytes, copy)
    return found
