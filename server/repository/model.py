"""A deployed model: its artifacts, its handler, its runner and its lifecycle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from hyperserve.handlers.base import Handler, HandlerConfig

from ..errors import ServingError
from ..lifecycle import Lifecycle
from ..scheduler.runner import ModelRunner
from ..types import Signature
from .storage import fetch

log = logging.getLogger("hyperserve.model")
# What clients are told of a failed load (health, model status): the cause, which may hold paths
# and directory listings, goes only to the log.
LOAD_FAILED = "not loaded: its load failed (the server's log says why)"


@dataclass
class LoadedArtifacts:
    framework: str
    artifact: Path
    handler: Handler


def latest_version_dir(path: Path) -> tuple[Path, str | None]:
    """TF Serving's layout: a directory holding only numeric version directories serves the highest."""
    if not path.is_dir():
        return path, None
    children = [p for p in path.iterdir() if not p.name.startswith(".")]
    versions = [p for p in children if p.is_dir() and p.name.isdigit()]
    if versions and len(versions) == len(children):
        newest = max(versions, key=lambda p: int(p.name))
        return newest, newest.name
    return path, None


def load_handler(uri: str, *, framework: str, config: HandlerConfig, cache_dir: Path,
                 cache_max_bytes: int = 0) -> LoadedArtifacts:
    """Fetch ``uri``, choose the framework (detected unless forced) and load the handler."""
    from hyperserve.handlers import registry

    path, _ = latest_version_dir(fetch(uri, cache_dir, max_cache_bytes=cache_max_bytes,
                                       max_archive_bytes=config.max_archive_bytes))
    if framework in ("", "auto"):
        framework, artifact = registry.detect(path)
    else:
        cls = registry.load_class(framework)
        artifact = cls.find_artifact(path) if path.is_dir() else path
        if artifact is None:
            artifact = path  # the handler decides what a whole directory means
    cls = registry.load_class(framework)
    if config.options.get("isolation") == "process":
        from ..scheduler.isolation import IsolatedHandler

        handler = IsolatedHandler(cls, framework, config.options.get("processes", 1))
    else:
        handler = cls()
    handler.load(artifact, config)
    return LoadedArtifacts(framework, artifact, handler)


def warm_up(handler: Handler, signature: Signature, count: int, body_file: str, name: str) -> None:
    """Run the model before it is ready, so the first real request is not the slow one."""
    if not count and not body_file:
        return
    from ..codecs.vertex_json import decode_predict_request
    from ..warmup import generated_request

    if body_file:
        try:
            request, _ = decode_predict_request(Path(body_file).read_bytes(), signature)
        except (OSError, ServingError) as err:
            raise ServingError(f"warm-up file {body_file} is not a valid predict request for '{name}': {err}") from err
        requests = [request] * max(1, count)
    else:
        request = generated_request(signature)
        if request is None:
            log.warning("model '%s': its signature has no fixed input shapes; skipping generated warm-up", name)
            return
        requests = [request] * count
    started = time.perf_counter()
    for request in requests:
        handler.predict(request)
    log.info("model '%s' warmed up with %d calls in %.3fs", name, len(requests), time.perf_counter() - started)


