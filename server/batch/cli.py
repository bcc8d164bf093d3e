"""``hyperserve batch``: the command line of a batch prediction job, and the engines that run it."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import orjson

from ..config import SERVE_OPTIONS, add_options
from ..errors import ServingError
from .errors import JobFailed
from .instances import InstanceConfig
from .engines import against_endpoint, in_process, in_processes
from .job import JobSpec, finish, plan, summary
from .output import Output
from .records import BIGQUERY, FORMATS

log = logging.getLogger("hyperserve.batch")

# The serve options that shape how a model loads and runs; the batch job takes them too.
MODEL_FLAGS = ("--workers", "--model-name", "--framework", "--predictor", "--cpr-handler", "--entry-script", "--method",
               "--device",
               "--trust-model-code", "--install-requirements", "--max-archive-bytes", "--intra-op-threads",
               "--inter-op-threads", "--model-threads", "--isolation", "--max-batch-size", "--preferred-batch-sizes",
               "--max-queue-delay-us", "--max-queue", "--warmup-requests", "--warmup-file", "--request-timeout",
               "--cache-dir", "--log-level", "--log-format")

# A job keeps many requests queued, so the scheduler merges them into framework calls larger than
# one request (bench/batch_compare.py: 2.4 times the rows/s of 64-instance calls on iris).
BATCH_DEFAULTS = {o.flag: dataclasses.replace(o, default=4096, help="most instances one framework call takes: queued "
                                              "requests are merged up to it (1: one request a call)")
                  for o in SERVE_OPTIONS if o.flag == "--max-batch-size"}
BATCH_DEFAULTS.update({o.flag: dataclasses.replace(o, help="processes running shards in process: forked from one load "
                                                   "of a fork-safe model (scikit-learn), else each loading it once "
                                                   "(0: one per GPU when one is usable, else one per core)")
                       for o in SERVE_OPTIONS if o.flag == "--workers"})

DESCRIPTION = """\
Run a Vertex AI batch prediction job: read instances from files, send them to the model in
requests of --batch-size instances, and write the predictions under --output as
prediction.results-NNNNN-of-MMMMM (JSON lines, in input order: {"instance" or "key", "prediction"}
or {..., "error": {"code", "message"}}), with per-error counts in prediction.errors_stats-* and a
summary in job_summary.json (also printed). Runs in process (the server's codecs, scheduler and
handlers; no HTTP), against a running server (--endpoint), or on Ray Data (--engine ray).
Re-running the same command resumes: committed shards are skipped.

