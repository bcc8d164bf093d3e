"""Small real PyTorch models and TorchServe archives built with the real torch-model-archiver."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent / "torchserve_src"


def mlp(seed: int = 0):
    """The 4-8-3 softmax MLP of ``torchserve_src/eager_model.py`` with seeded weights."""
    import torch

    module = sys.modules.get("eager_model")
    if module is None:  # registered, so torch.save can pickle the class by reference
        spec = importlib.util.spec_from_file_location("eager_model", SRC / "eager_model.py")
        module = sys.modules["eager_model"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    torch.manual_seed(seed)
    return module.MLP().eval()


def save_torchscript(path: Path, seed: int = 0) -> Path:
    import torch

    torch.jit.script(mlp(seed)).save(str(path))
    return path


def save_export(path: Path, seed: int = 0) -> Path:
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(mlp(seed), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def save_aoti_package(path: Path, seed: int = 0) -> Path:
    """An AOTInductor package: the exported MLP compiled ahead of time to a shared library (~1 min)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(mlp(seed), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    return Path(torch._inductor.aoti_compile_and_package(program, package_path=str(path)))


def archiver() -> str:
    found = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent)) or \
        shutil.which("torch-model-archiver")
    if found is None:
        raise RuntimeError("torch-model-archiver is not installed (pip install 'hyperserve[test]')")
    return found


def make_archive(out_dir: Path, name: str, *, handler: str, serialized: Path, model_file: Path | None = None,
                 extra_files: list[Path] = (), config_yaml: str | None = None, requirements: str | None = None,
                 archive_format: str = "default") -> Path:
    """Runs torch-model-archiver; returns the .mar, .tar.gz or directory it made."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f"{name}-src"
    work.mkdir(exist_ok=True)
    args = [archiver(), "--model-name", name, "--version", "1.0", "--serialized-file", str(serialized),
            "--handler", handler, "--export-path", str(out_dir), "--archive-format", archive_format, "--force"]
    if model_file is not None:
        args += ["--model-file", str(model_file)]
    if extra_files:
        args += ["--extra-files", ",".join(str(f) for f in extra_files)]
    if config_yaml is not None:
        (work / "model-config.yaml").write_text(config_yaml)
        args += ["--config-file", str(work / "model-config.yaml")]
    if requirements is not None:
        (work / "requirements.txt").write_text(requirements)
        args += ["--requirements-file", str(work / "requirements.txt")]
    subprocess.run(args, check=True, capture_output=True, text=True)
    return {"default": out_dir / f"{name}.mar", "tgz": out_dir / f"{name}.tar.gz",
            "no-archive": out_dir / name}[archive_format]


def build_archives(out_dir: Path, sklearn_model: Path | None = None) -> dict[str, Path]:
    """The archives the TorchServe tests serve, by role."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    scripted = save_torchscript(out_dir / "mlp.pt")
    state = out_dir / "mlp_state.pt"
    torch.save(mlp().state_dict(), state)
    batching = "batchSize: 8\nmaxBatchDelay: 5\n"
    archives = {
        "base_handler": make_archive(out_dir, "mlp_base", handler=str(SRC / "mlp_handler.py"),
                                     serialized=scripted, config_yaml=batching),
        "plain": make_archive(out_dir, "plain", handler=str(SRC / "plain_handler.py"), serialized=scripted,
                              extra_files=[SRC / "errors.py"], config_yaml=batching,
                              requirements="numpy\n"),
        # module:function takes the module's path without .py (the archiver adds it).
        "function": make_archive(out_dir, "function", handler=f"{SRC / 'fn_handler'}:handle", serialized=scripted),
        "eager": make_archive(out_dir, "eager", handler=str(SRC / "mlp_handler.py"), serialized=state,
                              model_file=SRC / "eager_model.py"),
        "plain_tgz": make_archive(out_dir / "tgz", "plain", handler=str(SRC / "plain_handler.py"),
                                  serialized=scripted, extra_files=[SRC / "errors.py"], archive_format="tgz"),
        "plain_dir": make_archive(out_dir / "dir", "plain", handler=str(SRC / "plain_handler.py"),
                                  serialized=scripted, extra_files=[SRC / "errors.py"], archive_format="no-archive"),
    }
    if sklearn_model is not None:
        archives["sklearn"] = make_archive(out_dir, "iris_sklearn", handler=str(SRC / "sklearn_handler.py"),
                                           serialized=sklearn_model)
    return archives
