"""A deployed model: its artifacts, its handler, its runner and its lifecycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hyperserve.handlers.base import Handler, HandlerConfig

from ..errors import ServingError
from ..lifecycle import Lifecycle
from ..scheduler.runner import ModelRunner
from ..types import Signature
from .storage import fetch

log = logging.getLogger("hyperserve.model")


@dataclass
class LoadedArtifacts:
    framework: str
    artifact: Path
    handler: Handler


def load_handler(uri: str, *, framework: str, config: HandlerConfig, cache_dir: Path) -> LoadedArtifacts:
    """Fetch ``uri``, choose the framework (detected unless forced) and load the handler."""
    from hyperserve.handlers import registry

    path = fetch(uri, cache_dir)
    if framework in ("", "auto"):
        framework, artifact = registry.detect(path)
    else:
        cls = registry.load_class(framework)
        artifact = cls.find_artifact(path) if path.is_dir() else path
        if artifact is None:
            artifact = path  # the handler decides what a whole directory means
    handler = registry.load_class(framework)()
    handler.load(artifact, config)
    return LoadedArtifacts(framework, artifact, handler)


class DeployedModel:
    def __init__(self, name: str, uri: str, *, framework: str, handler_config: HandlerConfig,
                 cache_dir: Path, threads: int, max_queue: int, max_batch_size: int = 64,
                 max_queue_delay: float = 0.0):
        self.name = name
        self.uri = uri
        self.framework = framework
        self.handler_config = handler_config
        self.cache_dir = cache_dir
        self.threads = threads
        self.max_queue = max_queue
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.lifecycle = Lifecycle()
        self.runner: ModelRunner | None = None
        self.signature: Signature | None = None
        self.handler: Handler | None = None

    def load(self) -> None:
        """Blocking: download and load. Raises ServingError (or the framework's error) on failure."""
        self.lifecycle.fire("load", "downloading and loading artifacts")
        try:
            loaded = load_handler(self.uri, framework=self.framework, config=self.handler_config,
                                  cache_dir=self.cache_dir)
            handler = loaded.handler
            self.framework = loaded.framework
            self.signature = handler.signature()
            threads = self.threads or (2 if handler.releases_gil else 1)
            self.runner = ModelRunner(handler, name=self.name, threads=threads, max_queue=self.max_queue,
                                      max_batch_size=self.max_batch_size, max_queue_delay=self.max_queue_delay)
            self.handler = handler
        except Exception as err:
            self.lifecycle.fire("failed", f"load failed: {err}")
            raise
        self.lifecycle.fire("loaded")
        log.info("model '%s' ready: %s from %s", self.name, self.framework, loaded.artifact)

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready

    def not_ready_error(self) -> ServingError:
        return ServingError(f"model '{self.name}' is not ready ({self.lifecycle.reason})", status=503)
