"""TorchServe model archives: ``.mar`` (ZIP), ``.tar.gz`` or a directory, with MAR-INF/MANIFEST.json.

Extraction refuses an archive with an entry that would land outside the target directory
(absolute paths, ``..``) or that is a link or a device, instead of skipping it.
"""

from __future__ import annotations

import json
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from hyperserve.server.errors import ServingError

MANIFEST = PurePosixPath("MAR-INF/MANIFEST.json")
ARCHIVE_SUFFIXES = (".mar", ".tar.gz", ".tgz", ".tar")


class UnsafeArchive(ServingError):
    pass


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def _check_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        raise UnsafeArchive(f"refusing {archive.name}: entry {name!r} would be written outside the model directory")


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchive(f"refusing {archive.name}: entry {info.filename!r} is a symbolic link")
        zf.extractall(dest)


def _extract_tar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            _check_name(archive, member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchive(f"refusing {archive.name}: entry {member.name!r} is a link")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"refusing {archive.name}: entry {member.name!r} is not a file or directory")
        tf.extractall(dest, members=members, filter="data")


def extract(archive: Path, dest: Path | None = None) -> Path:
    """Unpack an archive into ``dest`` (a new temporary directory by default); returns the model dir."""
    dest = Path(dest or tempfile.mkdtemp(prefix=f"hyperserve-{archive.name.split('.')[0]}-"))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest)
        else:
            raise ServingError(f"{archive.name} is neither a ZIP (.mar) nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as err:
        raise ServingError(f"cannot extract {archive.name}: {err}") from err
    # A tarball made of a directory holds that directory: step into it.
    entries = [p for p in dest.iterdir()]
    if not (dest / MANIFEST).is_file() and len(entries) == 1 and is_model_dir(entries[0]):
        return entries[0]
    return dest


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST
    if not path.is_file():
        return {"model": {}}  # TorchServe accepts a legacy archive without one; the handler then comes from config
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ServingError(f"{MANIFEST} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("model", {}), dict):
        raise ServingError(f"{MANIFEST} must be an object with a 'model' object")
    manifest.setdefault("model", {})
    return manifest


def member(model_dir: Path, name: str, field: str) -> Path:
    """A file the manifest names, which must lie inside the archive: an absolute path or one that
    leaves the model directory (``../``, or a link pointing out) is refused, as such entries are
    when unpacking."""
    if not isinstance(name, str) or Path(name).is_absolute():
        raise ServingError(f"the manifest's {field} {name!r} must be a path inside the archive")
    path = model_dir / name
    if not path.resolve().is_relative_to(model_dir.resolve()):
        raise ServingError(f"the manifest's {field} {name!r} points outside the archive; refused")
    return path


def read_yaml_config(model_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The archive's model-config.yaml (``configFile``): batchSize, maxBatchDelay, handler settings."""
    name = manifest["model"].get("configFile")
    if not name:
        return {}
    path = member(model_dir, name, "configFile")
    if not path.is_file():
        raise ServingError(f"the manifest names configFile {name!r}, which is not in the archive")
    try:
        import yaml
    except ImportError as err:
        raise ServingError("this archive has a model-config.yaml, which needs PyYAML (pip install pyyaml)") from err
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ServingError(f"{name} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ServingError(f"{name} must be a mapping")
    return config
