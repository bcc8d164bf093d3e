"""What the bench's lean clients (least_client.py, raw_client.py) share: the job's requests of
instances, read from JSON lines as the job reads them, and the CPU a client has spent."""

import resource
from typing import IO, Iterator

from hyperserve.server.batch.cli import BATCH_SIZE
from hyperserve.server.batch.records import READ_BYTES, split_lines


def instance_batches(source: IO[bytes]) -> Iterator[list[bytes]]:
    """The file's lines in requests of BATCH_SIZE, the last one shorter, each line stripped (a last
    line with no newline too, as the job strips it). Blank lines are not skipped: the bench's
    inputs have none."""
    tail = b""
    lines: list[bytes] = []
    while True:
        block = source.read(READ_BYTES)
        if block:
            got, tail = split_lines(tail, block)
        else:
            last = tail.strip()
            got = [last] if last else []
        lines += got
        taken = 0
        while len(lines) - taken >= BATCH_SIZE or (not block and taken < len(lines)):
            yield lines[taken:taken + BATCH_SIZE]
            taken += BATCH_SIZE
        if not block:
            return
        lines = lines[taken:]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
