"""TorchServe model archives: ``.mar`` (ZIP), ``.tar.gz`` or a directory, with MAR-INF/MANIFEST.json.

Extraction refuses an archive with an entry that would land outside the target directory
(absolute paths, ``..``) or that is a link or a device, instead of skipping it, and one that
unpacks to more than --max-archive-bytes or, like a decompression bomb, to hundreds of times its
own size. Refused, it leaves nothing behind; served, its directory goes when the model closes.
"""

from __future__ import annotations

import atexit
import json
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

from hyperserve.server.errors import ServingError

MANIFEST = PurePosixPath("MAR-INF/MANIFEST.json")
ARCHIVE_SUFFIXES = (".mar", ".tar.gz", ".tgz", ".tar")
DEFAULT_MAX_ARCHIVE_BYTES = 32 * 1024**3
MAX_RATIO = 200
RATIO_FREE_BYTES = 64 * 1024**2
_CHUNK = 1024 * 1024


class UnsafeArchive(ServingError):
    pass


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def _check_name(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        raise UnsafeArchive(f"refusing {archive.name}: entry {name!r} would be written outside the model directory")


class _Budget:
    """The bytes an archive may unpack to: at most ``max_bytes``, and beyond the first
    RATIO_FREE_BYTES at most MAX_RATIO times the archive's own size (a bomb's ratio is in the
    thousands; model weights barely compress). Counted as bytes are written, so that headers that
    lie about sizes change nothing."""

    def __init__(self, archive: Path, max_bytes: int):
        self.archive = archive
        self.limit = min(max_bytes, max(RATIO_FREE_BYTES, MAX_RATIO * archive.stat().st_size))
        self.max_bytes = max_bytes
        self.spent = 0

    def spend(self, count: int) -> None:
        self.spent += count
        self.check(self.spent)

    def check(self, total: int) -> None:
        if total > self.limit:
            if total > self.max_bytes:
                raise UnsafeArchive(f"refusing {self.archive.name}: it unpacks to more than {self.max_bytes} bytes "
                                    "(--max-archive-bytes)")
            raise UnsafeArchive(f"refusing {self.archive.name}: it unpacks to more than {MAX_RATIO} times its "
                                f"size of {self.archive.stat().st_size} bytes, like a decompression bomb")


def _write_member(source: IO[bytes], target: Path, budget: _Budget) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        while True:
            chunk = source.read(_CHUNK)
            if not chunk:
                return
            budget.spend(len(chunk))
            out.write(chunk)


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # every entry is checked before anything is written
            _check_name(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"refusing {archive.name}: entry {info.filename!r} is a symbolic link")
        budget.check(sum(info.file_size for info in infos))  # what the headers declare, first
        for info in infos:
            target = dest / info.filename
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as source:
                _write_member(source, target, budget)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    declared = 0
    with tarfile.open(archive) as tf:
        for member in tf:  # streamed: a bomb is refused at the entry that crosses the budget
            _check_name(archive, member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchive(f"refusing {archive.name}: entry {member.name!r} is a link")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"refusing {archive.name}: entry {member.name!r} is not a file or directory")
            declared += member.size
            budget.check(declared)
            target = dest / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            source = tf.extractfile(member)
            with source:
                _write_member(source, target, budget)


def extract(archive: Path, dest: Path | None = None, max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES) -> Path:
    """Unpack an archive into ``dest`` (a new temporary directory by default) and return the
    model directory inside it. Refused or failed, nothing is left behind; the caller removes a
    successful extraction with ``remove_extracted`` when it is done with the model."""
    made = dest is None
    dest = Path(dest or tempfile.mkdtemp(prefix=f"hyperserve-{archive.name.split('.')[0]}-"))
    dest.mkdir(parents=True, exist_ok=True)
    try:
        budget = _Budget(archive, max_bytes)
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, budget)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, budget)
        else:
            raise ServingError(f"{archive.name} is neither a ZIP (.mar) nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as err:
        _discard(dest, made)
        raise ServingError(f"cannot extract {archive.name}: {err}") from err
    except BaseException:
        _discard(dest, made)
        raise
    # A tarball made of a directory holds that directory: step into it.
    entries = [p for p in dest.iterdir()]
    if not (dest / MANIFEST).is_file() and len(entries) == 1 and is_model_dir(entries[0]):
        model_dir = entries[0]
    else:
        model_dir = dest
    if made:
        _extracted[model_dir] = dest
    return model_dir


def _discard(dest: Path, made: bool) -> None:
    if made:
        shutil.rmtree(dest, ignore_errors=True)
    else:
        for entry in dest.iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


# model dir → the temporary directory extract() made for it, removed when the model is closed or,
# at the latest, when the process exits
_extracted: dict[Path, Path] = {}


def remove_extracted(model_dir: Path) -> None:
    dest = _extracted.pop(model_dir, None)
    if dest is not None:
        shutil.rmtree(dest, ignore_errors=True)


@atexit.register
def _remove_all_extracted() -> None:
    for model_dir in list(_extracted):
        remove_extracted(model_dir)


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
