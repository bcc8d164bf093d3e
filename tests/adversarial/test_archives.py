"""Hostile model archives, served: traversal, links, a manifest naming files outside, a bomb.
Each is refused at load (health 503 with a short reason, the cause in the log, exit 1) and leaves
no extraction behind; a good archive's extraction is removed when the server stops."""

from __future__ import annotations

import json
import time
import zipfile

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.unit.test_torchserve_archive import make_zip

HANDLER = b"def handle(data, context):\n    return None if data is None else [len(data)] * len(data)\n"


def manifest(**model) -> str:
    return json.dumps({"model": {"modelName": "m", "handler": "h.py", **model}})


def write_mar(path, entries: dict, symlink: str | None = None, bomb: int = 0):
    make_zip(path, entries, symlink)
    if bomb:  # zeros that deflate about a thousandfold
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("weights.bin", "w") as out:
            for _ in range(bomb >> 20):
                out.write(b"\0" * (1 << 20))
    return path


HOSTILE = {
    "traversal": ({"MAR-INF/MANIFEST.json": manifest(), "h.py": HANDLER, "../evil.py": "x"}, {},
                  "would be written outside the model directory"),
    "absolute path": ({"MAR-INF/MANIFEST.json": manifest(), "h.py": HANDLER, "/tmp/evil.py": "x"}, {},
                      "would be written outside the model directory"),
    "symbolic link": ({"MAR-INF/MANIFEST.json": manifest(), "h.py": HANDLER}, {"symlink": "weights.bin"},
                      "is a symbolic link"),
    "manifest names a file outside": ({"MAR-INF/MANIFEST.json": manifest(configFile="../../../etc/passwd"),
                                       "h.py": HANDLER}, {}, "points outside the archive"),
    "manifest names an absolute path": ({"MAR-INF/MANIFEST.json": manifest(requirementsFile="/etc/passwd"),
                                         "h.py": HANDLER}, {}, "must be a path inside the archive"),
    "decompression bomb": ({"MAR-INF/MANIFEST.json": manifest(), "h.py": HANDLER}, {"bomb": 300 << 20},
                           "like a decompression bomb"),
}


def extractions(tmp) -> list:
    return [p for p in tmp.iterdir() if p.name.startswith("hyperserve-")]


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_is_refused_at_load_and_leaves_nothing(tmp_path, case):
    entries, extra, says = HOSTILE[case]
    model = tmp_path / "model"
    model.mkdir()
    write_mar(model / "m.mar", entries, **extra)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = ServerProcess([str(model), "--grpc-port", "0", "--load-failure-exit-delay", "2"],
                           env={"TMPDIR": str(tmp)}).wait_listening()
    deadline = time.monotonic() + 30
    reason = ""
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            r = httpx.get(server.url + "/health", timeout=2)
            reason = r.json().get("error", "")
            if "failed" in reason:
                assert r.status_code == 503 and str(tmp_path) not in reason  # short: no paths for clients
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    assert "load failed" in reason, reason
    assert server.proc.wait(30) == 1
    assert says in server.output(), server.output()[-3000:]
    assert extractions(tmp) == []


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_good_archive_is_served_and_its_extraction_removed_at_exit(tmp_path, isolation):
    model = tmp_path / "model"
    model.mkdir()
    write_mar(model / "m.mar", {"MAR-INF/MANIFEST.json": manifest(), "h.py": HANDLER})
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = ServerProcess([str(model), "--grpc-port", "0", "--isolation", isolation],
                           env={"TMPDIR": str(tmp)}).wait_ready()
    try:
        r = httpx.post(server.url + "/predictions/model", json={"instances": [1, 2, 3]})
        assert r.status_code == 200, r.text
        assert len(extractions(tmp)) >= 1  # the server's, or each model process's
    finally:
        assert server.stop() == 0, server.output()[-3000:]
    deadline = time.monotonic() + 5  # model processes finish their close as the server exits
    while extractions(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert extractions(tmp) == []
