"""A batch prediction job: plan the shards, run each (in input order, ``concurrency`` requests in
flight, a failed request retried row by row), commit it, and sum up.

Shards are fixed by the input alone (``rows_per_shard`` records of one file each), and the output
prefix holds the job's manifest: a re-run of the same job skips the shards already committed,
and a different job refuses to write into it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import orjson

from .errors import JobFailed
from .instances import InstanceConfig, Items, converter, error_line, read_header, request_body, result_lines
from .output import ERRORS_STATS, MANIFEST, RESULTS, SUMMARY, Output, shard_name
from .predictors import RequestFailed
from .records import CSV, FILE_LIST, index, read
from .sources import InputFile, expand

log = logging.getLogger("hyperserve.batch")


@dataclass
class JobSpec:
    inputs: list[str]
    format: str
    output: str
    config: InstanceConfig = field(default_factory=InstanceConfig)
    wrap_data: bool = False
    batch_size: int = 64
    parameters: bytes | None = None  # the request's "parameters" (JSON), sent only when given
    rows_per_shard: int = 10_000
    max_error_ratio: float = 0.1
    concurrency: int = 16
    cache_dir: Path = Path("/tmp/hyperserve")
    progress: bool | None = None  # None: a bar on a terminal, a log line per shard otherwise


@dataclass(frozen=True)
class Shard:
    index: int
    of: int  # the job's shard count
    uri: str
    path: str
    start: int  # byte of its first record
    end: int  # byte of the next shard's first record (-1: the end of the file)
    lines_before: int
    rows: int

    @property
    def results(self) -> str:
        return shard_name(RESULTS, self.index, self.of)

    @property
    def errors_stats(self) -> str:
        return shard_name(ERRORS_STATS, self.index, self.of)


@dataclass
class ShardResult:
    index: int
    instances: int
    predictions: int
    errors: list[dict]  # [{"code", "message", "count"}]
    skipped: bool = False  # committed by an earlier run
    span: tuple[float, float] = (0.0, 0.0)  # time.time() when this run started and finished it


class Predictor(Protocol):
    lines_checked: bool  # it refuses a request that does not decode to one instance per line

    def submit(self, body: bytes, count: int) -> asyncio.Future:
        """The request, sent now; the future gets one prediction (JSON) per instance, or RequestFailed."""

    async def predict(self, body: bytes, count: int) -> list[bytes]: ...


def plan(spec: JobSpec) -> tuple[list[InputFile], list[Shard]]:
    if spec.rows_per_shard < 1 or spec.batch_size < 1:
        raise JobFailed("--rows-per-shard and --batch-size must be at least 1")
    spec.config.check(spec.format)
    files = expand(spec.inputs, spec.cache_dir)
    pieces = []
    for file in files:
        count, starts = index(file.path, spec.format, spec.rows_per_shard)
        for k, (start, lines) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else -1
            pieces.append((file, start, end, lines, min(spec.rows_per_shard, count - k * spec.rows_per_shard)))
    if not pieces:
        raise JobFailed(f"the input holds no instances: {', '.join(f.uri for f in files)}")
    shards = [Shard(i, len(pieces), f.uri, f.path, start, end, lines, rows)
              for i, (f, start, end, lines, rows) in enumerate(pieces)]
    return files, shards


def manifest(spec: JobSpec, files: list[InputFile], shards: list[Shard], wrap: bool) -> dict:
    """What makes a job the same job: its inputs and everything that shapes its output lines."""
    return {"format": spec.format, "inputs": [{"uri": f.uri, "version": f.version} for f in files],
            "instance_config": asdict(spec.config), "wrap_data": wrap,
            "parameters": spec.parameters.decode() if spec.parameters is not None else None,
            "rows_per_shard": spec.rows_per_shard, "shards": len(shards),
            "instances": sum(s.rows for s in shards)}


def claim(out: Output, doc: dict) -> None:
    """Write the job's manifest, or check that the one there is this job's."""
    doc = orjson.loads(orjson.dumps(doc))  # as it reads back (lists, not tuples)
    existing = out.read(MANIFEST)
    if existing is None:
        out.write(MANIFEST, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        return
    try:
        previous = orjson.loads(existing)
    except orjson.JSONDecodeError:
        previous = {}
    differs = sorted(k for k in doc if previous.get(k) != doc[k])
    if differs:
        raise JobFailed(f"{out.uri(MANIFEST)} belongs to another job (it differs in {', '.join(differs)}); "
                        "use another --output, or delete that one to start over")


def committed(out: Output, shard: Shard) -> ShardResult | None:
    """The result of a shard an earlier run committed, from its files; None when it must run."""
    if not out.exists(shard.results):
        return None
    stats = out.read(shard.errors_stats) or b""
    errors = [orjson.loads(line) for line in stats.splitlines() if line.strip()]
    failed = sum(e["count"] for e in errors)
    return ShardResult(shard.index, shard.rows, shard.rows - failed, errors, skipped=True)


class ShardRun:
    """One shard: its records → requests (``concurrency`` in flight) → lines, in input order."""

    def __init__(self, spec: JobSpec, predictor: Predictor, wrap: bool):
        self.spec = spec
        self.predictor = predictor
        self.wrap = wrap

    async def run(self, shard: Shard, out: Output) -> ShardResult:
        spec = self.spec
        began = time.time()
        convert = converter(spec.format, spec.config, self.wrap, self._header(shard),
                            self.predictor.lines_checked)
        batches = read(shard.path, spec.format, shard.start, shard.rows, shard.lines_before, spec.batch_size,
                       shard.end)
        loop = asyncio.get_running_loop()
        errors: Counter[tuple[int, str]] = Counter()
        # Each request's instances and its future, in input order: futures, not a task per
        # request, because on a small model that bookkeeping is a share of the rows/s.
        window: deque[tuple[Items, asyncio.Future | None]] = deque()
        # Off the loop: a file's creation waits on the filesystem's journal behind the last
        # shard's commit (264 us a shard in a profile), while this shard could be predicting.
        f, spooled = await loop.run_in_executor(None, out.spool, shard.results)
        written = 0
        try:
            with f:
                more = True
                while more or window:
                    # Top the window up in one go: requests queued together share framework calls.
                    while more and len(window) < spec.concurrency:
                        batch = next(batches, None)
                        if batch is None:
                            more = False
                            break
                        if spec.format == FILE_LIST:  # reads a file per record: off the loop
                            items = await loop.run_in_executor(None, convert, batch)
                        else:
                            items = convert(batch)
                        window.append((items, self._send(items)))
                    if not window:
                        break
                    head = window[0][1]
                    if head is not None and not head.done():
                        try:
                            await head
                        except Exception:  # noqa: BLE001 - its lines say how it failed
                            pass
                    # Every answered request at the front, in order: most with no coroutine at all.
                    while window and (window[0][1] is None or window[0][1].done()):
                        items, pending = window.popleft()
                        text = _usual_lines(items, pending)
                        if text is None:
                            text, failures = await self._lines(items, pending)
                            errors.update(failures)
                        f.write(text)
                        written += items.size
            if written != shard.rows:
                raise JobFailed(f"shard {shard.index} of {shard.uri}: wrote {written} lines for {shard.rows} records")
            stats = b"".join(orjson.dumps({"code": c, "message": m, "count": n}) + b"\n"
                             for (c, m), n in errors.most_common())
            # Off the loop (an upload to gs:// takes a while): the next shard's requests go on meanwhile.
            await loop.run_in_executor(None, _commit, out, shard, stats, spooled)
        except BaseException:
            for _, pending in window:
                if pending is not None:
                    pending.cancel()
            Path(spooled).unlink(missing_ok=True)
            raise
        failed = sum(errors.values())
        return ShardResult(shard.index, shard.rows, shard.rows - failed,
                           [{"code": c, "message": m, "count": n} for (c, m), n in errors.most_common()],
                           span=(began, time.time()))

    def _send(self, items: Items) -> asyncio.Future | None:
        if not items.sent:  # every record failed before it became an instance
            return None
        return self.predictor.submit(request_body(items.sent, self.spec.parameters), len(items.sent))

    def _header(self, shard: Shard) -> list[str] | None:
        if self.spec.format != CSV:
            return None
        with open(shard.path, "rb") as f:
            return read_header(f.readline(), f"{shard.uri}:1")

    async def _lines(self, items: Items, pending: asyncio.Future | None) -> tuple[bytes, list[tuple[int, str]]]:
        """The records' output lines, and the failures among them: the batch's request, then, if it
        failed, one per instance."""
        predictions: list = []
        whole = True
        if pending is not None:
            try:
                predictions = await pending
            except RequestFailed as err:
                whole = False
                if len(items.sent) == 1:
                    predictions = [err]
                else:
                    predictions = await asyncio.gather(*(self._alone(sent) for sent in items.sent))
        keyed = items.keys is not None
        names = items.keys if keyed else items.shown
        if whole and not items.failed:  # the usual batch
            return result_lines(names, predictions, keyed), []
        lines: list = [None] * items.size
        failures = []
        positions = items.positions or range(items.size)
        for position, name, shown, prediction in zip(positions, names, items.shown, predictions):
            if type(prediction) is bytes:
                lines[position] = result_lines([name], [prediction], keyed)
            else:
                lines[position] = error_line(shown, name if keyed else None, prediction.code, prediction.message)
                failures.append((prediction.code, prediction.message))
        for position, shown, err in items.failed:
            lines[position] = error_line(shown, None, err.code, err.message)
            failures.append((err.code, err.message))
        return b"".join(lines), failures

    async def _alone(self, sent: bytes):
        try:
            return (await self.predictor.predict(request_body([sent], self.spec.parameters), 1))[0]
        except RequestFailed as err:
            return err


def _usual_lines(items: Items, pending: asyncio.Future | None) -> bytes | None:
    """The lines of a batch whose request succeeded, every record of it an instance; else None."""
    if items.failed or pending is None or pending.cancelled() or pending.exception() is not None:
        return None
    keyed = items.keys is not None
    return result_lines(items.keys if keyed else items.shown, pending.result(), keyed)


def _commit(out: Output, shard: Shard, stats: bytes, spooled: str) -> None:
    out.write(shard.errors_stats, stats)  # before the results: committed results mean both are there
    out.commit(shard.results, spooled)


class Progress:
    """A tqdm bar (rows/s, ETA) on a terminal; else one log line per shard."""

    def __init__(self, total_rows: int, shards: int, enabled: bool | None):
        self.total, self.shards = total_rows, shards
        self.done_rows = self.done_shards = 0
        self.started = time.monotonic()
        self.bar = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                enabled = False
            else:
                # No monitor thread: bars move per shard, and worker processes may fork from here.
                tqdm.monitor_interval = 0
                self.bar = tqdm(total=total_rows, unit="rows", unit_scale=True, dynamic_ncols=True, file=sys.stderr)

    def shard_done(self, result: ShardResult) -> None:
        self.done_rows += result.instances
        self.done_shards += 1
        if self.bar is not None:
            self.bar.update(result.instances)
            return
        elapsed = time.monotonic() - self.started
        rate = self.done_rows / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done_rows) / rate if rate > 0 else 0.0
        failed = result.instances - result.predictions
        log.info("shard %d/%d %s: %d instances, %d failed; %d/%d rows, %.0f rows/s, ETA %.0fs",
                 self.done_shards, self.shards, "skipped (already written)" if result.skipped else "written",
                 result.instances, failed, self.done_rows, self.total, rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary(spec: JobSpec, results: Iterable[ShardResult], elapsed: float, predict_s: float, engine: str) -> dict:
    """The job in numbers; rows/s counts the rows this run predicted over the time it spent on
    them (after the model loaded)."""
    results = list(results)
    ran = [r for r in results if not r.skipped]
    errors: Counter[tuple[int, str]] = Counter()
    for r in results:
        for e in r.errors:
            errors[(e["code"], e["message"])] += e["count"]
    instances = sum(r.instances for r in results)
    failed = sum(errors.values())
    rows_run = sum(r.instances for r in ran)
    return {"output": spec.output, "engine": engine, "instances": instances, "predictions": instances - failed,
            "errors": failed, "shards": len(results), "shards_skipped": len(results) - len(ran),
            "elapsed_s": round(elapsed, 3), "predict_s": round(predict_s, 3),
            "rows_per_s": round(rows_run / predict_s, 1) if predict_s > 0 else 0.0,
            "error_counts": [{"code": c, "message": m, "count": n} for (c, m), n in errors.most_common(20)]}


def finish(spec: JobSpec, out: Output, doc: dict) -> int:
    """Write and print the summary; the exit status (1 when more rows failed than allowed)."""
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    out.write(SUMMARY, text + b"\n")
    sys.stdout.write(text.decode() + "\n")
    sys.stdout.flush()
    if doc["instances"] and doc["errors"] / doc["instances"] > spec.max_error_ratio:
        log.error("%d of %d instances failed, more than --max-error-ratio %g allows",
                  doc["errors"], doc["instances"], spec.max_error_ratio)
        return 1
    return 0


async def run_shards(run: ShardRun, shards: list[Shard], out: Output, progress: Progress | None,
                     ahead: int = 2, resume: bool = True) -> list[ShardResult]:
    """Every shard, in order, ``ahead`` at a time: the next shard's requests are queued while the
    last of this one's are answered and committed, so the model never waits at a shard's end.
    ``resume``: skip the shards an earlier run committed (False: the caller sorted them out)."""
    results: list[ShardResult] = []
    running: deque = deque()
    upcoming = iter(shards)

    def start_next() -> bool:
        shard = next(upcoming, None)
        if shard is None:
            return False
        done = committed(out, shard) if resume else None
        running.append(done if done is not None else asyncio.ensure_future(run.run(shard, out)))
        return True

    try:
        while len(running) < ahead and start_next():
            pass
        while running:
            head = running.popleft()
            result = head if isinstance(head, ShardResult) else await head
            if progress is not None:
                progress.shard_done(result)
            results.append(result)
            start_next()
    finally:
        for task in running:
            if not isinstance(task, ShardResult):
                task.cancel()
    return results


@dataclass
class Ran:
    """What an engine hands back: every shard's result and the seconds spent predicting them."""

    results: list[ShardResult]
    predict_s: float
    engine: str
