"""A job's output prefix, local or remote (gs://, s3://, az://): shards committed atomically, so a
shard is either complete or absent, and a re-run skips the complete ones.

Locally a shard is written to a temporary file beside its name and renamed into place. In an
object store an object exists only once its upload completes, and the upload is conditional on no
object of that name existing yet (Cloud Storage's if_generation_match=0, S3's If-None-Match: *,
Azure's overwrite=False): a shard is never written twice.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import ServingError
from ..repository.stores import is_remote, open_store, read_bytes
from .errors import JobFailed

RESULTS, ERRORS_STATS = "prediction.results", "prediction.errors_stats"
MANIFEST, SUMMARY = "job.json", "job_summary.json"


def shard_name(kind: str, index: int, count: int) -> str:
    return f"{kind}-{index:05d}-of-{count:05d}"


class Output:
    """Where a job writes: ``exists``, ``read``, and ``commit`` of a finished local file."""

    def __init__(self, prefix: str, spool_dir: Path, *, clean: bool = True):
        self.prefix = prefix.rstrip("/")
        self._remote = is_remote(prefix)
        # Locally a shard is spooled beside its name, so that its rename is atomic.
        self.spool_dir = spool_dir if self._remote else Path(self.prefix)
        if self._remote:
            try:
                self._store, path = open_store(self.prefix)
            except ServingError as err:
                raise JobFailed(err.message) from None
            self._path = path.rstrip("/")
        else:
            try:
                Path(self.prefix).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise JobFailed(f"cannot write the output {prefix}: {err}") from None
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        if clean:  # a killed run's unfinished shards (the job's driver only: Ray actors share the directory)
            for stale in self.spool_dir.glob(".prediction.*"):
                stale.unlink(missing_ok=True)

    def uri(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def _key(self, name: str) -> str:
        return f"{self._path}/{name}" if self._path else name

    def exists(self, name: str) -> bool:
        try:
            return self._store.get(self._key(name)) is not None if self._remote else os.path.exists(self.uri(name))
        except Exception as err:  # noqa: BLE001 - any storage failure ends the job, with its cause
            raise JobFailed(f"cannot read the output {self.uri(name)}: {getattr(err, 'message', err)}") from None

    def read(self, name: str) -> bytes | None:
        try:
            if self._remote:
                return read_bytes(self._store, self._key(name))
            return Path(self.uri(name)).read_bytes()
        except FileNotFoundError:
            return None
        except Exception as err:  # noqa: BLE001
            raise JobFailed(f"cannot read the output {self.uri(name)}: {getattr(err, 'message', err)}") from None

    def spool(self, name: str):
        """A local file to write ``name`` into before ``commit``."""
        fd, path = tempfile.mkstemp(prefix=f".{name}.", dir=self.spool_dir)
        return os.fdopen(fd, "wb", buffering=1 << 20), path

    def commit(self, name: str, local: str, *, once: bool = True) -> bool:
        """Put the finished file ``local`` at ``name``. ``once``: never over an existing one (False
        when one was there: a run still ending committed the same shard first)."""
        try:
            if self._remote:
                written = self._store.upload(local, self._key(name), once=once)
                os.unlink(local)
                return written
            else:
                final = self.uri(name)
                if once:
                    try:  # a hard link fails when the name exists: atomic, and never over another shard
                        os.link(local, final)
                    except FileExistsError:
                        os.unlink(local)
                        return False
                    except OSError:  # a filesystem without hard links: checked, then renamed
                        if os.path.exists(final):
                            os.unlink(local)
                            return False
                        os.replace(local, final)
                        return True
                    os.unlink(local)
                else:
                    os.replace(local, final)
            return True
        except Exception as err:  # noqa: BLE001
            try:
                os.unlink(local)
            except OSError:
                pass
            raise JobFailed(f"cannot write the output {self.uri(name)}: {getattr(err, 'message', err)}") from None

    def write(self, name: str, data: bytes) -> None:
        f, path = self.spool(name)
        with f:
            f.write(data)
        self.commit(name, path, once=False)
