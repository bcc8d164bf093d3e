"""``--engine ray``: the job's shards as a Ray Data dataset, mapped by an actor pool. Each actor
loads the model once, in its own data plane, and runs whole shards (reads its own byte range,
writes and commits its own shard), so the output is the same files the local engine writes."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os

import orjson

from .errors import JobFailed
from .engines import ShardWorker, span_of, start_parallel
from .job import JobSpec, Ran, Shard, ShardResult
from .output import Output
from .sources import InputFile

log = logging.getLogger("hyperserve.batch")


# Ray Data's driver tops up an actor's queue about every 100 ms, and a shard can take about that
# long: with its default of 2 queued, actors idled between shards (W2 on 2 actors: 36-45 ms
# between shards, 74% busy, about 1.5 times 1 actor); with 4, 6 ms and 92% (1.9-2.0 times). An actor
# reads a shard's records itself, so a queued shard holds no memory.
SHARDS_QUEUED_PER_ACTOR = 4


class ShardActor(ShardWorker):
    """A Ray actor: a ShardWorker whose calls are Ray Data batches of shards."""

    def __init__(self, args: argparse.Namespace, spec: JobSpec, wrap: bool):
        logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        super().__init__(args, spec, wrap)

    def __call__(self, batch: dict) -> dict:
        results = []
        for i in range(len(batch["index"])):
            shard = Shard(**{f.name: _plain(batch[f.name][i]) for f in dataclasses.fields(Shard)})
            results.append(self.run(shard))
        return {"index": [r.index for r in results], "instances": [r.instances for r in results],
                "predictions": [r.predictions for r in results],
                "errors": [orjson.dumps(r.errors).decode() for r in results],
                "began": [r.span[0] for r in results], "ended": [r.span[1] for r in results]}


def quiet(context) -> None:
    """Ray Data's own progress bars and memory polling off: the job reports its own progress, and
    neither is worth a share of the actors' cores (their effect measured within noise)."""
    context.enable_progress_bars = False  # the job's own progress bar (or log line per shard) says it
    if hasattr(context, "memory_usage_poll_interval_s"):  # newer Ray: a thread per task polling memory
        context.memory_usage_poll_interval_s = None


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def run_on_ray(args: argparse.Namespace, spec: JobSpec, files: list[InputFile], shards: list[Shard],
               out: Output) -> Ran:
    if args.endpoint:
        raise JobFailed("--engine ray loads the model in Ray actors; it does not take --endpoint")
    wrap, progress, results, todo = start_parallel(args, spec, files, shards, out)
    if todo:
        with connected(args, progress.close) as ray:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            actors = max(1, min(args.ray_actors or cpus, len(todo)))
            log.info("Ray: %d shards on %d actors (%d CPUs in the cluster)", len(todo), actors, cpus)
            quiet(ray.data.DataContext.get_current())
            dataset = ray.data.from_items([dataclasses.asdict(s) for s in todo], override_num_blocks=len(todo))
            mapped = dataset.map_batches(ShardActor, fn_constructor_kwargs={"args": args, "spec": spec, "wrap": wrap},
                                         batch_size=1, num_cpus=1, compute=ray.data.ActorPoolStrategy(
                                             size=actors, max_tasks_in_flight_per_actor=SHARDS_QUEUED_PER_ACTOR))
            for row in mapped.iter_rows():
                result = ShardResult(int(row["index"]), int(row["instances"]), int(row["predictions"]),
                                     orjson.loads(row["errors"]), span=(float(row["began"]), float(row["ended"])))
                results[result.index] = result
                progress.shard_done(result)
    return Ran([results[s.index] for s in shards], span_of(results.values()), "ray")


@contextlib.contextmanager
def connected(args: argparse.Namespace, finally_=lambda: None, env_vars: dict[str, str] | None = None):
    """Ray, connected to --ray-address ($RAY_ADDRESS, else a local cluster) for the block; a task's
    failure inside it ends the job with Ray's reason."""
    try:
        import ray
        import ray.data  # noqa: F401 - the block uses it
    except ImportError:
        raise JobFailed("--engine ray needs Ray Data: pip install 'hyperserve[ray]'") from None
    address = args.ray_address or os.environ.get("RAY_ADDRESS") or None
    _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True,
                 runtime_env={"env_vars": env_vars} if env_vars else None)
    except Exception as err:  # noqa: BLE001 - Ray's errors for an unreachable cluster vary
        raise JobFailed(f"cannot connect to the Ray cluster {address or '(local)'}: {err}") from None
    try:
        yield ray
    except JobFailed:
        raise
    except Exception as err:  # noqa: BLE001 - a task's failure, as Ray reports it
        raise JobFailed(f"the Ray job failed: {_cause(err)}") from None
    finally:
        finally_()
        ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """A cluster address that nothing answers on fails at once (ray.init would retry for minutes)."""
    import socket

    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=10).close()
    except (OSError, ValueError) as err:
        raise JobFailed(f"cannot connect to the Ray cluster at {address}: {err}") from None


def _cause(err: BaseException) -> str:
    """The first line that says what went wrong, out of Ray's wrapped task errors."""
    text = str(err)
    for line in text.splitlines():
        if "JobFailed" in line or "Error:" in line:
            return line.strip()
    return text.splitlines()[0] if text else type(err).__name__
