"""gs://bucket/key with google-cloud-storage and the default credentials (``STORAGE_EMULATOR_HOST``
points it at an emulator, anonymously, as the client library does itself)."""

from __future__ import annotations

import base64
import os
from typing import BinaryIO

from ...errors import ServingError
from . import FORBIDDEN, NO_BUCKET, NO_CREDENTIALS, NOT_FOUND, StorageError, StoredObject


def client():
    try:
        from google.cloud import storage
    except ImportError:
        raise ServingError("gs:// URIs need google-cloud-storage: pip install 'hyperserve[gcs]'") from None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(credentials=AnonymousCredentials(),
                              project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"))
    return storage.Client()


class GcsStore:
    scheme = "gs"

    def __init__(self, bucket: str):
        self.bucket_name = bucket
        try:
            self.client = client()
        except ServingError:
            raise
        except Exception as err:  # google.auth.exceptions.DefaultCredentialsError and kin
            raise StorageError(self.uri(""), NO_CREDENTIALS, str(err)) from None
        self.bucket = self.client.bucket(bucket)

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{key}"

    def _failed(self, key: str, err: Exception) -> StorageError:
        from google.api_core import exceptions as api

        if isinstance(err, api.NotFound):
            return StorageError(self.uri(key), NOT_FOUND, str(err))
        if isinstance(err, (api.Forbidden, api.Unauthorized)):
            return StorageError(self.uri(key), FORBIDDEN, str(err))
        return StorageError(self.uri(key), "failed", f"{type(err).__name__}: {err}", transient=True)

    @staticmethod
    def _object(blob) -> StoredObject:
        md5 = base64.b64decode(blob.md5_hash) if blob.md5_hash else None
        return StoredObject(blob.name, blob.size, md5, str(blob.generation or blob.etag or ""), blob)

    def list(self, prefix: str) -> list[StoredObject]:
        # No bucket.exists() first: it needs storage.buckets.get, which a reader of objects
        # (roles/storage.objectViewer, as Vertex's service agents have) lacks.
        from google.api_core import exceptions as api

        try:
            return [self._object(b) for b in self.client.list_blobs(self.bucket_name, prefix=prefix)]
        except api.NotFound as err:  # listing a bucket's objects: only the bucket can be missing
            raise StorageError(self.uri(""), NO_BUCKET, str(err)) from None
        except Exception as err:  # noqa: BLE001 - mapped to its cause
            raise self._failed(prefix, err) from None

    def get(self, key: str) -> StoredObject | None:
        try:
            blob = self.bucket.get_blob(key)
        except Exception as err:  # noqa: BLE001
            raise self._failed(key, err) from None
        return self._object(blob) if blob is not None else None

    def read_into(self, obj: StoredObject, out: BinaryIO) -> None:
        try:
            obj.handle.download_to_file(out, checksum=None)  # ours is computed as the bytes arrive
        except Exception as err:  # noqa: BLE001
            raise self._failed(obj.key, err) from None

    def upload(self, path: str, key: str, content_type: str = "", once: bool = False) -> bool:
        from google.api_core import exceptions as api

        try:
            self.bucket.blob(key).upload_from_filename(path, content_type=content_type or None,
                                                       if_generation_match=0 if once else None)
        except api.PreconditionFailed:
            return False
        except Exception as err:  # noqa: BLE001
            raise self._failed(key, err) from None
        return True
