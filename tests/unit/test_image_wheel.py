"""The wheel every image installs, built from exactly the files scripts/build-images.sh stages,
imports every module the entrypoint can reach (the first Dockerfile's image died on
`ModuleNotFoundError: No module named 'hyperserve.bench'`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.images.build import build_images

pytestmark = pytest.mark.timeout(900)

# Imports what `hyperserve` can load: every module of the server and the handlers (frameworks are
# all installed in the test environment), then the entrypoint itself.
CHECK = """
import importlib, pkgutil, sys
import hyperserve
assert hyperserve.__path__[0].startswith(sys.argv[1]), hyperserve.__path__
import hyperserve.server, hyperserve.handlers
for package in (hyperserve.server, hyperserve.handlers):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.endswith(".__main__"):  # that one runs the command
            importlib.import_module(module.name)
from hyperserve.server.cli import main
for command in (["serve", "--help"], ["inspect", "--help"], ["bench", "--help"]):
    try:
        main(command)
    except SystemExit as done:
        assert done.code == 0, (command, done.code)
"""


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    wheel = build_images.hyperserve_wheel()
    site = tmp_path_factory.mktemp("wheel-site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def check_imports(site) -> subprocess.CompletedProcess:
    """The check in a Python that sees the unpacked wheel and the frameworks, not this checkout:
    -S skips site-packages' .pth files, which is where the editable install's redirect lives."""
    frameworks = sysconfig.get_paths()["purelib"]
    return subprocess.run([sys.executable, "-S", "-c", CHECK, str(site)], capture_output=True, text=True,
                          cwd=site, env={"PYTHONPATH": f"{site}:{frameworks}", "PATH": "/usr/bin:/bin"}, timeout=300)


def test_copy_set_is_what_pyproject_puts_in_the_wheel():
    wanted = {"server", "handlers", "bench", "cpp_ext", "pyproject.toml", "CMakeLists.txt"}
    assert wanted <= set(build_images.copy_set())


def test_wheel_from_the_copy_set_imports_everything_the_entrypoint_needs(unpacked):
    assert list(unpacked.glob("hyperserve/_native*.so")), "the compiled extension is in the wheel"
    result = check_imports(unpacked)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "usage: hyperserve serve" in result.stdout


def test_the_check_fails_on_a_wheel_without_the_bench_package(unpacked, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(unpacked, broken, ignore=shutil.ignore_patterns("bench"))
    result = check_imports(broken)
    assert result.returncode != 0
    assert "No module named 'hyperserve.bench'" in result.stderr
