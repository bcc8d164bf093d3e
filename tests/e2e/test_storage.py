"""Models (and batch jobs' files) from real object stores on loopback: moto's S3 server, Azurite's
Blob service and a plain HTTP file server, started by the tests. Covers a model from each, the
cache, each named failure (missing object, no bucket, no credentials, wrong credentials) and a
200 MB download killed midway, and one whose connection drops, then retried."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import azurite_connection_string
from tests.e2e.test_batch import batch, summary_of, write_jsonl

pytestmark = pytest.mark.e2e

ROW = [6.7, 3.0, 5.2, 2.3]
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}
BIG_BYTES = 200 * 1024 * 1024


def s3_env(endpoint: str, **extra) -> dict[str, str]:
    return {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, **extra}


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                        region_name="us-east-1")


def s3_upload(endpoint: str, bucket: str, prefix: str, local_dir: Path) -> None:
    client = s3_client(endpoint)
    try:
        client.create_bucket(Bucket=bucket)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local_dir).as_posix()}")


def azure_upload(url: str, container: str, prefix: str, local_dir: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite_connection_string(url))
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            with open(path, "rb") as data:
                client.upload_blob(f"{prefix}/{path.relative_to(local_dir).as_posix()}", data, overwrite=True)


def predicts(server) -> bool:
    r = httpx.post(server.url + "/predict", json={"instances": [ROW]})
    return r.status_code == 200 and r.json() == {"predictions": [2]}


# -- a model from each store -------------------------------------------------------------------

def test_model_from_s3_is_cached_by_uri_and_version(start_server, s3_server, sklearn_dir, tmp_path):
    s3_upload(s3_server, "models", "iris", sklearn_dir)
    env = s3_env(s3_server, AIP_STORAGE_URI="s3://models/iris", HYPERSERVE_CACHE_DIR=str(tmp_path))
    server = start_server([], env=env)
    assert predicts(server)
    assert "downloaded 1 objects" in (server.stop() == 0 and server.output())
    again = start_server([], env=env)  # the same objects: the cached copy, no download
    assert predicts(again)
    again.stop()
    assert "using the cached copy of s3://models/iris" in again.output()
    # A new version of the object is a new copy beside the first.
    s3_client(s3_server).put_object(Bucket="models", Key="iris/README.txt", Body=b"v2")
    third = start_server([], env=env)
    assert predicts(third)
    third.stop()
    assert "downloaded 2 objects" in third.output()
    copies = [p for p in tmp_path.iterdir() if (p / ".complete").exists()]
    assert len(copies) == 2


def test_model_from_azure_blob(start_server, azurite, sklearn_dir, tmp_path):
    azure_upload(azurite, "models", "iris", sklearn_dir)
    env = {"AIP_STORAGE_URI": "az://models/iris", "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(azurite),
           "HYPERSERVE_CACHE_DIR": str(tmp_path)}
    server = start_server([], env=env)
    assert predicts(server)


class FileServer:
    """A directory over HTTP on loopback; ``drop_once`` names files whose first GET is cut after
    10 MB (the connection closes with the rest unsent)."""

    def __init__(self, root: Path):
        self.root = root
        self.drop_once: set[str] = set()
        self.gets: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _head(self) -> Path | None:
                path = outer.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return None
                self.send_response(200)
                self.send_header("content-length", str(path.stat().st_size))
                self.send_header("etag", f'"{path.stat().st_mtime_ns}"')
                self.end_headers()
                return path

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                path = self._head()
                if path is None:
                    return
                outer.gets.append(self.path)
                cut = self.path in outer.drop_once
                outer.drop_once.discard(self.path)
                with open(path, "rb") as source:
                    sent = 0
                    while chunk := source.read(1 << 20):
                        if cut and sent >= 10 << 20:
                            self.close_connection = True
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    yield server
    server.close()


def test_model_from_https_file_and_archives(start_server, file_server, sklearn_dir, tmp_path):
    root = file_server.root
    shutil.copy(sklearn_dir / "model.joblib", root / "model.joblib")
    with tarfile.open(root / "iris.tar.gz", "w:gz") as tar:
        tar.add(sklearn_dir, arcname="iris")
    with zipfile.ZipFile(root / "iris.zip", "w") as archive:
        archive.write(sklearn_dir / "model.joblib", "model.joblib")
    for name in ("model.joblib", "iris.tar.gz", "iris.zip"):
        env = {"AIP_STORAGE_URI": f"{file_server.url}/{name}", "HYPERSERVE_CACHE_DIR": str(tmp_path / "cache")}
        server = start_server([], env=env)
        assert predicts(server), name
        server.stop()


# -- failures: a clear cause, health 503 meanwhile, then exit 1 --------------------------------

def _fails(start_server, env: dict, message: str, tmp_path: Path):
    env = {"HYPERSERVE_CACHE_DIR": str(tmp_path / "cache"), **env}
    server = start_server(["--load-failure-exit-delay", "3"], env=env, ready=False)
    seen = {httpx.get(server.url + "/health").status_code for _ in range(3)}
    assert seen == {503}
    assert server.proc.wait(60) == 1
    assert message in server.output(), server.output()


def test_s3_failures_name_the_uri_and_the_cause(start_server, s3_server, sklearn_dir, tmp_path):
    s3_upload(s3_server, "models", "iris", sklearn_dir)
    _fails(start_server, s3_env(s3_server, AIP_STORAGE_URI="s3://models/nothing-here"),
           "cannot read s3://models/nothing-here: not found", tmp_path)
    _fails(start_server, s3_env(s3_server, AIP_STORAGE_URI="s3://no-such-bucket/iris"),
           "cannot read s3://no-such-bucket/: no such bucket", tmp_path)
    no_credentials = {k: v for k, v in s3_env(s3_server, AIP_STORAGE_URI="s3://models/iris").items()
                      if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    no_credentials.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
                          AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    _fails(start_server, no_credentials, "cannot read s3://models/iris: no credentials", tmp_path)


def test_azure_failures_name_the_uri_and_the_cause(start_server, azurite, sklearn_dir, tmp_path):
    azure_upload(azurite, "models", "iris", sklearn_dir)
    good = azurite_connection_string(azurite)
    wrong = azurite_connection_string(azurite, key="d3Jvbmcga2V5IGZvciBkZXZzdG9yZWFjY291bnQx")
    _fails(start_server, {"AIP_STORAGE_URI": "az://models/nothing-here", "AZURE_STORAGE_CONNECTION_STRING": good},
           "cannot read az://models/nothing-here: not found", tmp_path)
    _fails(start_server, {"AIP_STORAGE_URI": "az://no-such-container/iris", "AZURE_STORAGE_CONNECTION_STRING": good},
           "cannot read az://no-such-container/: no such bucket", tmp_path)
    _fails(start_server, {"AIP_STORAGE_URI": "az://models/iris", "AZURE_STORAGE_CONNECTION_STRING": wrong},
           "cannot read az://models/iris: forbidden", tmp_path)
    _fails(start_server, {"AIP_STORAGE_URI": "az://models/iris", "AZURE_STORAGE_CONNECTION_STRING": ""},
           "cannot read az://models/: no credentials", tmp_path)


def test_http_missing_file(start_server, file_server, tmp_path):
    _fails(start_server, {"AIP_STORAGE_URI": f"{file_server.url}/missing.joblib"},
           f"cannot read {file_server.url}/missing.joblib: not found", tmp_path)


# -- interrupted downloads ---------------------------------------------------------------------

def _big_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "wb") as out:
        for _ in range(BIG_BYTES // (8 << 20)):
            chunk = os.urandom(8 << 20)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def test_200mb_download_killed_midway_is_done_again_whole(start_server, s3_server, sklearn_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(sklearn_dir, model)
    md5 = _big_file(model / "weights.bin")
    s3_upload(s3_server, "big", "iris", model)
    cache = tmp_path / "cache"
    env = s3_env(s3_server, AIP_STORAGE_URI="s3://big/iris", HYPERSERVE_CACHE_DIR=str(cache))
    first = start_server([], env=env, ready=False)
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline and partial is None:
        partial = next((p for p in cache.glob(".download-*/weights.bin.partial") if p.stat().st_size > 20 << 20), None)
        time.sleep(0.01)
    assert partial is not None, "the download never got under way"
    os.kill(first.proc.pid, signal.SIGKILL)  # midway: the partial file is left behind
    first.proc.wait(10)
    assert partial.exists() and partial.stat().st_size < BIG_BYTES
    second = start_server([], env=env)  # retried: the abandoned download is removed, then done whole
    assert predicts(second)
    copies = [p for p in cache.iterdir() if (p / ".complete").exists()]
    assert len(copies) == 1 and not list(cache.glob(".download-*"))
    assert hashlib.md5((copies[0] / "weights.bin").read_bytes(), usedforsecurity=False).hexdigest() == md5


def test_dropped_connection_is_retried_and_checked(start_server, file_server, sklearn_dir, tmp_path):
    with tarfile.open(file_server.root / "iris.tar.gz", "w") as tar:  # uncompressed: 200 MB on the wire
        tar.add(sklearn_dir / "model.joblib", arcname="iris/model.joblib")
        _big_file(tmp_path / "weights.bin")
        tar.add(tmp_path / "weights.bin", arcname="iris/weights.bin")
    file_server.drop_once.add("/iris.tar.gz")
    env = {"AIP_STORAGE_URI": f"{file_server.url}/iris.tar.gz", "HYPERSERVE_CACHE_DIR": str(tmp_path / "cache")}
    server = start_server([], env=env)
    assert predicts(server)
    server.stop()
    assert file_server.gets == ["/iris.tar.gz", "/iris.tar.gz"]
    assert "incomplete" in server.output() and "trying again" in server.output()


# -- batch jobs through the same layer ---------------------------------------------------------

def test_batch_reads_and_writes_s3_and_azure(tmp_path, s3_server, azurite, sklearn_dir, iris_rows, expected):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", iris_rows[:100])
    write_jsonl(data / "b.jsonl", iris_rows[100:150])
    s3_upload(s3_server, "batch", "inputs", data)
    env = {**s3_env(s3_server), "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(azurite)}
    azure_upload(azurite, "results", "placeholder", tmp_path / "data")  # the container exists
    for output in ("s3://batch/results/job1", "az://results/job1"):
        args = (sklearn_dir, "--input", "s3://batch/inputs/*.jsonl", "--format", "jsonl", "--output", output,
                "--rows-per-shard", 60, "--cache-dir", tmp_path / "cache")
        assert summary_of(batch(*args, env=env))["shards"] == 3
        assert summary_of(batch(*args, env=env))["shards_skipped"] == 3  # committed once, skipped on a re-run
    client = s3_client(s3_server)
    names = sorted(o["Key"] for o in client.list_objects_v2(Bucket="batch", Prefix="results/job1/")["Contents"])
    lines = [json.loads(line) for name in names if "results-" in name
             for line in client.get_object(Bucket="batch", Key=name)["Body"].read().decode().splitlines()]
    assert [line["prediction"] for line in lines] == expected[:150]
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(azurite_connection_string(azurite)).get_container_client(
        "results")
    blobs = sorted(b.name for b in container.list_blobs(name_starts_with="job1/prediction.results-"))
    lines = [json.loads(line) for name in blobs for line in
             container.download_blob(name).readall().decode().splitlines()]
    assert [line["prediction"] for line in lines] == expected[:150]


def test_storage_test_servers_are_real(s3_server, azurite):
    """The emulators answer as the services do (so the tests above are not talking to a stub)."""
    assert "ListAllMyBucketsResult" in httpx.get(s3_server + "/").text
    assert httpx.get(azurite + "/devstoreaccount1?comp=list").headers["server"].startswith("Azurite-Blob/")
