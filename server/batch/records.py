"""The framing of a job's input files: what one record is, and where each shard's records start.

A record is one instance's raw bytes: a non-blank line of a JSON lines, CSV (after its header) or
file-list file, or a TFRecord's data. ``index`` walks a file once and notes where every
``every``-th record begins, so a shard opens its file at its own byte and reads only its records
(a gzip file is decompressed up to there: gzip cannot seek).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import IO, Iterator

import google_crc32c

from ..native import native
from .errors import JobFailed

JSONL, CSV, TF_RECORD, TF_RECORD_GZIP, FILE_LIST, BIGQUERY = \
    "jsonl", "csv", "tf-record", "tf-record-gzip", "file-list", "bigquery"
FORMATS = (JSONL, CSV, TF_RECORD, TF_RECORD_GZIP, FILE_LIST)

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(slots=True)
class Batch:
    """Consecutive records of one file: their bytes, and where each is (for error messages)."""

    data: list[bytes]
    path: str
    first_line: int = 0  # text formats: the first record's line, when the batch has no blank line
    lines: list[int] | None = None  # text formats with blank lines: each record's line
    offsets: list[int] | None = None  # TFRecords: each record's byte

    def line(self, i: int) -> int:
        return self.lines[i] if self.lines is not None else self.first_line + i

    def where(self, i: int) -> str:
        if self.offsets is not None:
            return f"{self.path}@{self.offsets[i]}"
        return f"{self.path}:{self.line(i)}"


def _open(path: str, fmt: str) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if fmt == TF_RECORD_GZIP else open(path, "rb")
    except OSError as err:
        raise JobFailed(f"cannot read input {path}: {err}") from None


def index(path: str, fmt: str, every: int) -> tuple[int, list[tuple[int, int]]]:
    """(records in the file, where records 0, every, 2*every, ... start: (byte, lines before it),
    lines being 0 for TFRecords)."""
    with _open(path, fmt) as f:
        try:
            if fmt in (TF_RECORD, TF_RECORD_GZIP):
                return _index_tfrecords(f, path, every)
            return _index_lines(f, every, header=fmt == CSV)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise JobFailed(f"cannot read input {path}: {err}") from None


def _index_lines(f: IO[bytes], every: int, header: bool) -> tuple[int, list[tuple[int, int]]]:
    offset = lines = 0
    if header:
        offset = len(f.readline())
        lines = 1
    state: LineState = (offset, 0, lines, offset, False)
    starts: list[tuple[int, int]] = []
    while block := f.read(READ_BYTES):
        found, state = index_lines(block, every, state)
        starts.extend(found)
    return state[1], starts


# Indexing a file of lines, a block at a time: (the block's byte offset in the file, records so
# far, lines so far, where the line under way began, whether that line is a record yet).
LineState = tuple[int, int, int, int, bool]


def index_lines(block: bytes, every: int, state: LineState) -> tuple[list[tuple[int, int]], LineState]:
    """Where records k * every begin in ``block`` (a record: a line holding more than whitespace),
    as (byte, lines before it), and the state after it: natively when the extension is built (a
    Python pass over every line took 0.1 s a million lines before a job's first shard)."""
    if native is not None:
        return native.index_lines(block, every, state)
    return index_lines_py(block, every, state)


def index_lines_py(block: bytes, every: int, state: LineState) -> tuple[list[tuple[int, int]], LineState]:
    """The Python twin."""
    at, count, lines, line_start, counted = state
    starts = []
    *ended, rest = block.split(b"\n")  # the lines a newline ends here, and the one under way
    for piece in ended:
        if not counted and piece and not piece.isspace():
            if count % every == 0:
                starts.append((line_start, lines))
            count += 1
        at += len(piece) + 1
        lines += 1
        line_start = at
        counted = False
    if not counted and rest and not rest.isspace():
        if count % every == 0:
            starts.append((line_start, lines))
        count += 1
        counted = True
    return starts, (at + len(rest), count, lines, line_start, counted)


def _index_tfrecords(f: IO[bytes], path: str, every: int) -> tuple[int, list[tuple[int, int]]]:
    offset = count = 0
    starts: list[tuple[int, int]] = []
    # A plain file skips each record's data with a seek; gzip has to decompress through it.
    size = None if isinstance(f, gzip.GzipFile) else os.fstat(f.fileno()).st_size
    while True:
        head = f.read(12)
        if not head:
            return count, starts
        length = _frame_length(head, path, offset)
        if count % every == 0:
            starts.append((offset, 0))
        count += 1
        skip = length + 4
        if size is not None:
            if f.seek(skip, 1) > size:
                raise JobFailed(f"corrupt TFRecord file {path}: the record at byte {offset} is truncated")
        elif len(f.read(skip)) != skip:
            raise JobFailed(f"corrupt TFRecord file {path}: the record at byte {offset} is truncated")
        offset += 12 + skip


def _frame_length(head: bytes, path: str, offset: int) -> int:
    if len(head) != 12:
        raise JobFailed(f"corrupt TFRecord file {path}: the record at byte {offset} is truncated")
    (length,) = _LENGTH.unpack_from(head)
    (crc,) = _CRC.unpack_from(head, 8)
    if masked_crc32c(head[:8]) != crc:
        raise JobFailed(f"corrupt TFRecord file {path}: the length at byte {offset} fails its CRC-32C check")
    return length


def read(path: str, fmt: str, start: int, count: int, lines_before: int, size: int,
         end: int = -1) -> Iterator[Batch]:
    """``count`` records from byte ``start`` (with ``lines_before`` lines before it, as ``index``
    gave), in batches of at most ``size``; text is read no further than byte ``end`` (-1: the
    end of the file), where the next shard begins."""
    f = _open(path, fmt)
    try:
        f.seek(start)
        if fmt in (TF_RECORD, TF_RECORD_GZIP):
            yield from _tfrecord_batches(f, path, start, count, size)
        else:
            yield from _line_batches(f, path, count, lines_before, size, -1 if end < 0 else end - start)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise JobFailed(f"cannot read input {path}: {err}") from None
    finally:
        f.close()


def _line_batches(f: IO[bytes], path: str, count: int, line: int, size: int, length: int) -> Iterator[Batch]:
    """Lines read a block at a time and split in one call, then cut into batches. ``length``:
    the bytes to read (-1: all). Splitting is most of a batch's cost, so a shard splits only its
    own lines, not the rest of a block that runs into the next shard."""
    pending: list[bytes] = []  # lines read; those from ``taken`` on are not in a batch yet
    taken = 0
    tail = b""  # a partial line at the end of the last block
    eof = False
    while count:
        if len(pending) - taken < size and not eof:
            pending = pending[taken:]
            taken = 0
            while len(pending) < size and not eof:
                block = f.read(READ_BYTES if length < 0 else min(READ_BYTES, length))
                if length > 0:
                    length -= len(block)
                if not block:
                    eof = True
                    if tail:
                        pending.append(tail.strip())
                    break
                lines, tail = split_lines(tail, block)
                pending.extend(lines)
        if taken >= len(pending):
            raise JobFailed(f"input {path} changed while the job read it: it ends before its last record")
        data = pending[taken:taken + min(size, count)]
        taken += len(data)
        first = line + 1
        line += len(data)
        if all(data):
            count -= len(data)
            yield Batch(data, path, first_line=first)
            continue
        kept = [(first + i, d) for i, d in enumerate(data) if d]  # blank lines hold no record
        if kept:
            count -= len(kept)
            yield Batch([d for _, d in kept], path, lines=[n for n, _ in kept])


READ_BYTES = 1 << 20


def split_lines(tail: bytes, block: bytes) -> tuple[list[bytes], bytes]:
    """The lines that end in ``tail + block``, each stripped, and what follows the last newline
    (``tail``: what the last call left, which holds none): natively when the extension is built
    (bench/README.md)."""
    if native is not None:
        return native.split_lines(tail, block)
    return split_lines_py(tail, block)


def split_lines_py(tail: bytes, block: bytes) -> tuple[list[bytes], bytes]:
    """The Python twin."""
    lines = (tail + block).split(b"\n")
    rest = lines.pop()
    return [line.strip() for line in lines], rest


def _tfrecord_batches(f: IO[bytes], path: str, offset: int, count: int, size: int) -> Iterator[Batch]:
    while count:
        data, offsets = [], []
        for _ in range(min(size, count)):
            head = f.read(12)
            length = _frame_length(head, path, offset)
            body = f.read(length + 4)
            if len(body) != length + 4:
                raise JobFailed(f"corrupt TFRecord file {path}: the record at byte {offset} is truncated")
            record = body[:length]
            (crc,) = _CRC.unpack_from(body, length)
            if masked_crc32c(record) != crc:
                raise JobFailed(f"corrupt TFRecord file {path}: the record at byte {offset} fails its CRC-32C check")
            data.append(record)
            offsets.append(offset)
            offset += 12 + length + 4
        count -= len(data)
        yield Batch(data, path, offsets=offsets)


def write_tfrecord(f: IO[bytes], data: bytes) -> None:
    """One record in TFRecord framing (tests and users make input files with it)."""
    head = _LENGTH.pack(len(data))
    f.write(head + _CRC.pack(masked_crc32c(head)) + data + _CRC.pack(masked_crc32c(data)))
