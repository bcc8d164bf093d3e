"""Build hyperserve's prebuilt images (containers/images.toml) from this checkout.

Each image is containers/Containerfile built over a wheelhouse made here on the host: hyperserve's
own wheel (its extension compiled from this checkout) plus the image's pinned frameworks. The image
installs only from that wheelhouse, so its build never touches the network. The builder is Docker
when an engine answers, else buildah (vfs storage, chroot isolation: no daemon). The base is
python:3.11-slim-bookworm where a registry answers, else a Debian base made with debootstrap
(containers/base/). Everything is cached under build/images/ of this checkout.

Run it as ``scripts/build-images.sh [NAME...|all] [options]``.
"""

from __future__ import annotations

import abc
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "containers" / "images.toml"
CONTAINERFILE = ROOT / "containers" / "Containerfile"
BASE_DIR = ROOT / "containers" / "base"
WORK = ROOT / "build" / "images"
REPOSITORY = "hyperserve"  # image names are hyperserve/<name>:<tag>
REGISTRY_BASE = "docker.io/library/python:3.11-slim-bookworm"
IMAGE_PYTHON = (3, 11)  # Debian bookworm's, and python:3.11-slim's
# Files the staged source never needs (caches, results, peers' virtualenvs).
SOURCE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "results", ".venvs", ".work", ".benchmarks")


@dataclass(frozen=True)
class Image:
    name: str
    title: str
    device: str
    framework: str
    requirements: tuple[str, ...]
    trim: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    pip: bool = False
    target_mb: int = 0

    @property
    def framework_version(self) -> str:
        """major.minor of the framework's pin, as Vertex's image tags carry it."""
        pattern = re.compile(rf"^{re.escape(self.framework)}(\[[^\]]*\])?==(\d+)\.(\d+)")
        for line in self.requirements:
            match = pattern.match(line)
            if match:
                return f"{match.group(2)}.{match.group(3)}"
        raise SystemExit(f"{MATRIX.name}: image {self.name} pins no version of its framework {self.framework}")

    def reference(self, version: str) -> str:
        return f"{REPOSITORY}/{self.name}:{version}-{self.framework_version}"


def load_matrix(path: Path = MATRIX) -> dict[str, Image]:
    images = {}
    for name, entry in tomllib.loads(path.read_text())["images"].items():
        images[name] = Image(name=name, title=entry["title"], device=entry["device"], framework=entry["framework"],
                             requirements=tuple(entry["requirements"]), trim=tuple(entry.get("trim", ())),
                             examples=tuple(entry.get("examples", ())), pip=bool(entry.get("pip", False)),
                             target_mb=int(entry.get("target_mb", 0)))
        if images[name].device not in ("cpu", "gpu"):
            raise SystemExit(f"{path.name}: image {name}: device must be cpu or gpu")
    return images


def select(words: list[str], matrix: dict[str, Image]) -> list[str]:
    """Image names from words: a name, all, or a device (cpu, gpu)."""
    names = []
    for word in words:
        if word == "all":
            names += list(matrix)
        elif word in ("cpu", "gpu"):
            names += [n for n, image in matrix.items() if image.device == word]
        elif word in matrix:
            names.append(word)
        else:
            raise ValueError(f"no image {word!r}: the matrix has {', '.join(matrix)}")
    return list(dict.fromkeys(names))


