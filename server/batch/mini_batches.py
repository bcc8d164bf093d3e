"""Azure ML batch endpoint jobs (../shared/CONTRACTS.md §6): the input files in mini-batches of
``--mini-batch-size`` paths, each given to a scoring script's ``run(mini_batch)`` (``init()`` once per
worker), or, for an MLflow model with no script, read as data (CSV and parquet → DataFrames, images
→ arrays) and predicted, each output row being ``row, prediction, file_name``.

``--output-action append_row`` writes every returned row to one headerless ``--output-file-name``
(``predictions.csv``), in input order; ``summary_only`` leaves the output to the script. A mini-batch
whose run() raises is retried (``--max-retries``, Azure's 3) before its files count as failed; the
job ends (exit 1) once more than ``--error-threshold`` files failed (-1: never). Local workers or Ray
actors each load the script or model once.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import JobFailed
from .output import Output
from .sources import expand

log = logging.getLogger("hyperserve.batch")

APPEND_ROW = "append_row"
SUMMARY_ONLY = "summary_only"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class MiniBatchSpec:
    entry_script: str  # "" for an MLflow model with no script
    app_root: str  # resolved where the job starts: Ray actors do not share its environment
    model_uri: str
    mini_batch_size: int  # files per run() call
    output_action: str
    error_threshold: int
    output_file_name: str
    max_retries: int
    trust_model_code: bool
    cache_dir: str


@dataclass
class MiniBatchResult:
    index: int
    files: int
    lines: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    attempts: int = 1


def csv_lines(result: Any) -> list[str]:
    """What run() returned → the headerless rows Azure appends (a DataFrame's rows as CSV; a list's
    items one per line, as text)."""
    if hasattr(result, "to_csv") and hasattr(result, "columns"):  # a pandas DataFrame
        text = result.to_csv(header=False, index=False, lineterminator="\n")
        return text.splitlines()
    if isinstance(result, (list, tuple)):
        out = []
        for item in result:
            if isinstance(item, (list, tuple)):
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="").writerow(item)
                out.append(buffer.getvalue())
            else:
                out.append(str(item))
        return out
    raise TypeError(f"run() must return a list or a pandas DataFrame, got {type(result).__name__}")


def read_data_file(path: str):
    """An MLflow batch input: a DataFrame (CSV, parquet) or an image's array."""
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in IMAGE_SUFFIXES:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image)
    raise ValueError(f"{Path(path).name}: an MLflow batch job reads .csv, .parquet and image files")


class MiniBatchRunner:
    """One worker's script or model, loaded once."""

    def __init__(self, spec: MiniBatchSpec):
        from hyperserve.handlers.base import HandlerConfig
        from ..repository.storage import fetch

        self.spec = spec
        model_dir = fetch(spec.model_uri, Path(spec.cache_dir)) if spec.model_uri else None
        if spec.entry_script:
            from hyperserve.handlers.azureml import script

            if model_dir is not None:
                os.environ.setdefault("AZUREML_MODEL_DIR", str(model_dir))
            self.script = script.load(spec.entry_script, Path(spec.app_root))
            self.script.init()
            self.model = None
        else:
            from hyperserve.handlers.mlflow import MlflowHandler

            if model_dir is None:
                raise JobFailed("an Azure ML batch job needs --entry-script, or MODEL_URI of an MLflow model")
            self.model = MlflowHandler()
            self.model.load(model_dir, HandlerConfig(trust_model_code=spec.trust_model_code))
            self.script = None

    def run(self, index: int, files: list[str]) -> MiniBatchResult:
        result = MiniBatchResult(index, len(files))
        if self.model is not None:  # per file: one bad file fails alone
            for path in files:
                try:
                    result.lines.extend(self._mlflow_rows(path))
                except Exception as err:  # noqa: BLE001 - the file's failure, counted
                    result.failed.append((path, f"{type(err).__name__}: {err}"))
            return result
        for attempt in range(1, self.spec.max_retries + 2):
            result.attempts = attempt
            try:
                result.lines = csv_lines(self.script.run(list(files)))
                return result
            except Exception as err:  # noqa: BLE001 - run() is user code
                why = f"{type(err).__name__}: {err}"
                log.warning("mini-batch %d, attempt %d: run() raised %s", index, attempt, why)
        result.failed = [(path, why) for path in files]
        return result

    def _mlflow_rows(self, path: str) -> list[str]:
        import numpy as np
        import pandas as pd

        data = read_data_file(path)
        handler = self.model
        if handler.pyfunc is not None:
            predictions = handler.pyfunc.predict(data)
        else:
            from ..codecs.mlflow import to_inputs

            if isinstance(data, pd.DataFrame):
                columns = {name: data[name].tolist() for name in data.columns}
                signature = handler.signature()
                request = to_inputs(columns, None if signature.column_based else data.to_numpy().tolist(),
                                    signature.inputs, signature.column_based)
            else:
                request = to_inputs(None, data[np.newaxis], handler.signature().inputs, False)
            predictions = next(iter(handler.predict(request).outputs.values()))
        if isinstance(predictions, pd.DataFrame):
            predictions = predictions.to_dict(orient="records")
        values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        name = Path(path).name
        frame = pd.DataFrame({"row": range(len(values)), "prediction": [_cell(v) for v in values],
                              "file_name": name})
        return csv_lines(frame)


def _cell(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, (list, dict)) else value


# -- the local engine: a process pool, each process with its own runner ------------------------------

_runner: MiniBatchRunner | None = None


def _start(spec: MiniBatchSpec) -> None:
    global _runner
    _runner = MiniBatchRunner(spec)


def _run(index: int, files: list[str]) -> MiniBatchResult:
    return _runner.run(index, files)


