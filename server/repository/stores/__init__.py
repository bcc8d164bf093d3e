"""Object stores behind one small interface, by URI scheme: gs:// (google-cloud-storage), s3://
(boto3), az:// and https://<account>.blob.core.windows.net (azure-storage-blob), and plain
http(s):// files. The model download (``..download``) and batch jobs' inputs and outputs use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from ...errors import ServingError


class StorageError(ServingError):
    """A store refused or failed: ``cause`` is one of CAUSES' words, named in the message with the URI."""

    def __init__(self, uri: str, cause: str, detail: str = "", *, transient: bool = False):
        super().__init__(f"cannot read {uri}: {cause}" + (f" ({detail})" if detail else ""), status=503)
        self.uri = uri
        self.cause = cause
        self.transient = transient  # worth another try (a dropped connection, a short read)


NO_CREDENTIALS, NO_BUCKET, FORBIDDEN, NOT_FOUND = "no credentials", "no such bucket", "forbidden", "not found"


@dataclass(frozen=True)
class StoredObject:
    key: str  # the object's full name in its bucket
    size: int | None
    md5: bytes | None  # the store's MD5 digest of the bytes, when it gives one
    version: str  # what changes when the bytes do: generation, ETag, Last-Modified
    handle: Any = None  # what the store needs to read it again (a blob client, a URL)


class ObjectStore(Protocol):
    scheme: str

    def uri(self, key: str) -> str: ...

    def list(self, prefix: str) -> list[StoredObject]: ...

    def get(self, key: str) -> StoredObject | None: ...

    def read_into(self, obj: StoredObject, out: BinaryIO) -> None: ...

    def upload(self, path: str, key: str, content_type: str = "", once: bool = False) -> bool:
        """Put the file at ``key``; ``once``: only if no object is there (False when one was)."""


def read_bytes(store: ObjectStore, key: str) -> bytes | None:
    """A whole (small) object's bytes, or None when there is none."""
    import io

    found = store.get(key)
    if found is None:
        return None
    out = io.BytesIO()
    store.read_into(found, out)
    return out.getvalue()


def split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of a store URI; an https blob URL's bucket is account/container."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ServingError(f"not a storage URI: {uri!r}")
    host, _, key = rest.partition("/")
    if scheme in ("http", "https"):
        if host.endswith(".blob.core.windows.net"):
            container, _, key = key.partition("/")
            if not container:
                raise ServingError(f"invalid Azure Blob URL {uri!r}: no container")
            return "az", f"{host.split('.', 1)[0]}/{container}", key
        return scheme, host, key
    if not host:
        raise ServingError(f"invalid {scheme}:// URI {uri!r}: no bucket")
    return scheme, host, key


SCHEMES = ("gs", "s3", "az", "http", "https")


def is_remote(uri: str) -> bool:
    return uri.split("://", 1)[0] in SCHEMES and "://" in uri


def open_store(uri: str) -> tuple[ObjectStore, str]:
    """The store a URI names, and the key (or prefix) in it."""
    scheme, bucket, key = split(uri)
    https_style = uri.startswith(("http://", "https://"))
    if scheme == "gs":
        from .gcs import GcsStore

        return GcsStore(bucket), key
    if scheme == "s3":
        from .s3 import S3Store

        return S3Store(bucket), key
    if scheme == "az":
        from .azure_blob import AzureBlobStore

        account, _, container = bucket.rpartition("/")
        return AzureBlobStore(container, account, https_style=https_style), key
    if scheme in ("http", "https"):
        from .http import HttpStore

        return HttpStore(f"{scheme}://{bucket}"), key
    raise ServingError(f"unsupported storage scheme '{scheme}://' in {uri}; use a local path, gs://, s3://, az:// or "
                       "http(s)://")
