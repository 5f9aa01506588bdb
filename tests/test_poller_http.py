"""The poller's plain-HTTP/1.1 transport against raw loopback servers that send exact bytes:
framing (length, chunked, until close), keep-alive reuse and its limits, stale connections,
garbage, oversized heads, size caps and deadlines."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable

import httpx
import pytest

from modeldeck.core.http11 import Sender, fetch

pytestmark = pytest.mark.live


class RawServer:
    """Answers each request on a connection with the next scripted reply (bytes, or a callable
    taking the request count). Counts connections and requests."""

    def __init__(self, replies: Callable[[int], bytes | None]) -> None:
        self.replies = replies
        self.connections = 0
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                reply = self.replies(self.requests)
                if reply is None:  # close without answering
                    return
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply or reply.startswith(b"HTTP/1.0"):
                    return
        finally:
            writer.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def get(sender: Sender, url: str, limit: int = 1 << 20):
    return await fetch(sender, sender.build_request(url, {}), limit)


@pytest.fixture
async def sender():
    s = Sender("http", 1, fast=True)
    yield s
    await s.aclose()


async def test_keep_alive_reuses_one_connection(sender) -> None:
    async with RawServer(lambda n: ok(f"answer {n}".encode())) as srv:
        bodies = [(await get(sender, srv.url + "/v2/health/ready")).body for _ in range(5)]
    assert bodies == [f"answer {n}".encode() for n in range(1, 6)]
    assert srv.connections == 1


async def test_chunked_body_with_extensions_and_trailers(sender) -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    async with RawServer(lambda n: reply) as srv:
        a = await get(sender, srv.url)
        b = await get(sender, srv.url)
    assert (a.status, a.body, b.body) == (200, b"hello world", b"hello world")
    assert srv.connections == 1


async def test_http10_body_until_close_is_not_reused(sender) -> None:
    async with RawServer(lambda n: b"HTTP/1.0 200 OK\r\n\r\nall of it") as srv:
        a = await get(sender, srv.url)
        b = await get(sender, srv.url)
    assert a.body == b.body == b"all of it"
    assert srv.connections == 2


async def test_connection_close_is_honoured(sender) -> None:
    async with RawServer(lambda n: ok(b"x", b"Connection: close\r\n")) as srv:
        for _ in range(3):
            assert (await get(sender, srv.url)).body == b"x"
    assert srv.connections == 3


async def test_a_stale_kept_alive_connection_is_retried_once(sender) -> None:
    # The server answers the first request, then drops the connection when the second arrives.
    async with RawServer(lambda n: ok(b"first") if n == 1 else (None if n == 2 else ok(b"again"))) as srv:
        assert (await get(sender, srv.url)).body == b"first"
        again = await get(sender, srv.url)
    assert (again.status, again.body, again.error) == (200, b"again", None)
    assert srv.connections == 2


@pytest.mark.parametrize(("reply", "error"), [
    (b"<html>oops</html>\r\n\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
     "connection closed in the middle of the answer"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", "not an HTTP answer"),
], ids=["html", "short-body", "huge-head", "bad-length"])
async def test_garbage_gets_a_reason_in_words(sender, reply: bytes, error: str) -> None:
    def script(n: int) -> bytes:
        return reply

    async with RawServer(script) as srv:
        a = await get(sender, srv.url)
    assert a.error is not None and a.error.startswith(error), a.error


async def test_gzip_is_decoded(sender) -> None:
    body = gzip.compress(b"# HELP x y\nx 1\n")
    async with RawServer(lambda n: ok(body, b"Content-Encoding: gzip\r\n")) as srv:
        a = await get(sender, srv.url + "/metrics")
    assert a.body == b"# HELP x y\nx 1\n"


async def test_a_capped_answer_closes_its_connection(sender) -> None:
    async with RawServer(lambda n: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"1000\r\n" + b"a" * 4096 + b"\r\n" * 1 + b"1000\r\n" + b"b" * 4096 + b"\r\n0\r\n\r\n") as srv:
        a = await get(sender, srv.url, limit=5000)
        b = await get(sender, srv.url, limit=1 << 20)
    assert a.error is not None and "cut off" in a.error
    assert len(b.body) == 8192
    assert srv.connections == 2  # the cut-off connection was not put back


async def test_a_deadline_mid_answer_closes_the_connection(sender) -> None:
    async def never_finish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(never_finish, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await get(sender, url)
        transport = sender.transport
        assert not any(transport.idle.values())  # nothing half-read kept for reuse
    finally:
        server.close()


async def test_refused_connection_in_words(sender) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    a = await get(sender, f"http://127.0.0.1:{port}/v2/health/live")
    assert (a.status, a.error) == (None, "connection refused")


async def test_anything_but_a_plain_get_goes_to_httpx(sender) -> None:
    async with RawServer(lambda n: ok(b"posted")) as srv:
        r = await sender.client.post(srv.url, content=b"{}")
    assert isinstance(r, httpx.Response) and r.content == b"posted"