def hyperserve_version() -> str:
    text = (ROOT / "server" / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


# -- hyperserve's wheel ------------------------------------------------------------------------

def copy_set() -> list[str]:
    """What the wheel is built from: the build files and every package pyproject.toml maps into
    the wheel, so the wheel holds exactly what the installed entry point imports."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["scikit-build"]["wheel"]["packages"].values()
    return ["pyproject.toml", "CMakeLists.txt", "README.md", "cpp_ext", *packages]


def stage_source(dest: Path, paths: list[str] | None = None) -> Path:
    for rel in paths or copy_set():
        src = ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=SOURCE_IGNORE)
        else:
            shutil.copy2(src, dest / rel)
    return dest


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_wheel(source: Path, out: Path, python: str = sys.executable) -> Path:
    """``pip wheel`` of a staged source tree: hyperserve with its compiled extension."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(partial), str(source)])
    wheels = list(partial.glob("hyperserve-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"pip wheel made {len(wheels)} hyperserve wheels in {partial}")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out / wheels[0].name


def hyperserve_wheel(work: Path = WORK) -> Path:
    """The wheel of this checkout's copy set, built once per content."""
    with tempfile.TemporaryDirectory(prefix="hyperserve-src-") as tmp:
        source = stage_source(Path(tmp))
        out = work / "hyperserve-wheel" / tree_digest(source)[:16]
        existing = list(out.glob("hyperserve-*.whl"))
        if existing:
            return existing[0]
        log(f"building hyperserve's wheel from {', '.join(copy_set())}")
        return build_wheel(source, out)


# -- wheelhouses ---------------------------------------------------------------------------------

def requirement_lines(image: Image, wheel: Path | None, version: str) -> list[str]:
    """The image's requirements with hyperserve pinned: to the wheel file for `pip wheel` here,
    to its version for the install inside the image (which sees only the wheelhouse)."""
    lines = []
    for line in image.requirements:
        if line.startswith("hyperserve"):
            line = f"{line} @ {wheel.resolve().as_uri()}" if wheel else f"{line}=={version}"
        lines.append(line)
    return lines


def wheelhouse(image: Image, wheel: Path, version: str, work: Path = WORK) -> Path:
    """work/<image>/wheels: every wheel the image installs, and its requirements.txt."""
    context = work / image.name
    wheels = context / "wheels"
    pip_lines = requirement_lines(image, wheel, version)
    stamp = hashlib.sha256("\n".join([wheel.parent.name, *pip_lines]).encode()).hexdigest()
    if (context / "stamp").exists() and (context / "stamp").read_text() == stamp:
        return context
    shutil.rmtree(context, ignore_errors=True)
    wheels.mkdir(parents=True)
    log(f"{image.name}: wheelhouse for {' '.join(image.requirements)}")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), *pip_lines])
    (wheels / "requirements.txt").write_text("\n".join(requirement_lines(image, None, version)) + "\n")
    (context / "stamp").write_text(stamp)
    return context


# -- builders ------------------------------------------------------------------------------------

