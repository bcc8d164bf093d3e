"""Azure Blob Storage: az://container/path (the account from the connection string or
``AZURE_STORAGE_ACCOUNT``) and https://<account>.blob.core.windows.net/container/path. Credentials:
``AZURE_STORAGE_CONNECTION_STRING``, else azure-identity's default chain (managed identity,
workload identity, environment, Azure CLI)."""

from __future__ import annotations

import os
from typing import BinaryIO

from ...errors import ServingError
from . import FORBIDDEN, NO_BUCKET, NO_CREDENTIALS, NOT_FOUND, StorageError, StoredObject


class AzureBlobStore:
    scheme = "az"

    def __init__(self, container: str, account: str = "", *, https_style: bool = False):
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError:
            raise ServingError("Azure Blob URIs need azure-storage-blob: pip install 'hyperserve[azure]'") from None
        self.container = container
        self.account = account
        self.https_style = https_style  # name objects as the user did: az://container/... or the https URL
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if connection:
            service = BlobServiceClient.from_connection_string(connection)
        else:
            account = account or os.environ.get("AZURE_STORAGE_ACCOUNT", "")
            if not account:
                raise StorageError(self.uri(""), NO_CREDENTIALS, "az:// needs AZURE_STORAGE_CONNECTION_STRING or "
                                   "AZURE_STORAGE_ACCOUNT (or an https://<account>.blob.core.windows.net URL)")
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise ServingError("Azure Blob without a connection string needs azure-identity: "
                                   "pip install 'hyperserve[azure]'") from None
            service = BlobServiceClient(f"https://{account}.blob.core.windows.net", credential=DefaultAzureCredential())
        self.account = self.account or service.account_name or ""
        self.client = service.get_container_client(container)

    def uri(self, key: str) -> str:
        if self.https_style:
            return f"https://{self.account}.blob.core.windows.net/{self.container}/{key}"
        return f"az://{self.container}/{key}"

    def _failed(self, key: str, err: Exception) -> StorageError:
        from azure.core import exceptions as ace

        code = str(getattr(err, "error_code", "") or "")
        if isinstance(err, ace.ClientAuthenticationError) or code in ("AuthenticationFailed",
                                                                       "NoAuthenticationInformation"):
            cause = NO_CREDENTIALS if "credential" in type(err).__name__.lower() or \
                "CredentialUnavailable" in str(err) else FORBIDDEN
            return StorageError(self.uri(key), cause, code or type(err).__name__)
        if code == "ContainerNotFound":
            return StorageError(self.uri(""), NO_BUCKET, "no such container")
        if isinstance(err, ace.ResourceNotFoundError) or code == "BlobNotFound":
            return StorageError(self.uri(key), NOT_FOUND, code)
        status = getattr(err, "status_code", None)
        if status == 403 or code.startswith("AuthorizationPermission"):
            return StorageError(self.uri(key), FORBIDDEN, code)
        transient = not isinstance(err, ace.HttpResponseError) or (status or 500) >= 500
        return StorageError(self.uri(key), "failed", f"{code or type(err).__name__}: {err}", transient=transient)

    @staticmethod
    def _object(blob) -> StoredObject:
        settings = blob.content_settings
        md5 = bytes(settings.content_md5) if settings is not None and settings.content_md5 else None
        return StoredObject(blob.name, blob.size, md5, str(blob.etag or "").strip('"'), blob.name)

    def list(self, prefix: str) -> list[StoredObject]:
        try:
            return [self._object(b) for b in self.client.list_blobs(name_starts_with=prefix or None)]
        except Exception as err:  # noqa: BLE001 - mapped to its cause
            raise self._failed(prefix, err) from None

    def get(self, key: str) -> StoredObject | None:
        try:
            return self._object(self.client.get_blob_client(key).get_blob_properties())
        except Exception as err:  # noqa: BLE001
            failed = self._failed(key, err)
            if failed.cause == NOT_FOUND:
                return None
            raise failed from None

    def read_into(self, obj: StoredObject, out: BinaryIO) -> None:
        try:
            for chunk in self.client.get_blob_client(obj.key).download_blob(max_concurrency=1).chunks():
                out.write(chunk)
        except Exception as err:  # noqa: BLE001
            raise self._failed(obj.key, err) from None

    def upload(self, path: str, key: str, content_type: str = "", once: bool = False) -> bool:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        try:
            with open(path, "rb") as source:
                self.client.get_blob_client(key).upload_blob(
                    source, overwrite=not once, content_settings=ContentSettings(content_type=content_type or None))
        except ResourceExistsError:
            return False
        except Exception as err:  # noqa: BLE001
            raise self._failed(key, err) from None
        return True
