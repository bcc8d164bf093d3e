"""s3://bucket/key with boto3: AWS's standard credentials chain (environment, shared files, the
instance's role), and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3-compatible stores."""

from __future__ import annotations

import os
from typing import BinaryIO

from ...errors import ServingError
from . import FORBIDDEN, NO_BUCKET, NO_CREDENTIALS, NOT_FOUND, StorageError, StoredObject

CHUNK_BYTES = 1024 * 1024


class S3Store:
    scheme = "s3"

    def __init__(self, bucket: str):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ServingError("s3:// URIs need boto3: pip install 'hyperserve[s3]'") from None
        self.bucket = bucket
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        # Connections for the parallel downloads; botocore retries a throttled or dropped call itself.
        config = Config(max_pool_connections=32, retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.client("s3", endpoint_url=endpoint, config=config)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _failed(self, key: str, err: Exception) -> StorageError:
        from botocore import exceptions as bce

        if isinstance(err, (bce.NoCredentialsError, bce.PartialCredentialsError)):
            return StorageError(self.uri(key), NO_CREDENTIALS, str(err))
        if isinstance(err, bce.ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StorageError(self.uri(""), NO_BUCKET, code)
            if code in ("NoSuchKey", "404", "NotFound"):
                return StorageError(self.uri(key), NOT_FOUND, code)
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return StorageError(self.uri(key), FORBIDDEN, code)
            return StorageError(self.uri(key), "failed", f"{code}: {err}", transient=status is None or status >= 500)
        return StorageError(self.uri(key), "failed", f"{type(err).__name__}: {err}", transient=True)

    @staticmethod
    def _md5(etag: str) -> bytes | None:
        """A single-part upload's ETag is the MD5 of its bytes; a multipart one's is not (it has a '-')."""
        etag = (etag or "").strip('"')
        if len(etag) == 32 and "-" not in etag:
            try:
                return bytes.fromhex(etag)
            except ValueError:
                return None
        return None

    def list(self, prefix: str) -> list[StoredObject]:
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    found.append(StoredObject(item["Key"], item["Size"], self._md5(item.get("ETag", "")),
                                              item.get("ETag", "").strip('"'), item["Key"]))
        except Exception as err:  # noqa: BLE001 - mapped to its cause
            raise self._failed(prefix, err) from None
        return found

    def get(self, key: str) -> StoredObject | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as err:  # noqa: BLE001
            failed = self._failed(key, err)
            if failed.cause == NOT_FOUND:
                return None
            raise failed from None
        etag = head.get("ETag", "").strip('"')
        return StoredObject(key, head.get("ContentLength"), self._md5(etag), etag, key)

    def read_into(self, obj: StoredObject, out: BinaryIO) -> None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=obj.key)["Body"]
            for chunk in body.iter_chunks(CHUNK_BYTES):
                out.write(chunk)
        except Exception as err:  # noqa: BLE001
            raise self._failed(obj.key, err) from None

    def upload(self, path: str, key: str, content_type: str = "", once: bool = False) -> bool:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            if once:  # a conditional write: S3 refuses it (412) when the key exists
                with open(path, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
            else:
                self.client.upload_file(path, self.bucket, key, ExtraArgs=extra or None)
        except Exception as err:  # noqa: BLE001
            code = getattr(err, "response", {}).get("Error", {}).get("Code", "") if hasattr(err, "response") else ""
            if once and code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._failed(key, err) from None
        return True
