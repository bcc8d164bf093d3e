"""Below the least client: the same rows with no HTTP library and no event loop, to bound what any
Python client could give ``hyperserve batch --endpoint``. Raw non-blocking sockets on one epoll,
every ready connection read in one wake, each answer framed by its Content-Length (hyperserve's
answers have one; a chunked or unframed answer stops it), requests of 64 as the job builds them,
the predictions split as the job splits them and the output lines written natively in input
order. Like the least client it is a measurement, not a job: no shards, instanceConfig, retries or
error lines, and it stops at the first answer that is not a 200.

    python bench/peers/raw_client.py URL INPUT.jsonl OUTPUT.jsonl [CONNECTIONS] [DEPTH]

DEPTH > 1 pipelines: each connection carries up to DEPTH requests at once, written in one send;
at most MAX_DEPTH, which hyperserve reads before it pauses a connection, so a send never waits.
Prints {"instances", "rows_per_s", "client_cpu_ns_per_row"} on stdout, CPU counted after start-up
(counting the input's records, as the job does before its first shard, is part of it).
"""

import itertools
import select
import socket
import sys
import time
from collections import deque
from urllib.parse import urlsplit

import orjson

from hyperserve.bench.peers.lean_input import cpu_s, instance_batches
from hyperserve.server.batch.cli import ENDPOINT_CONCURRENCY
from hyperserve.server.batch.instances import request_body, result_lines
from hyperserve.server.batch.predictors import RequestFailed, predictions_of
from hyperserve.server.http.server import Limits


# A hyperserve connection with this many requests waiting is not read until they are answered;
# this client writes without waiting, so it never sends more.
MAX_DEPTH = Limits.max_pipelined


class Refused(Exception):
    pass


class Connection:
    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.pending: deque = deque()  # the window's slots of the requests in flight, in order
        self.unread = b""

    def answers(self) -> list[bytes]:
        """Read once; the bodies of the answers now whole, in order."""
        data = self.sock.recv(1 << 16)
        if not data:
            raise Refused("the server closed a connection")
        buffer, bodies, start = self.unread + data, [], 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            head = buffer[start:end].lower()
            if head[9:12] != b"200":
                raise Refused(f"the server answered {buffer[start:start + 300]!r}")
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise Refused("an answer without Content-Length: this client reads hyperserve's answers only")
            stop = head.find(b"\r\n", at + 17)
            length = int(head[at + 17:] if stop < 0 else head[at + 17:stop])
            if len(buffer) < end + 4 + length:
                break
            bodies.append(buffer[end + 4:end + 4 + length])
            start = end + 4 + length
        self.unread = buffer[start:]
        return bodies


def run(url: str, input_path: str, output_path: str, connections: int, depth: int) -> dict:
    parts = urlsplit(url)
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    poll = select.epoll()
    by_fd: dict[int, Connection] = {}
    for _ in range(connections):
        connection = Connection((parts.hostname, parts.port or 80))
        by_fd[connection.sock.fileno()] = connection
        poll.register(connection.sock.fileno(), select.EPOLLIN)
    free = [c for c in by_fd.values() for _ in range(depth)]  # a place for one more request each
    window: deque = deque()  # [instances, predictions or None], in input order
    batches = instance_batches(input_path)  # counts the records: part of start-up
    started, cpu_before, rows = time.perf_counter(), cpu_s(), 0
    with open(output_path, "wb") as sink:
        while True:
            outgoing: dict[Connection, list[bytes]] = {}
            for instances in itertools.islice(batches, len(free)):
                connection = free.pop()
                slot = [instances, None]
                window.append(slot)
                connection.pending.append(slot)
                body = request_body(instances, None)
                outgoing.setdefault(connection, []).append(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            for connection, requests in outgoing.items():
                # At most MAX_DEPTH requests of about 1.4 KB, which the server reads: the socket's
                # buffer takes them whole, and a non-blocking send never has to wait.
                connection.sock.sendall(b"".join(requests))
            if not window:
                break
            for fd, _ in poll.poll():
                connection = by_fd[fd]
                for body in connection.answers():
                    slot = connection.pending.popleft()
                    slot[1] = predictions_of(body, len(slot[0]))
                    free.append(connection)
            while window and window[0][1] is not None:
                instances, predictions = window.popleft()
                sink.write(result_lines(instances, predictions, False))
                rows += len(instances)
    elapsed, cpu = time.perf_counter() - started, cpu_s() - cpu_before
    for connection in by_fd.values():
        connection.sock.close()
    return {"instances": rows, "rows_per_s": round(rows / elapsed, 1),
            "client_cpu_ns_per_row": round(cpu * 1e9 / rows)}


def main() -> None:
    url, input_path, output_path = sys.argv[1:4]
    connections = int(sys.argv[4]) if len(sys.argv) > 4 else ENDPOINT_CONCURRENCY
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if not 1 <= depth <= MAX_DEPTH:
        sys.exit(f"raw_client: DEPTH must be 1 to {MAX_DEPTH}, got {depth}")
    try:
        print(orjson.dumps(run(url, input_path, output_path, connections, depth)).decode())
    except (Refused, RequestFailed) as err:  # RequestFailed: a 200 whose predictions do not fit
        sys.exit(f"raw_client: {err}")


if __name__ == "__main__":
    main()