class DeployedModel:
    def __init__(self, name: str, uri: str, *, framework: str, handler_config: HandlerConfig,
                 cache_dir: Path, threads: int, max_queue: int, max_batch_size: int = 0,
                 max_queue_delay: float = 0.0, version: str = "1", warmup_requests: int = 0,
                 warmup_file: str = "", preferred_batch_sizes: tuple[int, ...] = (), metrics: bool = True,
                 cache_max_bytes: int = 0, traced: bool = False, adaptive_hold: bool = True):
        self.name = name
        self.adaptive_hold = adaptive_hold  # the scheduler's hold for partners (ModelRunner)
        self.traced = traced
        self.cache_max_bytes = cache_max_bytes
        self.metrics = metrics
        self.load_seconds = 0.0  # downloading, loading and warming up (metrics)
        self.preferred_batch_sizes = preferred_batch_sizes
        self.warmup_requests = warmup_requests
        self.warmup_file = warmup_file
        self.version = version
        self.uri = uri
        self.framework = framework
        self.handler_config = handler_config
        self.cache_dir = cache_dir
        self.threads = threads
        self.max_queue = max_queue
        self.max_batch_size = max_batch_size  # 0: the handler's default
        self.max_queue_delay = max_queue_delay
        self.lifecycle = Lifecycle()
        self.runner: ModelRunner | None = None
        self.signature: Signature | None = None
        self.handler: Handler | None = None
        self.artifact: Path | None = None

    def load(self) -> None:
        """Blocking: download, load, start serving. Raises on failure (and the lifecycle says why)."""
        self.load_artifacts()
        self.start_serving()

    def fetch(self) -> None:
        """Download the artifacts now and point the model at the local copy (a supervisor does
        this once, so its workers do not each download)."""
        started = time.perf_counter()
        self.uri = str(fetch(self.uri, self.cache_dir, max_cache_bytes=self.cache_max_bytes,
                             max_archive_bytes=self.handler_config.max_archive_bytes))
        self.load_seconds += time.perf_counter() - started

    def fork_safe(self) -> bool:
        """Whether the artifacts (fetched by now) may be loaded here and used by forked children:
        the handler says so, and it is not isolated in processes of its own (those load it)."""
        from hyperserve.handlers import registry

        framework = self.framework
        if framework in ("", "auto"):
            framework, _ = registry.detect(latest_version_dir(Path(self.uri))[0])
        isolated = self.handler_config.options.get("isolation") == "process"
        return registry.load_class(framework).capabilities.fork_safe and not isolated

    def load_artifacts(self) -> None:
        """Fetch and load the handler (in a supervisor before forking, when the handler allows it)."""
        self.lifecycle.fire("load", "downloading and loading artifacts")
        started = time.perf_counter()
        try:
            loaded = load_handler(self.uri, framework=self.framework, config=self.handler_config,
                                  cache_dir=self.cache_dir, cache_max_bytes=self.cache_max_bytes)
        except Exception:
            self.lifecycle.fire("failed", LOAD_FAILED)
            raise
        self.handler = loaded.handler
        self.framework = loaded.framework
        self.signature = self.handler.signature()
        self.artifact = loaded.artifact
        self.load_seconds += time.perf_counter() - started

    def start_serving(self) -> None:
        """Create the runner (threads never cross a fork), warm up, turn ready."""
        started = time.perf_counter()
        try:
            handler = self.handler
            threads = self.calls_at_once()
            max_batch_size = self.max_batch_size or handler.capabilities.default_max_batch_size
            if self.signature.max_batch_size > 0:  # the model's own limit (e.g. a TorchServe batchSize)
                max_batch_size = min(max_batch_size, self.signature.max_batch_size)
            max_queue_delay = self.max_queue_delay or handler.queue_delay_s() or 0.0
            self.runner = ModelRunner(handler, name=self.name, threads=threads, max_queue=self.max_queue,
                                      max_batch_size=max_batch_size, max_queue_delay=max_queue_delay,
                                      preferred_batch_sizes=self.preferred_batch_sizes, timed=self.metrics,
                                      traced=self.traced, adaptive_hold=self.adaptive_hold)
            warm_up(handler, self.signature, self.warmup_requests, self.warmup_file, self.name)
        except Exception:
            self.lifecycle.fire("failed", LOAD_FAILED)
            raise
        self.load_seconds += time.perf_counter() - started
        self.lifecycle.fire("loaded")
        log.info("model '%s' ready: %s from %s", self.name, self.framework, self.artifact)

    def calls_at_once(self) -> int:
        """Framework calls in flight: one per child process under process isolation, else
        --model-threads (0: 2 for frameworks that release the GIL, else 1). The scheduler caps a
        handler that is not thread-safe at one."""
        options = self.handler_config.options
        if options.get("isolation") == "process":
            return max(1, options.get("processes", 1))
        capabilities = self.handler.capabilities
        if not capabilities.thread_safe and self.threads > 1:
            log.info("model '%s': its %s handler is not thread-safe, so it runs one call at a time "
                     "(--model-threads %d does not apply; --isolation process or --workers add parallel calls)",
                     self.name, self.framework, self.threads)
        return self.threads or (2 if capabilities.releases_gil else 1)

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready

    def not_ready_error(self) -> ServingError:
        return ServingError(f"model '{self.name}' is not ready ({self.lifecycle.reason})", status=503)
