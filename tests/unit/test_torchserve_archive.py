"""TorchServe archives without a server: safe extraction, manifest and handler resolution, the row codec."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile

import pytest

from hyperserve.handlers.torchserve import archive
from hyperserve.handlers.torchserve.handler import resolve_entry_point
from hyperserve.server.codecs import torchserve as codec
from hyperserve.server.errors import InvalidInput, ServingError

MANIFEST = json.dumps({"model": {"handler": "h.py", "serializedFile": "m.pt"}})


def make_zip(path, entries, symlink: str | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def make_tar(path, entries, link: tuple[str, str] | None = None):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tf.addfile(info)
    return path


@pytest.mark.parametrize("name", ["../escape.py", "a/../../escape.py", "/abs/escape.py"])
def test_zip_entries_outside_the_target_are_refused(tmp_path, name):
    evil = make_zip(tmp_path / "evil.mar", {"MAR-INF/MANIFEST.json": MANIFEST, name: "x"})
    with pytest.raises(archive.UnsafeArchive, match="would be written outside the model directory"):
        archive.extract(evil, tmp_path / "out")
    assert not list((tmp_path / "out").rglob("escape.py")) and not (tmp_path / "escape.py").exists()


def test_zip_symlinks_are_refused(tmp_path):
    evil = make_zip(tmp_path / "evil.mar", {"MAR-INF/MANIFEST.json": MANIFEST}, symlink="m.pt")
    with pytest.raises(archive.UnsafeArchive, match="'m.pt' is a symbolic link"):
        archive.extract(evil, tmp_path / "out")


def test_tar_traversal_and_links_are_refused(tmp_path):
    with pytest.raises(archive.UnsafeArchive, match="outside the model directory"):
        archive.extract(make_tar(tmp_path / "a.tar.gz", {"../x.py": b"x"}), tmp_path / "a")
    with pytest.raises(archive.UnsafeArchive, match="is a link"):
        archive.extract(make_tar(tmp_path / "b.tar.gz", {"MAR-INF/MANIFEST.json": MANIFEST.encode()},
                                 link=("m.pt", "/etc/passwd")), tmp_path / "b")


def test_a_tarball_of_a_directory_is_entered(tmp_path):
    model_dir = archive.extract(make_tar(tmp_path / "m.tar.gz", {"m/MAR-INF/MANIFEST.json": MANIFEST.encode(),
                                                                  "m/h.py": b""}), tmp_path / "out")
    assert model_dir == tmp_path / "out" / "m"
    assert archive.read_manifest(model_dir)["model"]["handler"] == "h.py"


def test_manifest_and_config_errors_are_clear(tmp_path):
    (tmp_path / "MAR-INF").mkdir()
    (tmp_path / "MAR-INF/MANIFEST.json").write_text("{")
    with pytest.raises(ServingError, match="MANIFEST.json is not valid JSON"):
        archive.read_manifest(tmp_path)
    with pytest.raises(ServingError, match="configFile 'c.yaml', which is not in the archive"):
        archive.read_yaml_config(tmp_path, {"model": {"configFile": "c.yaml"}})
    (tmp_path / "c.yaml").write_text("batchSize: 4\nmaxBatchDelay: 10\n")
    assert archive.read_yaml_config(tmp_path, {"model": {"configFile": "c.yaml"}}) == {"batchSize": 4,
                                                                                       "maxBatchDelay": 10}


def test_files_the_manifest_names_must_lie_inside_the_archive(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.yaml").write_text("batchSize: 99\n")
    (model_dir / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    for name, why in (("../secret.yaml", "points outside the archive"), (str(tmp_path / "secret.yaml"),
                      "must be a path inside the archive"), ("link.yaml", "points outside the archive")):
        with pytest.raises(ServingError, match=f"configFile .* {why}"):
            archive.read_yaml_config(model_dir, {"model": {"configFile": name}})
    with pytest.raises(ServingError, match="requirementsFile '../r.txt' points outside"):
        archive.member(model_dir, "../r.txt", "requirementsFile")
    assert archive.member(model_dir, "sub/../ok.txt", "requirementsFile") == model_dir / "sub/../ok.txt"


def write_module(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(source)
    import sys
    sys.path.insert(0, str(tmp_path))
    return tmp_path


def test_handler_resolution_follows_torchserve(tmp_path):
    write_module(tmp_path, "two_classes", "class A:\n    pass\nclass B:\n    pass\n")
    with pytest.raises(ServingError, match=r"exactly one class .* defines \['A', 'B'\]"):
        resolve_entry_point("two_classes.py", tmp_path)
    write_module(tmp_path, "one_class", "from collections import OrderedDict\nclass Only:\n"
                                        "    def initialize(self, ctx):\n        self.ready = True\n"
                                        "    def handle(self, data, ctx):\n        return data\n")
    handle, initialize, name = resolve_entry_point("one_class.py", tmp_path)  # imported classes do not count
    assert name == "one_class.Only" and handle([1], None) == [1]
    write_module(tmp_path, "fn", "def predict(data, ctx):\n    return None if data is None else [len(data)]\n")
    handle, initialize, name = resolve_entry_point("fn:predict", tmp_path)
    assert name == "fn:predict" and initialize(None) is None and handle([1, 2], None) == [2]
    with pytest.raises(ServingError, match="has no function 'nope'"):
        resolve_entry_point("fn:nope", tmp_path)


def test_built_in_handler_names_come_from_torchserve(tmp_path):
    pytest.importorskip("ts", reason="needs the torchserve package (pip install 'hyperserve[torchserve]')")
    pytest.importorskip("torch", reason="TorchServe's built-in handlers import torch")
    handle, initialize, name = resolve_entry_point("base_handler", tmp_path)
    assert name == "ts.torch_handler.base_handler.BaseHandler"


# -- the row codec --------------------------------------------------------------------------

def test_instances_become_rows_with_b64_fields_decoded():
    rows, parameters = codec.instance_rows(
        b'{"instances": [{"data": {"b64": "aGk="}, "k": "v"}, {"b64": "aGk="}, "text", [1, 2]],'
        b' "parameters": {"p": 1}}')
    assert rows == [{"data": b"hi", "k": "v"}, b"hi", "text", [1, 2]] and parameters == {"p": 1}


@pytest.mark.parametrize("body, message", [
    (b'{"inputs": [1]}', "this model takes the row format"),
    (b'{"instances": []}', "'instances' must not be empty"),
    (b'{"instances": [{"data": {"b64": "a"}}]}', "instances[0].data.b64:"),
    (b'{"instances": [{"data": 1, "data": 2}]}', "duplicate key 'data'"),
])
def test_row_errors_name_the_path(body, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        codec.instance_rows(body)


def test_raw_bodies_become_one_row_typed_by_content_type():
    assert codec.body_rows(b'{"a": [1]}', "application/json") == [{"body": {"a": [1]}}]
    assert codec.body_rows("é".encode(), "text/plain; charset=utf-8") == [{"body": "é"}]
    assert codec.body_rows(memoryview(b"\x89PNG"), "image/png") == [{"body": b"\x89PNG"}]
    with pytest.raises(InvalidInput, match="body: a text/plain value is not valid UTF-8"):
        codec.body_rows(b"\xff", "text/plain")
    with pytest.raises(InvalidInput, match="malformed multipart"):
        codec.body_rows(b"--x\r\n", "multipart/form-data")


def test_outputs_are_encoded_as_torchserve_does():
    import numpy as np

    assert codec.encode_item(b"\x00") == (b"\x00", "application/octet-stream")
    assert codec.encode_item("é") == ("é".encode(), "text/plain; charset=utf-8")
    assert codec.encode_item({"a": np.arange(2)}) == (b'{"a":[0,1]}', "application/json")
    assert codec.encode_item([1], "application/x-custom") == (b"[1]", "application/x-custom")
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        codec.encode_item(object())
    assert codec.predictions_body([np.float32(1.5), b"\xff", "s"]) == b'{"predictions":[1.5,{"b64":"/w=="},"s"]}'


def _zip_bomb(path, size: int):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("MAR-INF/MANIFEST.json", MANIFEST)
        with zf.open("m.pt", "w") as out:
            chunk = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                out.write(chunk)
    return path


def _tar_bomb(path, size: int):
    import gzip
    import os

    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        info = tarfile.TarInfo("m.pt")
        info.size = size
        gz.write(info.tobuf())
        chunk = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            gz.write(chunk)
        gz.write(b"\0" * (-size % 512 + 1024))
    assert os.path.getsize(path) < size // 100
    return path


@pytest.mark.parametrize("make", [_zip_bomb, _tar_bomb], ids=["zip", "tar.gz"])
def test_a_decompression_bomb_is_refused_and_leaves_nothing(tmp_path, make, monkeypatch):
    """A small archive unpacking to hundreds of times its size (here 200 MB from a few hundred KB)
    is refused while unpacking, and its temporary directory is removed."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bomb = make(tmp_path / "bomb.mar", 200 << 20)
    with pytest.raises(archive.UnsafeArchive, match="times its size .* like a decompression bomb"):
        archive.extract(bomb)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_unpacked_size_limit_is_refused_by_bytes_written(tmp_path):
    """--max-archive-bytes counts what is written, whatever the headers declare."""
    plain = make_zip(tmp_path / "big.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "m.pt": b"x" * 5000})
    with pytest.raises(archive.UnsafeArchive, match=r"more than 4096 bytes \(--max-archive-bytes\)"):
        archive.extract(plain, tmp_path / "out", max_bytes=4096)
    assert list((tmp_path / "out").iterdir()) == []
    assert archive.extract(plain, tmp_path / "ok", max_bytes=1 << 20) == tmp_path / "ok"


def test_an_extraction_is_removed_when_the_model_is_done_with_it(tmp_path):
    good = make_zip(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": MANIFEST, "m.pt": b"x"})
    model_dir = archive.extract(good)
    assert (model_dir / "m.pt").is_file()
    archive.remove_extracted(model_dir)
    assert not model_dir.exists()
