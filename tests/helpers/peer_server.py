"""A peer server (Microsoft's azmlinfsrv, mlflow models serve) in a subprocess of its own session,
for the differential tests: started with its venv's environment, polled until a route answers 200."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


class PeerServer:
    def __init__(self, argv: list[str], venv: Path, ready_path: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        environment = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", **(env or {})}
        environment.pop("PYTHONPATH", None)  # the peer imports its own packages, not this checkout
        self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in argv], env=environment,
                                     cwd=str(cwd) if cwd else None, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """True once the ready route answers 200; False if the server exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.proc.args[0]} did not start:\n{self.output()}")

    def output(self) -> str:
        if self.proc.poll() is None:
            self.stop()
        return self.proc.stdout.read().decode(errors="replace")

    def stop(self) -> int:
        """SIGTERM to the whole session (mlflow runs uvicorn, azmlinfsrv gunicorn, as children)."""
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        return self.proc.wait()