class Builder(abc.ABC):
    name = ""

    @abc.abstractmethod
    def build(self, containerfile: Path, context: Path, tag: str, args: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def exists(self, ref: str) -> bool: ...

    @abc.abstractmethod
    def pull(self, ref: str, timeout: float) -> bool: ...

    @abc.abstractmethod
    def size(self, ref: str) -> int:
        """Uncompressed bytes."""

    @abc.abstractmethod
    def export(self, ref: str, path: Path) -> None:
        """A compressed archive of the image at ``path``."""

    @abc.abstractmethod
    def prune(self) -> None:
        """Remove dangling images (the install stages the layer cache keeps)."""


class Docker(Builder):
    name = "docker"

    def build(self, containerfile, context, tag, args):
        run(["docker", "build", "-f", str(containerfile), "-t", tag,
             *[f"--build-arg={k}={v}" for k, v in args.items()], str(context)])

    def exists(self, ref):
        return quiet(["docker", "image", "inspect", ref])

    def pull(self, ref, timeout):
        return quiet(["docker", "pull", "-q", ref], timeout)

    def size(self, ref):
        return int(output(["docker", "image", "inspect", "-f", "{{.Size}}", ref]))

    def export(self, ref, path):
        with open(path, "wb") as out:
            save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-6"], stdin=save.stdout, stdout=out, check=True)
            if save.wait() != 0:
                raise SystemExit(f"docker save {ref} failed")

    def prune(self):
        if not quiet(["docker", "image", "prune", "-f"]):
            log("docker image prune failed")


def buildah(*args: str) -> list[str]:
    """A buildah command line. Daemonless: vfs storage and chroot isolation work as root with no
    kernel overlay or user namespaces, which is what a CI machine or a build container offers;
    HYPERSERVE_BUILDAH_STORAGE=overlay is faster where the kernel allows it. HYPERSERVE_BUILDAH_ROOT
    keeps the image store in a directory of its own (scripts/test.sh: inside the checkout) instead
    of the machine's."""
    store = os.environ.get("HYPERSERVE_BUILDAH_ROOT")
    where = ["--root", store, "--runroot", store + "-run"] if store else []
    return ["buildah", *where, "--storage-driver", os.environ.get("HYPERSERVE_BUILDAH_STORAGE", "vfs"), *args]


class Buildah(Builder):
    name = "buildah"

    def build(self, containerfile, context, tag, args):
        run(buildah("bud", "--quiet", "--layers", "--isolation", "chroot", "--format", "oci",
                    "-f", str(containerfile), "-t", tag, *[f"--build-arg={k}={v}" for k, v in args.items()],
                    str(context)))

    def exists(self, ref):
        return quiet(buildah("inspect", "--type", "image", ref))

    def pull(self, ref, timeout):
        return quiet(buildah("pull", "--quiet", ref), timeout)

    def size(self, ref):
        """Bytes of the image's file system, as `du` counts them in a container made from it."""
        container = output(buildah("from", "--pull-never", "--quiet", ref))
        try:
            mount = output(buildah("mount", container))
            return int(output(["du", "-sb", "--apparent-size", mount]).split()[0])
        finally:
            quiet(buildah("rm", container))

    def export(self, ref, path):
        run(buildah("push", "--quiet", ref, f"oci-archive:{path}:{ref.rsplit('/', 1)[-1]}"))

    def prune(self):
        if not quiet(buildah("rmi", "--prune")):
            log("could not remove every dangling image (one is in use by a container); `buildah containers` lists them")


def find_builder(choice: str = "auto") -> Builder:
    if choice in ("auto", "docker") and shutil.which("docker") and quiet(["docker", "info"], 20):
        return Docker()
    if choice in ("auto", "buildah") and shutil.which("buildah"):
        return Buildah()
    raise SystemExit("no image builder: neither a Docker engine answers nor is buildah installed "
                     "(apt-get install buildah; scripts/test.sh does this)")


def base_image(builder: Builder, choice: str, work: Path = WORK) -> str:
    """The base: an image reference, or 'auto' (the registry's Python image, else Debian's) or
    'debootstrap'."""
    if choice not in ("auto", "debootstrap"):
        return choice
    if choice == "auto":
        if builder.exists(REGISTRY_BASE) or builder.pull(REGISTRY_BASE, 60):
            return REGISTRY_BASE
        log(f"no registry answers for {REGISTRY_BASE}: using a Debian base made with debootstrap")
    script = BASE_DIR / "make-rootfs.sh"
    key = hashlib.sha256(script.read_bytes() + (BASE_DIR / "Containerfile").read_bytes()).hexdigest()[:12]
    ref = f"localhost/hyperserve-base:bookworm-{key}"
    if builder.exists(ref):
        return ref
    context = work / "base" / key
    rootfs = context / "rootfs.tar"
    if not rootfs.exists():
        if not shutil.which("debootstrap"):
            raise SystemExit("the Debian base needs debootstrap (apt-get install debootstrap)")
        context.mkdir(parents=True, exist_ok=True)
        log("making the Debian base with debootstrap (once; cached in build/images/base)")
        run(["bash", str(script), str(rootfs)])
    builder.build(BASE_DIR / "Containerfile", context, ref, {})
    return ref


# -- the build -----------------------------------------------------------------------------------

@dataclass
class Built:
    name: str
    reference: str
    builder: str
    base: str
    size_bytes: int
    wheelhouse_seconds: float
    build_seconds: float
    archive: str = ""
    archive_bytes: int = 0
    extra: dict = field(default_factory=dict)


def git(*args: str) -> str:
    try:
        return output(["git", "-C", str(ROOT), *args])
    except (subprocess.CalledProcessError, FileNotFoundError):
        return ""


def labels(image: Image, version: str, source: str) -> dict[str, str]:
    revision = git("rev-parse", "HEAD")
    if revision and git("status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    return {"IMAGE_NAME": image.name, "IMAGE_TITLE": f"hyperserve: {image.title}", "VERSION": version,
            "REVISION": revision, "SOURCE": source or git("remote", "get-url", "origin"),
            # The commit's time, not the build's: the same checkout makes the same labels.
            "CREATED": git("show", "-s", "--format=%cI", "HEAD")}


def build_image(image: Image, builder: Builder, base: str, wheel: Path, version: str, source: str = "",
                archive_dir: Path | None = None, work: Path = WORK) -> Built:
    started = time.monotonic()
    context = wheelhouse(image, wheel, version, work)
    wheelhouse_seconds = time.monotonic() - started
    ref = image.reference(version)
    args = {"BASE": base, "TRIM": " ".join(image.trim), "KEEP_PIP": "1" if image.pip else "",
            **labels(image, version, source)}
    if image.device == "gpu":
        args.update(NVIDIA_VISIBLE_DEVICES="all", NVIDIA_DRIVER_CAPABILITIES="compute,utility")
    log(f"{image.name}: building {ref} with {builder.name} on {base}")
    started = time.monotonic()
    builder.build(CONTAINERFILE, context, ref, args)
    built = Built(image.name, ref, builder.name, base, builder.size(ref), round(wheelhouse_seconds, 1),
                  round(time.monotonic() - started, 1))
    if archive_dir is not None:
        archive_dir.mkdir(parents=True, exist_ok=True)
        path = archive_dir / f"{image.name}.oci.tar"
        builder.export(ref, path)
        built.archive, built.archive_bytes = str(path), path.stat().st_size
    return built


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n else "-"


def report(results: list[Built]) -> str:
    lines = ["| image | reference | size | compressed | wheelhouse s | build s |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | `{r.reference}` | {mb(r.size_bytes)} | {mb(r.archive_bytes)} | "
                     f"{r.wheelhouse_seconds} | {r.build_seconds} |")
    return "\n".join(lines)


def save_results(results: list[Built], path: Path) -> None:
    known = json.loads(path.read_text()) if path.exists() else {}
    known.update({r.name: r.__dict__ for r in results})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2, sort_keys=True))


