"""hyperserve's HTTP transport in a background thread with any route function (for tests)."""

from __future__ import annotations

import asyncio
import socket
import threading

import uvloop

from hyperserve.server.http import HttpServer, Limits


class ServerThread:
    def __init__(self, route, limits: Limits | None = None):
        self.loop = uvloop.new_event_loop()
        self.server = HttpServer(route, limits or Limits(), self.loop)
        self.port = None
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.server.shutdown(1.0), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
