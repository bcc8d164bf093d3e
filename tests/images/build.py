"""The image build script, imported by path (scripts/ is not a package), and the selection of
images a test run builds: HYPERSERVE_IMAGE_TESTS (README, "Images")."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("build_images", ROOT / "scripts" / "build_images.py")
build_images = importlib.util.module_from_spec(_spec)
sys.modules["build_images"] = build_images
_spec.loader.exec_module(build_images)
buildah = build_images.buildah
MATRIX = build_images.load_matrix()
# CI builds and serves this one for real; HYPERSERVE_IMAGE_TESTS=all adds the rest of the matrix.
CI_IMAGE = "sklearn-cpu"


def selected(environ=os.environ) -> list[str]:
    """HYPERSERVE_IMAGE_TESTS: unset → sklearn-cpu; all, cpu, gpu, or comma-separated names;
    none → no image is built."""
    value = environ.get("HYPERSERVE_IMAGE_TESTS", "").strip() or CI_IMAGE
    if value == "none":
        return []
    return build_images.select([word.strip() for word in value.split(",")], MATRIX)


def readable_copy(path: Path) -> Path:
    """``path`` copied where the image's non-root user can read it (pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hyperserve-model-"))
    target = root / "model"
    if path.is_dir():
        shutil.copytree(path, target)
    else:
        target.mkdir()
        shutil.copy2(path, target / path.name)
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return target
