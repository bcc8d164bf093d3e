"""Run a built image as a platform would: its own entrypoint, user and environment, plus only
the variables the platform sets. With buildah's chroot isolation the container shares the host's
network, so its server is reached on 127.0.0.1.

`buildah run` does not pass signals on (it kills its child), so SIGTERM goes straight to the
image's init process, the way a container runtime delivers it to PID 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.images.build import buildah


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _status(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def image_config(ref: str) -> dict:
    return json.loads(subprocess.run(buildah("inspect", "--type", "image", ref), check=True,
                                     capture_output=True, text=True).stdout)["OCIv1"]["config"]


def run_in_image(ref: str, argv: list[str]) -> str:
    """stdout of one command in a fresh container of ``ref`` (as its user)."""
    container = subprocess.run(buildah("from", "--pull-never", "--quiet", ref), check=True, capture_output=True,
                               text=True).stdout.strip()
    try:
        user = image_config(ref).get("User") or "0"
        return subprocess.run(buildah("run", "--isolation", "chroot", "--user", user, container, "--", *argv),
                              check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    finally:
        subprocess.run(buildah("rm", container), capture_output=True)


class ImageRun:
    """One container of ``ref``: ``args`` replace the image's CMD (as `docker run IMAGE args`)."""

    def __init__(self, ref: str, port: int, env: dict[str, str] | None = None, args: list[str] | None = None,
                 volumes: dict[str, str] | None = None):
        config = image_config(ref)
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # The container shares the host's network: its gRPC port (8081 by default) gets a free one too.
        env = {"HYPERSERVE_GRPC_PORT": str(free_port()), **(env or {})}
        self.grpc_port = int(env["HYPERSERVE_GRPC_PORT"])
        argv = list(config.get("Entrypoint") or []) + list(args if args is not None else config.get("Cmd") or [])
        self.container = subprocess.run(buildah("from", "--pull-never", "--quiet", ref), check=True,
                                        capture_output=True, text=True).stdout.strip()
        command = buildah("run", "--isolation", "chroot", "--user", config.get("User") or "0")
        for key, value in env.items():
            command += ["--env", f"{key}={value}"]
        for host, inside in (volumes or {}).items():
            command += ["-v", f"{host}:{inside}:ro"]
        self.log = tempfile.NamedTemporaryFile(prefix="image-run-", suffix=".log", delete=False)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*command, self.container, "--", *argv], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def init_pid(self) -> int:
        """The image's entrypoint process (tini), found under buildah's runtime."""
        deadline = time.monotonic() + 30
        entry = (self.config.get("Entrypoint") or [""])[0]
        while time.monotonic() < deadline:
            for pid in descendants(self.proc.pid):
                if _cmdline(pid)[:1] == [entry]:
                    return pid
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no {entry} process in the container:\n{self.output()}")

    def server_pids(self) -> list[int]:
        """The init process and everything under it: the server, its workers."""
        init = self.init_pid()
        return [init, *descendants(init)]

    def uids(self) -> set[str]:
        return {_status(pid, "Uid").split()[0] for pid in self.server_pids()}

    def rss_bytes(self) -> int:
        return sum(int(_status(pid, "VmRSS").split()[0]) * 1024 for pid in self.server_pids())

    def process_age(self) -> float:
        """Seconds since the image's init process started (the kernel's start time, 10 ms steps):
        the container runtime's own set-up before it is not counted."""
        ticks = int(Path(f"/proc/{self.init_pid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")

    def wait_status(self, route: str, status: int = 200, timeout: float = 120.0) -> float:
        """Seconds from the container's start until ``route`` answered ``status``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the container exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + route, timeout=2).status_code == status:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{route} did not answer {status} within {timeout}s:\n{self.output()}")

    def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM to the image's init, as a runtime stops a container: (exit status, seconds)."""
        started = time.monotonic()
        os.kill(self.init_pid(), signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def remove(self) -> None:
        if self.proc.poll() is None:
            for pid in reversed(descendants(self.proc.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(30)
        subprocess.run(buildah("rm", self.container), capture_output=True)
        os.unlink(self.log.name)
