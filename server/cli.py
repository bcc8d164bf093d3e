"""The ``hyperserve`` command: ``serve`` a model, ``inspect`` what would be served."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from . import __version__
from .config import SAGEMAKER_MODEL_DIR, SERVE_OPTIONS, add_options, platform_model_uri


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperserve",
        description="A fast model inference server for the Vertex AI, KServe v1 and SageMaker contracts.")
    parser.add_argument("--version", action="version", version=f"hyperserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve a model over HTTP",
                           description="Serve a model: bind the port at once, answer health 503 while the model "
                                       "loads, 200 once it can serve, and drain gracefully on SIGTERM.")
    serve.add_argument("model_uri", nargs="?", default=platform_model_uri(), metavar="MODEL_URI",
                       help="a directory, a model file, or gs://bucket/prefix (default: $AIP_STORAGE_URI, "
                            f"else $AZUREML_MODEL_DIR, else {SAGEMAKER_MODEL_DIR} when it holds files); "
                            "served as --model-name")
    serve.add_argument("--model", action="append", metavar="NAME[:VERSION]=URI",
                       help="one more model to serve (repeatable)")
    serve.add_argument("--model-config", metavar="FILE", default=os.environ.get("HYPERSERVE_MODEL_CONFIG"),
                       help="JSON file listing models and per-model settings [env: HYPERSERVE_MODEL_CONFIG]")
    serve.add_argument("--default-model", metavar="NAME", default=os.environ.get("HYPERSERVE_DEFAULT_MODEL"),
                       help="model the Vertex and SageMaker routes use (default: the first given) "
                            "[env: HYPERSERVE_DEFAULT_MODEL]")
    add_options(serve, SERVE_OPTIONS)

    from .batch.cli import add_parser as add_batch

    add_batch(sub)

    from hyperserve.bench.cli import add_parser as add_bench

    add_bench(sub)

    inspect = sub.add_parser("inspect", help="print the detected framework and the model's signature")
    inspect.add_argument("model_uri", metavar="MODEL_URI", help="a directory, a model file, or gs://bucket/prefix")
    add_options(inspect, [o for o in SERVE_OPTIONS if o.flag in
                          ("--framework", "--method", "--device", "--cache-dir", "--log-level",
                           "--trust-model-code")])
    return parser


def _inspect(args) -> int:
    from hyperserve.handlers.base import HandlerConfig

    from .errors import ServingError
    from .repository.model import load_handler

    config = HandlerConfig(device=args.device, method=args.method, trust_model_code=args.trust_model_code)
    try:
        loaded = load_handler(args.model_uri, framework=args.framework, config=config,
                              cache_dir=Path(args.cache_dir or tempfile.gettempdir()))
    except ServingError as err:
        print(f"hyperserve inspect: {err.message}", file=sys.stderr)
        return 2
    info = {"framework": loaded.framework, "artifact": str(loaded.artifact),
            **loaded.handler.describe(), "signature": loaded.handler.signature().describe()}
    print(json.dumps(info, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .logs import configure

    configure(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "batch":
        from .batch.cli import main as batch_main

        code = batch_main(args)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # model threads may still be inside a framework call
    if args.command == "bench":
        from hyperserve.bench.cli import main as bench_main

        return bench_main(args)
    from .serve import run

    code = run(args)
    # Model threads may still be inside a framework call after the grace period; do not wait on them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