With --entry-script (or --mini-batch-size and the flags with it, for an MLflow model) it runs an
Azure ML batch endpoint job instead: the input files go to the script's run(mini_batch) (or are
read as DataFrames and images for the MLflow model) and the rows returned are appended to one
headerless predictions.csv; --format does not apply."""

FORMATS_HELP = """\
input formats (Vertex's instancesFormat):
  jsonl           each line is one instance, sent as written
  csv             a header row, then one instance per row: an array (unquoted values are numbers,
                  quoted ones strings; no cell may hold a newline), or an object keyed by the header
                  with --instance-type object
  tf-record       each record's bytes become {"b64": ...} (the masked CRC-32C is checked)
  tf-record-gzip  the same, gzip-compressed
  file-list       each line is a URI (local, gs://, s3://, az://, http(s)://); its bytes become {"b64": ...}, and
                  its output line names it by the URI

TorchServe archives (and --wrap-data) get every instance that is not a JSON object as
{"data": <instance>}, as Vertex's PyTorch images do; JSON object lines are sent as written.

exit status: 0 when the job ran (row failures are in the output), 1 for a job-level failure
(unreadable input, no model, an output that cannot be written, an endpoint that never answers,
or more failed rows than --max-error-ratio), 2 for bad arguments."""


def _fields(text: str | None) -> list[str] | None:
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


def add_parser(sub) -> None:
    batch = sub.add_parser("batch", help="run a batch prediction job (Vertex AI's formats and output files)",
                           description=DESCRIPTION, epilog=FORMATS_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("model_uri", nargs="?", default="", metavar="MODEL_URI",
                       help="a directory, a model file, or a gs://, s3://, az:// or http(s):// URI "
                            "(not needed with --endpoint)")
    job = batch.add_argument_group("the job")
    job.add_argument("--input", action="append", required=True, metavar="URI[,URI...]",
                     help="input files, local or remote (gs://, s3://, az://, http(s)://), wildcards allowed "
                          "(gs://bucket/*.jsonl); repeatable")
    job.add_argument("--format", metavar="FORMAT",
                     help=f"instancesFormat: {', '.join(FORMATS)} (see below); not for an Azure ML job")
    job.add_argument("--output", required=True, metavar="PREFIX",
                     help="a local directory or a gs://, s3:// or az:// prefix")
    job.add_argument("--instance-type", choices=("object", "array"),
                     help="instanceConfig.instanceType: CSV rows as objects keyed by the header, or JSON "
                          "objects as arrays (in --included-fields order)")
    job.add_argument("--included-fields", metavar="F1,F2", help="instanceConfig.includedFields")
    job.add_argument("--excluded-fields", metavar="F1,F2", help="instanceConfig.excludedFields")
    job.add_argument("--key-field", metavar="FIELD",
                     help="instanceConfig.keyField: not sent to the model; output lines carry \"key\" instead "
                          "of \"instance\"")
    job.add_argument("--instance-config", metavar="JSON",
                     help="Vertex's instanceConfig as JSON (instead of the four flags above)")
    job.add_argument("--wrap-data", action="store_true",
                     help="send every instance that is not a JSON object as {\"data\": ...} (automatic for "
                          "TorchServe archives)")
    job.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                     help=f"instances per request (manualBatchTuningParameters.batch_size; default: {BATCH_SIZE})")
    job.add_argument("--parameters", metavar="JSON",
                     help="the requests' \"parameters\" object (none is sent unless given)")
    job.add_argument("--rows-per-shard", type=int, default=10_000,
                     help="instances per output shard, the unit a re-run resumes by (default: 10000)")
    job.add_argument("--max-error-ratio", type=float, default=0.1,
                     help="exit 1 when more than this share of instances failed (default: 0.1)")
    job.add_argument("--concurrency", type=int, default=None,
                     help="requests in flight (default: 64 to an --endpoint; in process, enough to fill one framework "
                          "call of --max-batch-size, at least 32 and at most 256: those queued together share a call)")
    job.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="a progress bar with rows/s and ETA (default: on a terminal; else a log line per shard)")
    azure = batch.add_argument_group(
        "an Azure ML batch endpoint job", "with --entry-script (a scoring script's run(mini_batch)), or with any of "
        "these flags for an MLflow model (CSV and parquet files → DataFrames, images → arrays; rows of row, "
        "prediction, file_name): the input files go to run() --mini-batch-size at a time")
    azure.add_argument("--mini-batch-size", type=int, metavar="N", help="files per run() call (default: 10)")
    azure.add_argument("--output-action", choices=("append_row", "summary_only"),
                       help="append_row (default): every row run() returns, in one headerless --output-file-name; "
                            "summary_only: the script writes its own output")
    azure.add_argument("--error-threshold", type=int, default=-1, metavar="N",
                       help="failed files after which the job stops, exit 1 (default: -1, never)")
    azure.add_argument("--output-file-name", default="predictions.csv", metavar="NAME",
                       help="append_row's file under --output (default: predictions.csv)")
    azure.add_argument("--mini-batch-retries", type=int, metavar="N",
                       help="retries of a mini-batch whose run() raised, before its files count as failed "
                            "(default: 3, Azure's)")
    where = batch.add_argument_group("where it runs")
    where.add_argument("--endpoint", metavar="URL",
                       help="POST the requests to this predict URL of a running server or container instead "
                            "of loading the model here")
    where.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                       help="a header on every --endpoint request (e.g. Authorization); repeatable")
    where.add_argument("--max-retries", type=int, default=8,
                       help="--endpoint: retries of a request after a connection error, 429 or 5xx, with "
                            "exponential backoff from 0.5 s to 30 s, or as long as the answer's Retry-After asks "
                            "(at most 30 s) (default: 8)")
    where.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local (default) or ray: the shards as Ray Data tasks on an actor pool")
    where.add_argument("--ray-address", metavar="ADDRESS",
                       help="the Ray cluster (default: $RAY_ADDRESS, else the one `ray start --head` runs "
                            "here, else a new local one)")
    where.add_argument("--ray-actors", type=int, default=0,
                       help="actors, each loading the model once (default: the cluster's CPUs)")
    add_options(batch, [BATCH_DEFAULTS.get(o.flag, o) for o in SERVE_OPTIONS if o.flag in MODEL_FLAGS])


def job_spec(args: argparse.Namespace) -> JobSpec:
    if args.format == BIGQUERY:
        raise JobFailed("BigQuery sources are not supported: export the table to JSON lines "
                        "(bq extract --destination_format NEWLINE_DELIMITED_JSON ...) and pass --format jsonl")
    if args.format not in FORMATS:
        raise JobFailed(f"--format takes {', '.join(FORMATS)}; got {args.format!r}")
    if args.output.startswith("bq://"):
        raise JobFailed("BigQuery destinations are not supported: write to a local, gs://, s3:// or az:// --output")
    flags = (args.instance_type, args.included_fields, args.excluded_fields, args.key_field)
    if args.instance_config:
        if any(flags):
            raise JobFailed("--instance-config replaces --instance-type, --included-fields, --excluded-fields "
                            "and --key-field: give one or the other")
        config = InstanceConfig.from_json(args.instance_config)
    else:
        config = InstanceConfig.of(args.instance_type, _fields(args.included_fields), _fields(args.excluded_fields),
                                   args.key_field)
    parameters = None
    if args.parameters is not None:
        try:
            doc = orjson.loads(args.parameters)
        except orjson.JSONDecodeError as err:
            raise JobFailed(f"--parameters is not JSON: {err}") from None
        if type(doc) is not dict:
            raise JobFailed("--parameters must be a JSON object")
        parameters = orjson.dumps(doc)
    concurrency = args.concurrency
    if concurrency is None:
        concurrency = ENDPOINT_CONCURRENCY if args.endpoint else in_process_concurrency(args.max_batch_size,
                                                                                        args.batch_size)
    if concurrency < 1:
        raise JobFailed("--concurrency must be at least 1")
    if not args.endpoint and not args.model_uri:
        raise JobFailed("no model: give MODEL_URI, or --endpoint URL of a running server")
    inputs = [uri for value in args.input for uri in value.split(",") if uri]
    return JobSpec(inputs=inputs, format=args.format, output=args.output, config=config, wrap_data=args.wrap_data,
                   batch_size=args.batch_size, parameters=parameters, rows_per_shard=args.rows_per_shard,
                   max_error_ratio=args.max_error_ratio, concurrency=concurrency,
                   cache_dir=Path(args.cache_dir), progress=args.progress)


BATCH_SIZE = 64  # Vertex's default manualBatchTuningParameters.batch_size

# Against hyperserve's own server on 2 cores, 32 in flight gave 1.7M rows/s, 64 gave 2.1M, 128 2.0M:
# a server merges what is in flight into one call, so more requests are fewer calls.
ENDPOINT_CONCURRENCY = 64


def in_process_concurrency(max_batch_size: int, batch_size: int) -> int:
    """Requests in flight in process: enough to fill one call (64 with the defaults; with 32, calls
    were half as large, and the job 1.17 times slower on iris)."""
    return max(32, min(256, -(-max_batch_size // max(1, batch_size))))


def run_loop(coro):
    from ..serve import run_loop as serve_loop

    return serve_loop(coro)


def is_mini_batch_job(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "entry_script", "")) or args.mini_batch_size is not None or \
        args.output_action is not None or args.mini_batch_retries is not None


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        if is_mini_batch_job(args):
            if args.endpoint or args.format:
                raise JobFailed("an Azure ML batch job (--entry-script or --mini-batch-size) reads files, not "
                                "instances: it takes neither --format nor --endpoint")
            from .mini_batches import main as mini_batch_main

            return mini_batch_main(args)
        if not args.format:
            raise JobFailed(f"--format is required: {', '.join(FORMATS)}")
        spec = job_spec(args)
        out = Output(spec.output, spec.cache_dir / "batch-spool")
        files, shards = plan(spec)
        if args.engine == "ray":
            from .ray_engine import run_on_ray

            ran = run_on_ray(args, spec, files, shards, out)
        elif args.endpoint:
            ran = run_loop(against_endpoint(args, spec, files, shards, out))
        else:
            from ..workers import resolve_workers

            workers = min(resolve_workers(args), len(shards))
            if workers > 1:
                ran = in_processes(args, spec, files, shards, out, workers)
            else:
                ran = run_loop(in_process(args, spec, files, shards, out))
        return finish(spec, out, summary(spec, ran.results, time.monotonic() - started, ran.predict_s, ran.engine))
    except (JobFailed, ServingError) as err:
        log.error("batch job failed: %s", err.message)
        return 1
