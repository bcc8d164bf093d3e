"""``hyperserve bench``: load-test any HTTP or OIP v2 gRPC endpoint; throughput and latency percentiles."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """Load-test an HTTP endpoint (a hyperserve deployment, or any peer) over keep-alive connections.
Closed loop by default (CONCURRENCY clients, each waits for its answer); --rate makes it open loop
(requests are due on schedule and latency counts from when they were due). Several comma-separated
--concurrency values run one after another and also plot throughput against concurrency.
--protocol v2 / v2-binary send Open Inference Protocol v2 requests (JSON / the binary tensor
extension) generated from the model's metadata to http://host:port/v2/models/MODEL/infer;
--protocol grpc drives ModelInfer on grpc://host:port/MODEL the same way."""


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="load-test an endpoint: throughput, latency percentiles, plots",
                       description=DESCRIPTION)
    p.add_argument("url", metavar="URL", help="http://host:port/path to send requests to (grpc://host:port/MODEL "
                                               "with --protocol grpc)")
    p.add_argument("--protocol", choices=("http", "v2", "v2-binary", "grpc"), default="http",
                   help="http: the body as given (default); v2, v2-binary, grpc: OIP v2 requests of --rows "
                        "instances generated from the model's metadata (unless --body gives one)")
    bodies = p.add_mutually_exclusive_group()
    bodies.add_argument("--body", type=Path, help="file holding the request body")
    bodies.add_argument("--bodies", type=Path, help="JSONL file: one request body per line, sent in turn")
    bodies.add_argument("--from-signature", metavar="METADATA_URL",
                        help="generate JSON instances from a model's metadata (GET /v1/models/{m}/metadata)")
    p.add_argument("--rows", type=int, default=1, help="instances per generated request (default: 1)")
    p.add_argument("--method", default=None, help="HTTP method (default: POST with a body, else GET)")
    p.add_argument("--header", action="append", default=[], metavar="K:V", help="extra request header (repeatable)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to measure (default: 10)")
    p.add_argument("--requests", type=int, default=None, help="stop after this many answers instead of a duration")
    p.add_argument("--concurrency", default="32", help="connections; a comma list runs a sweep (default: 32)")
    p.add_argument("--rate", type=float, default=None, help="open loop: requests per second")
    p.add_argument("--arrival", choices=("constant", "poisson"), default="constant", help="open-loop spacing")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default: 1)")
    p.add_argument("--label", default="", help="name of this server or run in tables and plots")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="write results as JSON here, and PNG plots beside it")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    return p


def _generated_body(metadata_url: str, rows: int) -> bytes:
    import httpx

    meta = httpx.get(metadata_url, timeout=30).json()
    inputs = meta.get("signature", {}).get("inputs") or meta.get("inputs") or []
    if not inputs:
        raise SystemExit(f"hyperserve bench: {metadata_url} lists no inputs")
    rng = random.Random(0)

    def value(dtype: str, shape: list[int]) -> Any:
        if shape:
            return [value(dtype, shape[1:]) for _ in range(max(1, shape[0]))]
        d = dtype.lower()
        if "int" in d:
            return rng.randint(0, 9)
        if "bool" in d:
            return rng.random() < 0.5
        if "str" in d or "bytes" in d or "object_" in d:
            return "text"
        return round(rng.uniform(-1, 1), 4)

    def instance() -> Any:
        parts = {}
        for spec in inputs:
            shape = [d if d and d > 0 else 1 for d in (spec.get("shape") or [-1])[1:]]
            parts[spec["name"]] = value(str(spec.get("dtype") or spec.get("datatype") or "float32"), shape)
        return next(iter(parts.values())) if len(parts) == 1 else parts

    return json.dumps({"instances": [instance() for _ in range(rows)]}).encode()


def load_bodies(args) -> list[bytes]:
    if args.body is not None:
        return [args.body.read_bytes()]
    if args.bodies is not None:
        lines = [line.strip().encode() for line in args.bodies.read_text().splitlines() if line.strip()]
        if not lines:
            raise SystemExit(f"hyperserve bench: {args.bodies} holds no requests")
        return lines
    if args.from_signature:
        return [_generated_body(args.from_signature, args.rows)]
    return [b""]


