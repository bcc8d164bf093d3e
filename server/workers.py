"""Worker processes sharing one port (SO_REUSEPORT), and the supervisor that keeps them running.

The supervisor binds at once and answers health 503 while it downloads the artifacts and, for
handlers that declare themselves fork-safe, loads the models, so workers share that memory
copy-on-write. It then forks the workers: each binds its own SO_REUSEPORT socket (the kernel
spreads connections across them), runs its own event loop and model threads, and marks itself
ready in shared memory; health is 200 only when every worker is ready. A worker that dies is
replaced; SIGTERM is forwarded and each worker drains, and a worker whose supervisor dies (even
by kill -9) gets SIGTERM from the kernel. The supervisor holds the ports from start to exit, so no
other server can bind them beside its workers. No tensor ever crosses a process.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import glob
import logging
import multiprocessing
import os
import signal
import time

from .errors import ServingError
from .http import HttpServer
from .metrics.service import remove_directory, shared_directory
from .metrics.snapshot import mark_dead
from .ports import reserve

log = logging.getLogger("hyperserve.workers")

RESTART_WINDOW_S = 10.0  # a worker dying sooner than this after its start counts as a crash loop
MAX_QUICK_RESTARTS = 5
PR_SET_PDEATHSIG = 1  # prctl(2)


class WorkerSlots:
    """One readiness flag per worker, in memory shared across fork."""

    def __init__(self, count: int):
        self.flags = multiprocessing.RawArray("b", count)

    def set(self, index: int, ready: bool) -> None:
        self.flags[index] = 1 if ready else 0

    def all_ready(self) -> bool:
        return all(self.flags)


def gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    return len(glob.glob("/dev/nvidia[0-9]*"))


def cpr_workers(environ=os.environ) -> int:
    """The worker count Google's CPR image would run (VERTEX_CPR_* knobs), or 0 when unset."""
    try:
        if environ.get("VERTEX_CPR_WEB_CONCURRENCY"):
            return max(1, int(environ["VERTEX_CPR_WEB_CONCURRENCY"]))
        if not environ.get("VERTEX_CPR_WORKERS_PER_CORE") and not environ.get("VERTEX_CPR_MAX_WORKERS"):
            return 0
        workers = max(1, int(float(environ.get("VERTEX_CPR_WORKERS_PER_CORE", "1")) * len(os.sched_getaffinity(0))))
        if environ.get("VERTEX_CPR_MAX_WORKERS"):
            workers = min(workers, max(1, int(environ["VERTEX_CPR_MAX_WORKERS"])))
        return workers
    except ValueError as err:
        raise SystemExit(f"hyperserve: a VERTEX_CPR_* worker variable is not a number: {err}") from None


def resolve_workers(args: argparse.Namespace) -> int:
    if args.workers > 0:
        return args.workers
    if getattr(args, "entry_script", ""):  # Azure's server: WORKER_COUNT processes, one by default
        try:
            return max(1, int(os.environ.get("WORKER_COUNT") or 1))
        except ValueError:
            raise SystemExit(f"hyperserve: WORKER_COUNT is not a number: {os.environ['WORKER_COUNT']!r}") from None
    if cpr_workers():
        return cpr_workers()
    gpus = gpu_count() if args.device != "cpu" else 0
    return gpus or len(os.sched_getaffinity(0))