# Published sizes of the peers' images, for the report's comparison line (not measured here).
PEER_SIZES = ("MLServer's sklearn image 0.93 GB (its full image 3.74 GB), KServe's PyTorch CPU image 1.83 GB, "
              "Seldon's Python image 1.9 GB, MLflow's generated sklearn image just under 1 GB, Triton 8–16 GB")


def images_report(matrix: dict[str, Image], work: Path = WORK) -> str:
    """The images table: build results (results.json) with the smoke runs of tests/images/
    (smoke.json: time to health 200 and idle RSS, per example model)."""
    built = json.loads((work / "results.json").read_text()) if (work / "results.json").exists() else {}
    smoke = json.loads((work / "smoke.json").read_text()) if (work / "smoke.json").exists() else {}
    lines = ["| image | uncompressed | target | compressed (OCI, gzip) | build s (wheelhouse + image) | "
             "ready s (process start → health 200, per example) | idle RSS |", "|---|---|---|---|---|---|---|"]
    for name, image in matrix.items():
        if name not in built:
            continue
        b = built[name]
        runs = smoke.get(name, {})
        target = f"≤ {image.target_mb:,} MB {'met' if b['size_bytes'] <= image.target_mb * 1e6 else 'NOT met'}" \
            if image.target_mb else "-"
        ready = ", ".join(f"{example} {r['ready_seconds']}" for example, r in runs.items()) or "not run"
        rss = ", ".join(f"{example} {mb(r['idle_rss_bytes'])} ({r['processes']} processes)"
                        for example, r in runs.items()) or "-"
        lines.append(f"| `{b['reference']}` | {mb(b['size_bytes'])} | {target} | {mb(b.get('archive_bytes', 0))} | "
                     f"{b['wheelhouse_seconds']} + {b['build_seconds']} | {ready} | {rss} |")
    return (f"Measured on {machine()}, {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(lines)
            + f"\n\nPeers (published sizes): {PEER_SIZES}.\n")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "an unknown CPU")
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB"


def main(argv: list[str] | None = None) -> int:
    matrix = load_matrix()
    parser = argparse.ArgumentParser(prog="scripts/build-images.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=["all"], metavar="NAME",
                        help=f"images to build, or all (default): {', '.join(matrix)}; cpu or gpu name a device's")
    parser.add_argument("--base", default="auto",
                        help="auto (python:3.11-slim-bookworm where a registry answers, else Debian via "
                             "debootstrap), debootstrap, or any image reference")
    parser.add_argument("--builder", default="auto", choices=("auto", "docker", "buildah"))
    parser.add_argument("--oci-archive", type=Path, metavar="DIR",
                        help="also export each image as a compressed OCI archive DIR/<name>.oci.tar")
    parser.add_argument("--source", default="",
                        help="the org.opencontainers.image.source label (default: git's origin)")
    parser.add_argument("--list", action="store_true", help="print the matrix's image references and exit")
    parser.add_argument("--prune", action="store_true",
                        help="after each image, remove its intermediate stages (less disk, no layer cache)")
    parser.add_argument("--no-results", action="store_true",
                        help="leave build/images/results.json as it is (the tests' builds, often from cache)")
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="write the images table (sizes, build times, and the image tests' ready times and "
                             "idle RSS from build/images/smoke.json) to FILE and exit")
    args = parser.parse_args(argv)

    try:
        names = select(args.names, matrix)
    except ValueError as err:
        parser.error(str(err))
    version = hyperserve_version()
    if args.report:
        args.report.write_text(images_report(matrix))
        print(args.report.read_text())
        return 0
    if args.list:
        for name in names:
            print(matrix[name].reference(version))
        return 0
    if sys.version_info[:2] != IMAGE_PYTHON:
        raise SystemExit(f"the images run Python {'.'.join(map(str, IMAGE_PYTHON))}; its wheelhouses must be "
                         f"made by that Python, not {sys.version.split()[0]}")
    builder = find_builder(args.builder)
    base = base_image(builder, args.base)
    wheel = hyperserve_wheel()
    results = []
    for name in names:
        results.append(build_image(matrix[name], builder, base, wheel, version, args.source, args.oci_archive))
        log(f"{name}: {results[-1].reference}, {mb(results[-1].size_bytes)}, "
            f"built in {results[-1].wheelhouse_seconds + results[-1].build_seconds:.0f} s")
        if not args.no_results:
            save_results(results[-1:], WORK / "results.json")
        if args.prune:
            builder.prune()
    print(report(results))
    return 0


def log(message: str) -> None:
    print(f"build-images: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> None:
    subprocess.run(cmd, check=True, **kwargs)


def quiet(cmd: list[str], timeout: float | None = None) -> bool:
    try:
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
        return done.returncode == 0
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False


def output(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
