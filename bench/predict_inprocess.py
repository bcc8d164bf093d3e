"""The whole predict path in one process, without sockets: CPU per request, and a steady count.

C connections over fake transports each send the 1-row iris predict (W1) again as soon as their
answer is written, so the server runs the same batches as under `wrk -c C` (32 rows a call at 32),
through the real transport, app, codec, scheduler and scikit-learn. What is left out is the
kernel's socket work and uvloop's reads.

    python -m hyperserve.bench.predict_inprocess -n 100000 -c 32

Wall time on a shared VM drifts; instructions do not. Under callgrind, counting only the event loop
(model loading is left out, and every model call is kept on the loop so it is counted too):

    OPENBLAS_NUM_THREADS=1 valgrind --tool=callgrind --toggle-collect=uv_run \
        python -m hyperserve.bench.predict_inprocess -n 3200

and divide the "Collected" total by the requests (one BLAS thread: valgrind runs threads one at a
time, and BLAS threads that spin while they wait for each other take it hours).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path

from hyperserve.server.cli import _parser
from hyperserve.server.http import HttpServer
from hyperserve.server.http.protocol import HttpProtocol
from hyperserve.server.scheduler import runner as runner_module
from hyperserve.server.serve import build

from .peers.run import build_w1
from .peers.servers import request_body
from .transport_micro import FakeTransport


class Client(FakeTransport):
    """A connection's transport whose peer sends its next request once an answer is written."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, load: Load):
        super().__init__()
        self.loop, self.request, self.load = loop, request, load
        self.protocol: HttpProtocol | None = None

    def write(self, data):
        super().write(data)
        self.load.answered(data)
        if self.load.send():
            self.loop.call_soon(self.protocol.data_received, self.request)


class Load:
    """How many requests are left to send, and the answers so far (all must be 200)."""

    def __init__(self, total: int, done: asyncio.Future):
        self.total, self.sent, self.received, self.done = total, 0, 0, done

    def send(self) -> bool:
        if self.sent >= self.total:
            return False
        self.sent += 1
        return True

    def answered(self, data: bytes) -> None:
        if data[9:12] != b"200":
            raise SystemExit(f"not a 200 answer: {data[:300]!r}")
        self.received += 1
        if self.received == self.total:
            self.done.set_result(None)


async def drive(app, limits, requests: int, connections: int, request: bytes) -> float:
    """Seconds of CPU for ``requests`` predicts over ``connections`` connections."""
    loop = asyncio.get_running_loop()
    server = HttpServer(app, limits, loop)
    load = Load(requests, loop.create_future())
    clients = []
    for _ in range(connections):
        client = Client(loop, request, load)
        client.protocol = HttpProtocol(server)
        client.protocol.connection_made(client)
        clients.append(client)
    started = time.process_time()
    for client in clients:
        if load.send():
            loop.call_soon(client.protocol.data_received, request)
    await load.done
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--requests", type=int, default=100_000)
    parser.add_argument("-c", "--connections", type=int, default=32)
    args = parser.parse_args(argv)

    model_dir, instances = build_w1(Path(tempfile.mkdtemp(prefix="hyperserve-inprocess-")))
    body = request_body("vertex", instances)
    request = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    # Every model call on the event loop, as a short scikit-learn call runs there under load (slowed
    # down, e.g. by callgrind, it would otherwise move to a model thread and out of the count).
    runner_module.INLINE_MAX_CALL_S = float("inf")
    app, plane, limits = build(_parser().parse_args(["serve", str(model_dir), "--model-name", "model"]))
    models = plane.models
    for model in models:
        model.load()
    gc.collect()
    gc.freeze()  # as the server does after loading
    import uvloop

    seconds = uvloop.run(drive(app, limits, args.requests, args.connections, request))
    calls = models.default_model.runner.batch_sizes
    print(f"{args.requests} requests over {args.connections} connections: {seconds / args.requests * 1e6:.1f} µs of "
          f"CPU each; batch sizes {dict(calls.most_common(3))}")
    plane.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
