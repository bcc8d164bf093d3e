"""Objects into the GCS emulator (the ``gcs_emulator`` fixture in tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path


def upload(host: str, bucket: str, prefix: str, local_dir: Path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = host
    try:
        client = storage.Client(credentials=AnonymousCredentials(), project="test")
        b = client.bucket(bucket)
        if not b.exists():
            b = client.create_bucket(bucket)
        for path in local_dir.rglob("*"):
            if path.is_file():
                b.blob(f"{prefix}/{path.relative_to(local_dir).as_posix()}").upload_from_filename(str(path))
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]
