"""Where a job's shards run: in this process, in worker processes, or against an endpoint (Ray
is ``ray_engine``). Each engine hands back every shard's result and the seconds spent predicting.

A ``ShardWorker`` is one model loaded in its own data plane and event loop, running whole shards:
the process pool's workers and Ray's actors are each one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from ..errors import ServingError
from .errors import JobFailed
from .job import JobSpec, Progress, Ran, Shard, ShardResult, ShardRun, claim, committed, manifest, run_shards
from .output import Output
from .sources import InputFile

log = logging.getLogger("hyperserve.batch")


def deployed(args: argparse.Namespace):
    """The model of MODEL_URI in its own data plane, not loaded yet."""
    from .. import __version__
    from ..dataplane import DataPlane
    from ..serve import deployed_models

    args.model, args.model_config, args.default_model = None, None, None
    repository = deployed_models(args)
    plane = DataPlane(repository, request_timeout=args.request_timeout, server_version=__version__)
    model = plane.default_model
    model.adaptive_hold = False  # the job queues what it has: no partners are coming
    return plane, model


def _loading(plane, step) -> None:
    """One step of loading the model; a failure is the job's, with its cause."""
    try:
        step()
    except ServingError as err:
        plane.close()
        raise JobFailed(f"the model did not load: {err.message}") from None
    except Exception as err:  # noqa: BLE001 - a framework's own error: the job cannot run
        plane.close()
        raise JobFailed(f"the model did not load: {type(err).__name__}: {err}") from None


def load_model(args: argparse.Namespace, preloaded=None):
    """The model of MODEL_URI, loaded and ready, in its own data plane (``preloaded``: the plane
    and model whose artifacts a driver loaded before forking this worker)."""
    plane, model = preloaded or deployed(args)
    if model.handler is None:
        _loading(plane, model.load_artifacts)
    _loading(plane, model.start_serving)  # its threads start here, after any fork
    collect_rarely()
    return plane, model


def preload(args: argparse.Namespace):
    """For a fork-safe handler, the model's artifacts loaded once here, as the server's supervisor
    does: forked workers share them copy-on-write and start predicting at once, instead of each
    importing the framework and loading the model. None for any other handler."""
    plane, model = deployed(args)
    _loading(plane, model.fetch)
    if not model.fork_safe():
        plane.close()
        return None
    _loading(plane, model.load_artifacts)
    collect_rarely()  # frozen before the fork: no worker's collector walks what they share
    return plane, model


def collect_rarely() -> None:
    """What is loaded by now lives as long as the job: frozen, the collector skips it. And it runs
    every 100,000 allocations, not 700: a job's requests allocate in bursts that die young, and the
    default ran it over the requests in flight again and again (bench/README.md: 1.2 times the
    rows/s of a 1-worker iris job). Any garbage cycles wait at most that long."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 100)


def framework_of(args: argparse.Namespace) -> str:
    """The model's framework, from its files, without loading it (what a driver needs to know)."""
    from pathlib import Path

    from hyperserve.handlers import registry

    from ..repository.model import latest_version_dir
    from ..repository.storage import fetch

    if args.framework not in ("", "auto"):
        return args.framework
    if args.predictor or args.cpr_handler:
        return "cpr"
    path, _ = latest_version_dir(fetch(args.model_uri, Path(args.cache_dir)))
    return registry.detect(path)[0]


def wraps(spec: JobSpec, framework: str) -> bool:
    """Vertex's PyTorch images take {"data": ...}: so do TorchServe archives here."""
    return spec.wrap_data or framework == "torchserve"


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ShardWorker:
    """The model, loaded once; ``run(shard)`` predicts a whole shard and commits it."""

    def __init__(self, args: argparse.Namespace, spec: JobSpec, wrap: bool, preloaded=None):
        from .predictors import InProcess

        self.plane, self.model = load_model(args, preloaded)
        self.run_shard = ShardRun(spec, InProcess(self.plane, self.model, spec.parameters, decode_thread=False), wrap)
        self.out = Output(spec.output, spec.cache_dir / "batch-spool", clean=False)
        self.loop = new_loop()

    def run(self, shard: Shard) -> ShardResult:
        return self.loop.run_until_complete(self.run_shard.run(shard, self.out))

    def run_all(self, shards: list[Shard]) -> list[ShardResult]:
        """Shards none of which is committed yet, overlapped as in a job of one process."""
        return self.loop.run_until_complete(run_shards(self.run_shard, shards, self.out, None, resume=False))


# -- this process --------------------------------------------------------------------------

async def in_process(args, spec: JobSpec, files: list[InputFile], shards: list[Shard], out: Output) -> Ran:
    from .predictors import InProcess

    plane, model = await asyncio.to_thread(load_model, args)
    try:
        wrap = wraps(spec, model.framework)
        claim(out, manifest(spec, files, shards, wrap))
        progress = Progress(sum(s.rows for s in shards), len(shards), spec.progress)
        try:
            run = ShardRun(spec, InProcess(plane, model, spec.parameters), wrap)
            results = await run_shards(run, shards, out, progress)
        finally:
            progress.close()
        return Ran(results, time.monotonic() - progress.started, "in-process")
    finally:
        plane.close()