def mini_batches(files: list[str], size: int) -> list[list[str]]:
    return [files[i:i + size] for i in range(0, len(files), size)]


def run_local(spec: MiniBatchSpec, batches: list[list[str]], workers: int, collect) -> None:
    if workers <= 1:
        runner = MiniBatchRunner(spec)
        for i, files in enumerate(batches):
            collect(runner.run(i, files))
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                             initargs=(spec,)) as pool:
        for result in pool.map(_run, range(len(batches)), batches):
            collect(result)


class MiniBatchActor:
    """A Ray actor: a runner whose calls are Ray Data batches of mini-batches."""

    def __init__(self, spec: MiniBatchSpec):
        self.runner = MiniBatchRunner(spec)

    def __call__(self, batch: dict) -> dict:
        results = [self.runner.run(int(i), list(orjson.loads(f)))
                   for i, f in zip(batch["index"], batch["files"])]
        return {"index": [r.index for r in results], "result": [orjson.dumps(
            {"files": r.files, "lines": r.lines, "failed": r.failed, "attempts": r.attempts}).decode()
            for r in results]}


def run_ray(args: argparse.Namespace, spec: MiniBatchSpec, batches: list[list[str]], collect) -> None:
    from .ray_engine import connected

    # The script's settings travel to the actors (Azure sets them on every node of a job).
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(("AZUREML_", "AML_"))}
    with connected(args, env_vars=forwarded) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(args.ray_actors or cpus, len(batches)))
        log.info("Ray: %d mini-batches on %d actors", len(batches), actors)
        dataset = ray.data.from_items([{"index": i, "files": orjson.dumps(b).decode()} for i, b in enumerate(batches)],
                                      override_num_blocks=max(1, len(batches)))
        mapped = dataset.map_batches(MiniBatchActor, fn_constructor_kwargs={"spec": spec}, batch_size=1,
                                     concurrency=actors, num_cpus=1)
        for row in mapped.iter_rows():
            doc = orjson.loads(row["result"])
            collect(MiniBatchResult(int(row["index"]), doc["files"], doc["lines"],
                                    [tuple(f) for f in doc["failed"]], doc["attempts"]))


def main(args: argparse.Namespace) -> int:
    """The job, start to end; the exit status."""
    started = time.monotonic()
    from hyperserve.handlers.azureml.script import app_root

    spec = MiniBatchSpec(entry_script=args.entry_script or "", app_root=str(app_root().resolve()),
                         model_uri=str(Path(args.model_uri).resolve()) if args.model_uri and "://" not in args.model_uri
                         else args.model_uri or "",
                         mini_batch_size=args.mini_batch_size or 10, output_action=args.output_action or APPEND_ROW,
                         error_threshold=args.error_threshold, output_file_name=args.output_file_name,
                         max_retries=3 if args.mini_batch_retries is None else args.mini_batch_retries,
                         trust_model_code=args.trust_model_code, cache_dir=args.cache_dir)
    if spec.mini_batch_size < 1:
        raise JobFailed("--mini-batch-size must be at least 1")
    if spec.output_action not in (APPEND_ROW, SUMMARY_ONLY):
        raise JobFailed(f"--output-action takes {APPEND_ROW} or {SUMMARY_ONLY}, got {spec.output_action!r}")
    out = Output(args.output, Path(args.cache_dir) / "batch-spool")
    inputs = [uri for value in args.input for uri in value.split(",") if uri]
    files = [f.path for f in expand([f for u in inputs for f in _files_of(u)], Path(args.cache_dir))]
    batches = mini_batches(files, spec.mini_batch_size)
    done: dict[int, MiniBatchResult] = {}
    failed: list[tuple[str, str]] = []

    def collect(result: MiniBatchResult) -> None:
        done[result.index] = result
        failed.extend(result.failed)
        log.info("mini-batch %d/%d: %d files, %d rows, %d failed", result.index + 1, len(batches), result.files,
                 len(result.lines), len(result.failed))
        if 0 <= spec.error_threshold < len(failed):
            raise JobFailed(f"{len(failed)} files failed, more than --error-threshold {spec.error_threshold}; "
                            f"the first: {failed[0][0]}: {failed[0][1]}")

    if args.engine == "ray":
        run_ray(args, spec, batches, collect)
    else:
        from ..workers import resolve_workers

        run_local(spec, batches, min(resolve_workers(args), max(1, len(batches))), collect)
    rows = 0
    if spec.output_action == APPEND_ROW:
        f, local = out.spool(spec.output_file_name)
        with f:
            for i in range(len(batches)):
                for line in done[i].lines:
                    f.write(line.encode() + b"\n")
                rows += len(done[i].lines)
        out.commit(spec.output_file_name, local, once=False)
    elapsed = time.monotonic() - started
    summary = {"files": len(files), "mini_batches": len(batches), "failed_files": len(failed),
               "rows": rows if spec.output_action == APPEND_ROW else sum(len(r.lines) for r in done.values()),
               "retried_mini_batches": sum(1 for r in done.values() if r.attempts > 1),
               "elapsed_s": round(elapsed, 3), "files_per_s": round(len(files) / elapsed, 1) if elapsed else None,
               "failures": [{"file": p, "error": why} for p, why in failed[:100]]}
    out.write("job_summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(orjson.dumps({k: v for k, v in summary.items() if k != "failures"}).decode(), flush=True)
    return 0


def _files_of(uri: str) -> list[str]:
    """A directory means every file under it, sorted (Azure passes a folder as a batch job's input)."""
    if "://" not in uri and os.path.isdir(uri):
        return sorted(os.path.join(d, name) for d, _, names in os.walk(uri) for name in names
                      if not name.startswith("."))
    return [uri]
