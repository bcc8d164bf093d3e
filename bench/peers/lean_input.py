"""What the bench's lean clients (least_client.py, raw_client.py) share: the job's requests of
instances, read by the job's own reader, and the CPU a client has spent."""

import resource
from typing import Iterator

from hyperserve.server.batch import records
from hyperserve.server.batch.cli import BATCH_SIZE


def instance_batches(path: str) -> Iterator[list[bytes]]:
    """The file's records in requests of BATCH_SIZE, as the job reads a JSON lines shard: counted
    first, then read a block at a time, each line stripped and blank lines skipped."""
    count, _ = records.index(path, records.JSONL, every=1 << 62)  # the count; no shard starts
    return (batch.data for batch in records.read(path, records.JSONL, 0, count, 0, BATCH_SIZE))


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
