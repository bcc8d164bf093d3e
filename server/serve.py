"""``hyperserve serve``: bind at once, load the model in the background, drain on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
from pathlib import Path

from hyperserve.handlers.base import HandlerConfig

from .app import App
from .http import HttpServer, Limits
from .repository.model import DeployedModel

log = logging.getLogger("hyperserve")


def _load_in_background(model: DeployedModel, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """A daemon thread, so a load still running at shutdown never holds the process."""
    future = loop.create_future()

    def run():
        try:
            model.load()
        except BaseException as err:  # noqa: BLE001 - reported through the future
            loop.call_soon_threadsafe(lambda e=err: future.done() or future.set_exception(e))
        else:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

    threading.Thread(target=run, name=f"load-{model.name}", daemon=True).start()
    return future


def build(args: argparse.Namespace) -> tuple[App, DeployedModel, Limits]:
    handler_config = HandlerConfig(device=args.device, intra_op_threads=args.intra_op_threads,
                                   inter_op_threads=args.inter_op_threads, method=args.method)
    model = DeployedModel(args.model_name, args.model_uri, framework=args.framework, handler_config=handler_config,
                          cache_dir=Path(args.cache_dir), threads=args.model_threads, max_queue=args.max_queue,
                          max_batch_size=args.max_batch_size, max_queue_delay=args.max_queue_delay_us / 1e6)
    app = App({model.name: model}, model.name, health_route=args.health_route, predict_route=args.predict_route,
              deployed_model_id=os.environ.get("AIP_DEPLOYED_MODEL_ID", ""), request_timeout=args.request_timeout)
    limits = Limits(max_header_bytes=args.max_header_size, max_body_bytes=args.max_body_size,
                    header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                    keepalive_timeout=args.keepalive_timeout)
    return app, model, limits


async def serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    app, model, limits = build(args)
    server = HttpServer(app, limits, loop)
    port = await server.start(args.host, args.port)
    log.info("listening on %s:%d (health %s, predict %s)", args.host, port, args.health_route, args.predict_route)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = _load_in_background(model, loop)
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)

    exit_code = 0
    if loading.done() and loading.exception() is not None:
        err = loading.exception()
        log.error("model '%s' failed to load: %s", model.name, err, exc_info=err)
        # Keep answering 503 for a moment, so probes and logs see why, then let the platform restart us.
        try:
            await asyncio.wait_for(stop.wait(), args.load_failure_exit_delay)
        except TimeoutError:
            pass
        exit_code = 1
    else:
        await stop.wait()
        log.info("shutting down: health is 503, finishing in-flight requests (grace %.0fs)", args.grace_period)

    app.draining = True
    model.lifecycle.fire("drain", "draining")
    clean = await server.shutdown(args.grace_period if exit_code == 0 else 0.0)
    if not clean:
        log.warning("grace period over with requests still in flight; closing their connections")
    app.close()
    log.info("stopped")
    return exit_code


def run(args: argparse.Namespace) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        return asyncio.run(serve(args))
    return uvloop.run(serve(args))