# -- worker processes ------------------------------------------------------------------------

_worker: ShardWorker | None = None
_worker_args: tuple | None = None


def _start_worker(args, spec, wrap, driver: int, preloaded) -> None:
    global _worker_args
    from ..workers import _die_with_supervisor

    _die_with_supervisor(driver)  # a killed job leaves no worker running on
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _worker_args = (args, spec, wrap, preloaded)


def _run_in_worker(shards: list[Shard]) -> list[ShardResult]:
    global _worker
    if _worker is None:  # made by the first call, so that a failed load reaches the job with its cause
        _worker = ShardWorker(*_worker_args)
    return _worker.run_all(shards)


SHARDS_PER_CALL = 8


def calls(shards: list[Shard], workers: int) -> list[list[Shard]]:
    """The shards in runs of consecutive ones, one run a call to a worker: a worker overlaps a
    run's shards (the next one's requests go on while the last is answered and committed), where a
    shard a call paid its start and end each time (one worker ran 10,000-row iris shards at 0.88
    times the rows/s of 100,000-row ones). Runs shrink towards the end, guided self-scheduling, so
    that no worker is left with a long run while the others idle."""
    runs, i = [], 0
    while i < len(shards):
        size = max(1, min(SHARDS_PER_CALL, (len(shards) - i) // (2 * workers)))
        runs.append(shards[i:i + size])
        i += size
    return runs


def start_parallel(args, spec: JobSpec, files: list[InputFile], shards: list[Shard], out: Output):
    """What an engine of many processes does first, in the driver: claim the output, and sort the
    shards an earlier run committed from those to run. (wrap, progress, results so far, todo)."""
    wrap = wraps(spec, framework_of(args))
    claim(out, manifest(spec, files, shards, wrap))
    progress = Progress(sum(s.rows for s in shards), len(shards), spec.progress)
    results: dict[int, ShardResult] = {}
    todo = []
    for shard in shards:
        done = committed(out, shard)
        if done is None:
            todo.append(shard)
        else:
            results[shard.index] = done
            progress.shard_done(done)
    return wrap, progress, results, todo


def in_processes(args, spec: JobSpec, files: list[InputFile], shards: list[Shard], out: Output,
                 workers: int) -> Ran:
    """The shards on ``workers`` processes, in any order; each output shard is still its records in
    input order. A fork-safe model is loaded here once and the workers are forked from this
    process; any other is loaded by each spawned worker."""
    import multiprocessing

    from ..workers import share_cores

    wrap, progress, results, todo = start_parallel(args, spec, files, shards, out)
    try:
        if todo:
            share_cores(args, workers)
            preloaded = preload(args)
            # Forked, this process has no threads yet (the model's start in each worker); spawned,
            # no threads of this process cross into a worker.
            context = multiprocessing.get_context("fork" if preloaded else "spawn")
            try:
                with ProcessPoolExecutor(min(workers, len(todo)), mp_context=context, initializer=_start_worker,
                                         initargs=(args, spec, wrap, os.getpid(), preloaded)) as pool:
                    running = [pool.submit(_run_in_worker, run) for run in calls(todo, workers)]
                    try:
                        for finished in as_completed(running):
                            for result in finished.result():
                                results[result.index] = result
                                progress.shard_done(result)
                    except BaseException:
                        for future in running:
                            future.cancel()
                        raise
            finally:
                if preloaded:  # closed whether or not the workers finished
                    preloaded[0].close()
    finally:
        progress.close()
    return Ran([results[s.index] for s in shards], span_of(results.values()), "in-process")


def span_of(results) -> float:
    """Seconds from the first shard this run began to the last it finished (loading excluded,
    as the single-process engine counts from after its load)."""
    ran = [r for r in results if not r.skipped]
    return max(r.span[1] for r in ran) - min(r.span[0] for r in ran) if ran else 0.0


# -- a running server --------------------------------------------------------------------------

async def against_endpoint(args, spec: JobSpec, files: list[InputFile], shards: list[Shard], out: Output) -> Ran:
    from .predictors import Endpoint

    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise JobFailed(f"--header takes NAME:VALUE, got {header!r}")
        headers[name.strip()] = value.strip()
    claim(out, manifest(spec, files, shards, spec.wrap_data))
    collect_rarely()
    progress = Progress(sum(s.rows for s in shards), len(shards), spec.progress)
    try:
        async with Endpoint(args.endpoint, concurrency=spec.concurrency, retries=args.max_retries,
                            timeout_s=args.request_timeout or 3600.0, headers=headers) as endpoint:
            results = await run_shards(ShardRun(spec, endpoint, spec.wrap_data), shards, out, progress)
    finally:
        progress.close()
    return Ran(results, time.monotonic() - progress.started, "endpoint")