def _v2_model(url: str) -> tuple[str, str]:
    """http://host:port/v2/models/M[/versions/V]/infer → (http://host:port, M)."""
    base, sep, rest = url.partition("/v2/models/")
    if not sep or not rest.split("/")[0]:
        raise SystemExit(f"hyperserve bench: --protocol v2 needs a URL like http://host:port/v2/models/MODEL/infer, "
                         f"got {url}")
    return base, rest.split("/")[0]


def _generators(args, loadgen):
    """(concurrency, on_progress) → a generator to run, and the request body's size."""
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if args.protocol == "grpc":
        from . import grpc_loadgen, oip_requests

        target = grpc_loadgen.GrpcTarget.parse(args.url)
        if args.body is not None:
            request = args.body.read_bytes()  # a serialized ModelInferRequest
        else:
            metadata = oip_requests.grpc_metadata(target.address, target.model)
            request = oip_requests.grpc_request(target.model, oip_requests.generated(metadata, args.rows))
        return (lambda concurrency, on_progress: grpc_loadgen.GrpcLoadGenerator(
            target, request, concurrency=concurrency, duration=None if args.requests else args.duration,
            total_requests=args.requests, warmup=args.warmup, on_progress=on_progress), grpc_loadgen.run), len(request)
    target = loadgen.Target.parse(args.url)
    bodies = load_bodies(args)
    if args.protocol in ("v2", "v2-binary") and not any(bodies):
        from . import oip_requests

        tensors = oip_requests.generated(oip_requests.http_metadata(*_v2_model(args.url)), args.rows)
        if args.protocol == "v2":
            bodies = [oip_requests.json_body(tensors)]
        else:
            body, extra = oip_requests.binary_body(tensors)
            bodies, headers = [body], {**headers, **extra}
    method = args.method or ("POST" if any(bodies) else "GET")
    requests = [loadgen.build_request(target, method, body, headers) for body in bodies]
    return (lambda concurrency, on_progress: loadgen.LoadGenerator(
        target, requests, concurrency=concurrency, duration=None if args.requests else args.duration,
        total_requests=args.requests, warmup=args.warmup, rate=args.rate, arrival=args.arrival,
        on_progress=on_progress), loadgen.run), len(bodies[0])


def main(args) -> int:
    try:
        from . import loadgen, report
    except ImportError as err:
        print(f"hyperserve bench needs its extra: pip install 'hyperserve[bench]' ({err})", file=sys.stderr)
        return 2
    if args.protocol == "grpc" and args.rate:
        print("hyperserve bench: --protocol grpc runs closed loop only (no --rate)", file=sys.stderr)
        return 2
    try:
        (make, run), body_bytes = _generators(args, loadgen)
    except Exception as err:  # noqa: BLE001 - any way the target cannot be reached or read
        print(f"hyperserve bench: cannot reach {args.url}: {err}", file=sys.stderr)
        return 2
    levels = [int(c) for c in str(args.concurrency).split(",")]
    rows = []
    for concurrency in levels:
        bar = None
        on_progress = None
        if not args.no_progress and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=args.requests or round(args.duration), unit="req" if args.requests else "s",
                       desc=f"c={concurrency}", leave=False)

            def on_progress(elapsed, done, bar=bar):
                bar.n = done if args.requests else min(round(elapsed), bar.total)
                bar.set_postfix(rps=f"{done / max(elapsed, 1e-9):,.0f}")
                bar.refresh()

        try:
            stats = run(make(concurrency, on_progress))
        except OSError as err:
            print(f"hyperserve bench: cannot reach {args.url}: {err}", file=sys.stderr)
            return 2
        finally:
            if bar is not None:
                bar.close()
        rows.append(report.summarize(stats, {
            "label": args.label or args.url, "url": args.url, "concurrency": concurrency,
            "mode": "open" if args.rate else "closed", "rate": args.rate, "body_bytes": body_bytes,
            "protocol": args.protocol,
        }))
    print(report.table(rows, label="concurrency" if len(rows) > 1 else "label"))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": rows}, indent=2) + "\n")
        report.plot_cdf(rows, args.json.with_name(args.json.stem + "-cdf.png"),
                        label="concurrency" if len(rows) > 1 else "label")
        if len(rows) > 1:
            report.plot_throughput(rows, args.json.with_name(args.json.stem + "-throughput.png"), series="label")
    return 0 if all(not r["errors"] for r in rows) else 1
