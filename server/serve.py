"""``hyperserve serve``: bind at once, load the models in the background, drain on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from hyperserve.handlers.base import HandlerConfig

from . import __version__
from .dataplane import DataPlane
from .errors import ServingError
from .ports import refuse_if_served
from .http import HttpServer, Limits
from .repository.model import DeployedModel
from .logs import RequestTrace, access_logger, json_chosen
from .tracing import RequestSpans, otlp_tracer, tracing_on
from .metrics.service import WorkerMetrics
from .protocols import GRPC, Context, Settings, build_router, parse_protocols
from .protocols import metrics as metrics_protocol
from .repository.models import ModelRepository, model_specs
from .router import Router

log = logging.getLogger("hyperserve")

APP_TIMEOUT_MARGIN_S = 5.0
SWITCH_INTERVAL_S = 0.0005  # see serve(): how soon a thread holding the GIL yields it to the loop


def in_background(fn, loop: asyncio.AbstractEventLoop, name: str) -> asyncio.Future:
    """Run ``fn`` in a daemon thread, so work still running at shutdown never holds the process."""
    future = loop.create_future()

    def run():
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - reported through the future
            loop.call_soon_threadsafe(lambda e=err: future.done() or future.set_exception(e))
        else:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def parse_sizes(value) -> tuple[int, ...]:
    """"8,16,32" (flag) or [8, 16, 32] (config file) → (8, 16, 32)."""
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = [v for v in str(value or "").split(",") if v.strip()]
    try:
        sizes = tuple(int(v) for v in items)
    except ValueError:
        raise ServingError(f"preferred batch sizes must be integers, got {value!r}") from None
    if any(size < 1 for size in sizes):
        raise ServingError(f"preferred batch sizes must be positive, got {value!r}")
    return sizes


def batch_limit(value) -> int:
    """--max-batch-size (or a model's max_batch_size in --model-config): 0 leaves it to the handler."""
    if type(value) is not int or value < 0:
        raise ServingError(f"--max-batch-size must be 0 (the handler's default) or a number of instances, "
                           f"got {value!r}")
    return value


def cpr_options(args: argparse.Namespace) -> dict[str, str]:
    """A CPR predictor or handler from the flags or the variables Google's CPR image sets."""
    from hyperserve.handlers.cpr import from_environment

    predictor, handler = from_environment()
    predictor, handler = args.predictor or predictor, args.cpr_handler or handler
    if not predictor and not handler:
        return {}
    return {"predictor": predictor, "cpr_handler": handler}


DEFAULT_PORT = 8080
AZUREML_PORT = 5001


def scoring_script_settings(args: argparse.Namespace, environ=os.environ) -> None:
    """What Azure's server does without flags, for an Azure ML scoring script: the app root as the
    model when none is given, port 5001 (Vertex's AIP_HTTP_PORT still wins), SCORING_TIMEOUT_MS."""
    script = getattr(args, "entry_script", "")
    if getattr(args, "port", 0) is None:
        args.port = AZUREML_PORT if script else DEFAULT_PORT
    if not script:
        return
    from hyperserve.handlers.azureml.script import app_root

    if not args.model_uri and not args.model and not args.model_config:
        args.model_uri = str(app_root(environ))
    if environ.get("SCORING_TIMEOUT_MS"):
        try:
            args.request_timeout = int(environ["SCORING_TIMEOUT_MS"]) / 1000
        except ValueError:
            raise ServingError(f"SCORING_TIMEOUT_MS must be milliseconds, got {environ['SCORING_TIMEOUT_MS']!r}") \
                from None


def handler_options(args: argparse.Namespace, framework: str) -> tuple[str, dict[str, str]]:
    """The framework a model's flags choose (CPR's predictor, a scoring script) and its handler's options."""
    cpr = cpr_options(args)
    if framework in ("", "auto"):
        framework = "azureml" if getattr(args, "entry_script", "") else "cpr" if cpr else framework
    if framework == "cpr":
        return framework, dict(cpr)
    if framework == "azureml":
        return framework, {"entry_script": getattr(args, "entry_script", "")}
    return framework, {}


def deployed_models(args: argparse.Namespace) -> ModelRepository:
    """The models the flags (or the model config file) name, not loaded yet."""
    scoring_script_settings(args)
    specs, default = model_specs(args)
    models = []
    for spec in specs:
        framework, options = handler_options(args, spec.option(args, "framework"))
        isolation = spec.option(args, "isolation")
        if isolation not in ("thread", "process"):
            raise ServingError(f"--isolation takes thread or process, got {isolation!r}")
        if isolation == "process":
            options.update(isolation="process", processes=max(1, spec.option(args, "model_threads")))
        handler_config = HandlerConfig(options=options,
                                       device=spec.option(args, "device"),
                                       intra_op_threads=spec.option(args, "intra_op_threads"),
                                       inter_op_threads=spec.option(args, "inter_op_threads"),
                                       method=spec.option(args, "method"),
                                       trust_model_code=spec.option(args, "trust_model_code"),
                                       install_requirements=spec.option(args, "install_requirements"),
                                       max_archive_bytes=args.max_archive_bytes)
        models.append(DeployedModel(
            spec.name, spec.uri, version=spec.version, framework=framework,
            handler_config=handler_config, cache_dir=Path(args.cache_dir),
            threads=spec.option(args, "model_threads"), max_queue=spec.option(args, "max_queue"),
            max_batch_size=batch_limit(spec.option(args, "max_batch_size")),
            max_queue_delay=spec.option(args, "max_queue_delay_us") / 1e6,
            warmup_requests=spec.option(args, "warmup_requests"), warmup_file=spec.option(args, "warmup_file"),
            preferred_batch_sizes=parse_sizes(spec.option(args, "preferred_batch_sizes")),
            metrics=getattr(args, "metrics", False), cache_max_bytes=getattr(args, "cache_max_bytes", 0),
            traced=tracing_on(args)))
    return ModelRepository(models, default)


def request_tracing(args: argparse.Namespace):
    """The transport's hook that makes a request's trace current while its route runs: for JSON
    logs (their trace fields), else None (nothing to pay)."""
    if json_chosen(getattr(args, "log_format", "text")):
        return RequestTrace
    return None


def access_guard(args: argparse.Namespace):
    """--auth-tokens-file's guard for the routers and the gRPC service, or None."""
    if not getattr(args, "auth_tokens_file", ""):
        return None
    from .access import AccessTokens, Guard

    return Guard(AccessTokens(args.auth_tokens_file), health=args.auth_health, metrics=args.auth_metrics)


def build(args: argparse.Namespace) -> tuple[Router, DataPlane, Limits]:
    repository = deployed_models(args)
    plane = DataPlane(repository, request_timeout=args.request_timeout, server_version=__version__,
                      metrics=getattr(args, "metrics", False))
    names, explicit = parse_protocols(args.protocols)
    args.protocols_served = names
    settings = Settings(health_route=args.health_route, predict_route=args.predict_route,
                        deployed_model_id=os.environ.get("AIP_DEPLOYED_MODEL_ID", ""))
    router = build_router(Context(plane, settings), names, explicit, access_guard(args))
    if getattr(args, "access_log", 0) > 0:
        plane.recorder.also(access_logger(min(args.access_log, 1.0)))
    if getattr(args, "metrics", False):
        shared = getattr(args, "metrics_directory", None) or args.metrics_dir or None  # worker processes' files
        plane.worker_metrics = WorkerMetrics(plane, shared)
        router.add(metrics_protocol.NAME, metrics_protocol.routes(plane.worker_metrics))
    limits = Limits(max_header_bytes=args.max_header_size, max_body_bytes=args.max_body_size,
                    header_timeout=args.header_timeout, body_timeout=args.body_timeout,
                    keepalive_timeout=args.keepalive_timeout, send_timeout=args.send_timeout,
                    # a backstop: the data plane answers 504 at the request's own deadline first
                    app_timeout=args.request_timeout + APP_TIMEOUT_MARGIN_S if args.request_timeout > 0 else 0.0)
    return router, plane, limits


def build_or_report(args: argparse.Namespace):
    """build(), or None after logging why the model list is unusable (the caller exits 2)."""
    try:
        return build(args)
    except ServingError as err:
        log.error("%s", err.message)
        return None


def grpc_port(args: argparse.Namespace) -> int:
    """The gRPC port this run serves (0: none)."""
    return args.grpc_port if GRPC in args.protocols_served else 0


async def start_grpc(args: argparse.Namespace, plane: DataPlane, reuse_port: bool = False, guard=None):
    """The OIP v2 gRPC service on --grpc-port, unless switched off (port 0, or --protocols
    without grpc); without the grpc extra installed, only a warning unless grpc was asked for."""
    if not grpc_port(args):
        return None
    try:
        from .grpc.server import GrpcServer
        from .protocols.v2_grpc import InferenceServicer
    except ImportError as err:
        if GRPC in (args.protocols or ""):
            raise ServingError(f"--protocols grpc needs the grpc extra: pip install 'hyperserve[grpc]' ({err})") \
                from None
        log.warning("gRPC is off: the grpc extra is not installed (pip install 'hyperserve[grpc]'): %s", err)
        return None
    grpc_server = GrpcServer(plane, InferenceServicer(plane), args.grpc_max_message_bytes, reuse_port, guard)
    port = await grpc_server.start(args.host, args.grpc_port)
    log.info("gRPC (inference.GRPCInferenceService, grpc.health.v1.Health) on %s:%d", args.host, port)
    return grpc_server


async def start_metrics_port(args: argparse.Namespace, plane: DataPlane, limits: Limits,
                             loop: asyncio.AbstractEventLoop, reuse_port: bool, guard=None) -> HttpServer | None:
    """/metrics alone on --metrics-port (0: only on the main port)."""
    if not args.metrics_port or plane.worker_metrics is None:
        return None
    router = Router(guard)
    router.add(metrics_protocol.NAME, metrics_protocol.routes(plane.worker_metrics))
    server = HttpServer(router, limits, loop)
    if not reuse_port:
        refuse_if_served(args.host, args.metrics_port, "metrics")
    await server.start(args.host, args.metrics_port, reuse_port=reuse_port)
    return server


async def serve(args: argparse.Namespace, built=None, *, reuse_port: bool = False, slots=None,
                index: int = 0) -> int:
    """Serve until SIGTERM. In a worker, ``built`` comes from the supervisor (models possibly
    preloaded), ``slots`` shares readiness with the other workers."""
    loop = asyncio.get_running_loop()
    built = built or build_or_report(args)
    if built is None:
        return 2
    router, plane, limits = built
    models = plane.models
    if slots is not None:
        plane.cluster_ready = slots.all_ready
    provider = None
    if tracing_on(args):  # made here, in the worker: the exporter's thread does not survive a fork
        tracer, provider = otlp_tracer()
        spans = RequestSpans(tracer)
        plane.recorder.also(spans.observe)
    server = HttpServer(router, limits, loop, plane.recorder)
    server.tracing = spans if provider is not None else request_tracing(args)
    try:
        if not reuse_port:  # a supervisor checked and holds the ports of its workers
            refuse_if_served(args.host, args.port, "HTTP")
            refuse_if_served(args.host, grpc_port(args), "gRPC")
        port = await server.start(args.host, args.port, reuse_port=reuse_port)
    except (ServingError, OSError) as err:
        log.error("%s", getattr(err, "message", None) or f"cannot listen on {args.host}:{args.port}: {err}")
        plane.close()
        return 2
    try:
        grpc_server = await start_grpc(args, plane, reuse_port, router.guard)
        if grpc_server is not None and provider is not None:
            grpc_server.servicer.spans = spans
        metrics_server = await start_metrics_port(args, plane, limits, loop, reuse_port, router.guard)
    except (ServingError, OSError) as err:
        log.error("%s", getattr(err, "message", None) or err)
        await server.shutdown(0.0)
        return 2
    metrics = plane.worker_metrics
    if metrics is not None:
        metrics.connections = lambda: len(server.connections)
        metrics.start(loop)
    if slots is None:
        log.info("listening on %s:%d (health %s, predict %s; profiles %s)", args.host, port, args.health_route,
                 args.predict_route, ", ".join(router.profiles))

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loading = asyncio.gather(*(
        in_background(model.start_serving if model.handler is not None else model.load, loop, f"load-{model.name}")
        for model in models))
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)

    exit_code = 0
    if loading.done() and loading.exception() is not None:
        err = loading.exception()
        failed = [m.name for m in models if m.lifecycle.state.value == "failed"]
        log.error("model %s failed to load: %s", ", ".join(failed) or "?", err, exc_info=err)
        # Keep answering 503 for a moment, so probes and logs see why, then let the platform restart us.
        try:
            await asyncio.wait_for(stop.wait(), args.load_failure_exit_delay)
        except TimeoutError:
            pass
        exit_code = 1
    else:
        # What loading left is long-lived (models, modules): collections stop walking it, which
        # keeps the collector's pauses short on the request path.
        gc.collect()
        gc.freeze()
        # A codec thread holding the GIL hands it to the event loop after this long, not 5 ms:
        # health and small predicts stay quick while large bodies decode.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        if slots is not None:
            slots.set(index, True)
        await stop.wait()
        log.info("shutting down: health is 503, finishing in-flight requests (grace %.0fs)", args.grace_period)

    if slots is not None:
        slots.set(index, False)
    plane.draining = True
    for model in models:
        model.lifecycle.fire("drain", "draining")
    grace = args.grace_period if exit_code == 0 else 0.0
    if grpc_server is not None:
        _, clean = await asyncio.gather(grpc_server.shutdown(grace), server.shutdown(grace))
    else:
        clean = await server.shutdown(grace)
    if not clean:
        log.warning("grace period over with requests still in flight; closing their connections")
    if metrics_server is not None:
        await metrics_server.shutdown(0.0)
    if metrics is not None:
        metrics.stop()
    if provider is not None:
        provider.shutdown()  # the spans still batched go out
    plane.close()
    log.info("stopped")
    return exit_code


def run_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def run(args: argparse.Namespace) -> int:
    from .workers import resolve_workers, supervise

    try:
        scoring_script_settings(args)
    except ServingError as err:
        log.error("%s", err.message)
        return 2
    workers = resolve_workers(args)
    if workers == 1:
        return run_loop(serve(args))
    return supervise(args, workers)
