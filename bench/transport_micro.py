"""Python cost of one request through the HTTP protocol, without sockets (µs per request).

Feeds pipelined GET requests to HttpProtocol over a fake transport and answers them with a
synchronous route, so the number is the connection handling alone: parsing callbacks, request
objects, routing and response encoding. Run: python bench/transport_micro.py
"""

from __future__ import annotations

import asyncio
import time

from hyperserve.server.http import HttpServer, Response
from hyperserve.server.http.protocol import HttpProtocol


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written = 0

    def write(self, data):
        self.written += len(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_write_buffer_size(self):
        return 0


LIVE = Response.json({"status": "alive"})


def route(request):
    return Response.json({"status": "alive"})


def measure(n: int = 200_000, batch: int = 16) -> float:
    loop = asyncio.new_event_loop()
    server = HttpServer(route, loop=loop)
    proto = HttpProtocol(server)
    proto.connection_made(FakeTransport())
    chunk = b"GET /live HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n" * batch
    start = time.perf_counter()
    for _ in range(n // batch):
        proto.data_received(chunk)
    elapsed = time.perf_counter() - start
    loop.close()
    return elapsed / n * 1e6


if __name__ == "__main__":
    for _ in range(3):
        print(f"{measure():.2f} µs per request")
