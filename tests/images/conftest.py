"""Images built from this checkout by scripts/build-images.sh, once per test session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import pytest

from tests.conftest import ROOT
from tests.images.build import MATRIX, build_images

_built: dict[str, str] = {}


@pytest.fixture(scope="session")
def build_image():
    """build_image(name) → the image's reference, built (or found cached) with buildah."""
    if not shutil.which("buildah"):
        pytest.fail("the image tests need buildah (scripts/test.sh installs it with apt-get)")
    if os.geteuid() != 0:
        pytest.fail("the image tests run buildah with chroot isolation, which needs root")

    def build(name: str) -> str:
        ref = MATRIX[name].reference(build_images.hyperserve_version())
        # HYPERSERVE_IMAGE_REUSE=1: test the images scripts/build-images.sh already built, as they are.
        if os.environ.get("HYPERSERVE_IMAGE_REUSE") == "1" and build_images.Buildah().exists(ref):
            _built[name] = ref
        if name not in _built:
            command = ["bash", str(ROOT / "scripts" / "build-images.sh"), "--builder", "buildah", "--no-results", name]
            result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            if result.returncode != 0:
                pytest.fail(f"building {name} failed:\n{result.stderr[-6000:]}")
            _built[name] = ref
        return _built[name]

    return build


class GatedProxy:
    """A TCP proxy that holds every connection until ``open()``: a storage server that is slow
    to answer, so a test sees the container while its artifacts are still downloading."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.gate = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def open(self):
        self.gate.set()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        self.gate.wait()
        upstream = socket.create_connection(self.target)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.gate.set()
        self.listener.close()
