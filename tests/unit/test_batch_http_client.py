"""The --endpoint client over real sockets: keep-alive reuse, chunked and close-delimited
replies, a peer that hangs up mid-reply, and a bad URL."""

from __future__ import annotations

import asyncio

import pytest

from hyperserve.server.batch.http_client import HttpClient, seconds_after


async def serve(replies: list[bytes], seen: list[bytes], connections: list[int]):
    """A raw HTTP peer: answers each request it reads with the next of ``replies`` (b"" closes)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        connections.append(1)
        try:
            while replies:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                seen.append(head + await reader.readexactly(length))
                reply = replies.pop(0)
                if not reply:
                    break
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_keep_alive_chunked_close_and_hang_up():
    async def main():
        replies = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                   b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nbus\r\n1\r\ny\r\n0\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]  # then the peer hangs up
        seen, connections = [], []
        server, port = await serve(replies, seen, connections)
        client = HttpClient(f"http://127.0.0.1:{port}/v1/x:predict?a=1", size=2, timeout_s=5,
                            headers={"Authorization": "Bearer t"})
        try:
            assert await client.post(b'{"a":1}') == (200, b"ok", None)
            assert await client.post(b"{}") == (503, b"busy", 7.0)  # the same connection, kept alive
            assert len(connections) == 1
            assert await client.post(b"{}") == (200, b"until the end", None)  # ended by the peer's close
            with pytest.raises(ConnectionError, match="closed before the response ended"):
                await client.post(b"{}")
            assert len(connections) == 2  # the closed connection was not reused
        finally:
            client.close()
            server.close()
        first = seen[0]
        assert first.startswith(b"POST /v1/x:predict?a=1 HTTP/1.1\r\n")
        assert b"Authorization: Bearer t\r\n" in first and b"Content-Type: application/json\r\n" in first
        assert first.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')

    asyncio.run(main())


def test_a_silent_peer_times_out_and_a_bad_url_is_refused():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(f"http://127.0.0.1:{port}/", size=1, timeout_s=0.2, headers={})
        with pytest.raises(TimeoutError):
            await client.post(b"{}")
        server.close()

    asyncio.run(main())
    with pytest.raises(ValueError, match="http:// or https://"):
        HttpClient("ftp://host/x", size=1, timeout_s=1, headers={})


def test_retry_after_as_seconds_or_as_an_http_date():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    assert seconds_after(b"120") == 120.0
    assert seconds_after(b" 0 ") == 0.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True).encode()
    assert 25 <= seconds_after(later) <= 30
    assert seconds_after(b"Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # passed already: at once
    assert seconds_after(b"soon") is None and seconds_after(b"-5") is None and seconds_after(b"") is None
    assert seconds_after(b"\xb2") is None  # latin-1 "²": a digit to str.isdigit(), not to float()