async def _prepare(args, router, plane, limits) -> int | None:
    """Serve 503 while fetching (and preloading) the models. None: go on and fork."""
    from .serve import in_background, request_tracing

    loop = asyncio.get_running_loop()
    models = plane.models
    server = HttpServer(router, limits, loop, plane.recorder)
    server.tracing = request_tracing(args)
    port = await server.start(args.host, args.port, reuse_port=True)
    log.info("listening on %s:%d (health %s, predict %s); preparing %d workers", args.host, port,
             args.health_route, args.predict_route, args.workers_resolved)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def prepare():
        for model in models:
            model.fetch()
            if model.fork_safe():
                model.load_artifacts()

    job = in_background(prepare, loop, "prepare-models")
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({job, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = None
    if stop.is_set():
        code = 0
    elif job.exception() is not None:
        log.error("preparing the models failed: %s", job.exception())
        try:
            await asyncio.wait_for(stop.wait(), args.load_failure_exit_delay)
        except TimeoutError:
            pass
        code = 1
    stopping.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    await server.shutdown(0.0)
    return code


def _worker_main(args, built, slots: WorkerSlots, index: int) -> int:
    from .serve import run_loop, serve

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    gpus = gpu_count() if args.device != "cpu" else 0
    if gpus and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    return run_loop(serve(args, built, reuse_port=True, slots=slots, index=index))


def share_cores(args: argparse.Namespace, workers: int) -> None:
    """Unless --intra-op-threads says otherwise, the workers' framework threads share the cores:
    a pool as large as the machine in every worker would only contend."""
    if args.intra_op_threads == 0:
        args.intra_op_threads = max(1, len(os.sched_getaffinity(0)) // workers)


def supervise(args: argparse.Namespace, workers: int) -> int:
    from .serve import build_or_report, grpc_port

    args.workers_resolved = workers
    share_cores(args, workers)
    made_directory = False
    if args.metrics:  # the workers' shared metrics files
        args.metrics_directory, made_directory = shared_directory(args.metrics_dir)
    try:
        built = build_or_report(args)
        if built is None:
            return 2
        try:  # held until the supervisor exits: no other server can start on these ports meanwhile
            reservations = [reserve(args.host, args.port, "HTTP"), reserve(args.host, grpc_port(args), "gRPC"),
                            reserve(args.host, args.metrics_port if args.metrics else 0, "metrics")]
        except (ServingError, OSError) as err:
            log.error("%s", getattr(err, "message", None) or f"cannot listen on {args.host}:{args.port}: {err}")
            return 2
        try:
            return _supervise(args, built, workers)
        finally:
            for reservation in reservations:
                if reservation is not None:
                    reservation.close()
    finally:
        if made_directory:
            remove_directory(args.metrics_directory)


def _die_with_supervisor(supervisor: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (even by kill -9), so no worker is
    left serving on its own; a worker whose supervisor is already gone stops at once."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("cannot ask to die with the supervisor: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != supervisor:
        os._exit(0)


def _supervise(args: argparse.Namespace, built, workers: int) -> int:
    from .serve import run_loop

    code = run_loop(_prepare(args, *built))
    if code is not None:
        return code
    supervisor = os.getpid()

    slots = WorkerSlots(workers)
    children: dict[int, tuple[int, float]] = {}
    state = {"stopping": False, "quick_restarts": 0}

    def spawn(index: int):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_supervisor(supervisor)
                code = _worker_main(args, built, slots, index)
            except BaseException:  # noqa: BLE001
                log.exception("worker %d crashed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = (index, time.monotonic())
        log.info("worker %d started (pid %d)", index, pid)

    def on_stop(signum, frame):
        state["stopping"] = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    for index in range(workers):
        spawn(index)
    exit_code = 0
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index, started = children.pop(pid)
        slots.set(index, False)
        if getattr(args, "metrics_directory", None):  # its counters stay in the totals, its gauges go
            mark_dead(args.metrics_directory, pid)
        code = os.waitstatus_to_exitcode(status)
        if state["stopping"]:
            if code != 0:
                exit_code = 1
            continue
        log.warning("worker %d (pid %d) exited with %s; starting a replacement", index, pid, code)
        if time.monotonic() - started < RESTART_WINDOW_S:
            state["quick_restarts"] += 1
            if state["quick_restarts"] > MAX_QUICK_RESTARTS:
                log.error("workers keep dying right after they start; giving up")
                on_stop(signal.SIGTERM, None)
                exit_code = 1
                continue
            time.sleep(min(2.0, 0.1 * 2 ** state["quick_restarts"]))
        else:
            state["quick_restarts"] = 0
        spawn(index)
    log.info("all workers stopped")
    return exit_code
