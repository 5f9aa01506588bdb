"""HTTP for polling: a lean HTTP/1.1 keep-alive transport for plain-http GETs inside httpx,
one client per scheme://host:port, and answers read with a size cap and never raising.

httpx 0.28 with httpcore spends about 0.75 ms of CPU per keep-alive GET on loopback; a poller
of 200 endpoints sends 400 GETs a second, so that alone was a quarter of a core.
:class:`PlainHTTP1Transport` reads a status line, headers and a framed body (Content-Length,
chunked, or until close) off asyncio streams and nothing else, and plugs into httpx as an
``AsyncBaseTransport`` (requests and responses stay httpx objects, content decoding
included); anything else goes to httpx's own transport. :func:`fetch` turns every network or
protocol failure into an :class:`Answer` with the failure in a few words, never the URL or a
header. Deadlines are the caller's (:func:`within`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import re
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from modeldeck.core.textfmt import one_line, size

T = TypeVar("T")


async def within(aw: Coroutine[Any, Any, T] | asyncio.Future[T], seconds: float) -> T:
    """``aw`` with a deadline (raises asyncio.TimeoutError, which is TimeoutError on 3.11)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)  # pragma: no cover - 3.10


_SSL_CONTEXT: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: loading the CA bundle costs ~25 ms of CPU,
    which httpx would otherwise spend once per client (5 s for 200 endpoints)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context()
    return _SSL_CONTEXT


class _KeptAlive:
    __slots__ = ("idle_since", "key", "reader", "writer")

    def __init__(self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        """Idle not too long, not closed by the server, nothing unasked-for waiting."""
        return (now - self.idle_since < expiry and not self.reader.at_eof()
                and not self.writer.transport.is_closing() and not getattr(self.reader, "_buffer", b""))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Body(httpx.AsyncByteStream):
    """A response body read off a kept-alive connection: Content-Length, chunked, or until the
    server closes. The connection goes back to the pool only when the body was read to its end
    (a poller that stops reading at a size cap, or is cancelled at a deadline, closes it)."""

    def __init__(self, owner: PlainHTTP1Transport, conn: _KeptAlive, length: int | None, chunked: bool,
                 reusable: bool) -> None:
        self.owner, self.conn = owner, conn
        self.left, self.chunked, self.reusable = length, chunked, reusable
        self.done = length == 0 and not chunked

    async def __aiter__(self):  # type: ignore[override]
        r = self.conn.reader
        try:
            if self.chunked:
                while True:
                    line = await r.readline()
                    if not line.endswith(b"\n"):
                        raise httpx.RemoteProtocolError("incomplete chunked body")
                    try:
                        size = int(line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise httpx.RemoteProtocolError("malformed chunk size") from None
                    if size == 0:
                        while (await r.readline()).strip():  # trailers, then the blank line
                            pass
                        self.done = True
                        return
                    yield await r.readexactly(size)
                    await r.readexactly(2)
            elif self.left is not None:
                while self.left > 0:
                    chunk = await r.read(min(self.left, 65536))
                    if not chunk:
                        raise httpx.RemoteProtocolError("peer closed connection without sending complete "
                                                        "message body (incomplete)")
                    self.left -= len(chunk)
                    yield chunk
                self.done = True
            else:  # no framing: the body ends when the server closes
                while chunk := await r.read(65536):
                    yield chunk
                self.done = True
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message "
                                            "body (incomplete)") from None
        except OSError as e:
            raise httpx.ReadError(str(e) or type(e).__name__) from e

    async def aclose(self) -> None:
        if self.done and self.reusable:
            self.owner.checkin(self.conn)
        else:
            self.conn.close()


_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_UNSAFE_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f]")


class PlainHTTP1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 GETs over asyncio streams with keep-alive, for plain-http endpoints.

    httpcore's h11 state machine costs about half a millisecond of CPU per GET; a poller of 200
    endpoints sends 400 a second, so that alone was a quarter of a core. This transport reads a
    status line, headers and a framed body and nothing else; it plugs into httpx (requests and
    responses stay httpx objects, content decoding included). Anything but a body-less GET or a
    POST of a body in memory goes to ``fallback`` (httpx's own transport). Deadlines are the
    caller's (the poller cancels); a cancelled or unfinished exchange closes its connection rather than reusing it."""

    HEAD_LIMIT = 64 * 1024

    def __init__(self, fallback: httpx.AsyncBaseTransport, *, keepalive_expiry: float = 4.0,
                 max_idle: int = 4) -> None:
        self.fallback = fallback
        self.expiry = keepalive_expiry
        self.max_idle = max_idle
        self.idle: dict[tuple[str, int], list[_KeptAlive]] = {}

    def checkin(self, conn: _KeptAlive) -> None:
        conn.idle_since = asyncio.get_running_loop().time()
        pool = self.idle.setdefault(conn.key, [])
        if len(pool) < self.max_idle:
            pool.append(conn)
        else:
            conn.close()

    async def _checkout(self, key: tuple[str, int]) -> _KeptAlive:
        pool = self.idle.get(key)
        now = asyncio.get_running_loop().time()
        while pool:
            conn = pool.pop()
            if conn.usable(now, self.expiry):
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.open_connection(key[0], key[1], limit=self.HEAD_LIMIT)
        except OSError as e:
            raise httpx.ConnectError(str(e) or type(e).__name__) from e
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _KeptAlive(key, reader, writer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        payload = b""
        if request.method == "POST" and isinstance(request.stream, httpx.ByteStream):
            payload = request.content  # a form already in memory (Prometheus queries)
        elif request.method != "GET" or request.headers.get("content-length") not in (None, "0"):
            return await self.fallback.handle_async_request(request)
        if url.scheme != "http":
            return await self.fallback.handle_async_request(request)
        key = (url.host, url.port or 80)
        head = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        if _UNSAFE_TARGET.search(url.raw_path):
            raise httpx.LocalProtocolError("the request target holds a space or a control character")
        for k, v in request.headers.raw:
            if not _TOKEN.match(k) or _UNSAFE_VALUE.search(v):
                # CR/LF would end the header and smuggle another one (or a request) onto the connection
                raise httpx.LocalProtocolError(f"header {k.decode('latin-1')!r} holds CR, LF, NUL or another "
                                               f"control character; not sent")
            head += [k, b": ", v, b"\r\n"]
        head += [b"\r\n", payload]
        conn = await self._checkout(key)
        try:
            conn.writer.write(b"".join(head))
            try:
                raw = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if not e.partial:
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
                raise httpx.RemoteProtocolError("incomplete answer head") from None
            except asyncio.LimitOverrunError:
                raise httpx.RemoteProtocolError("answer head larger than 64 KiB") from None
            status, version, headers = _parse_head(raw)
            fields = {k.lower(): v for k, v in headers}
            connection = fields.get(b"connection", b"").lower()
            reusable = (version == b"HTTP/1.1" and b"close" not in connection) or (
                version == b"HTTP/1.0" and b"keep-alive" in connection)
            chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
            length: int | None = None
            if status in (204, 304) or 100 <= status < 200:
                length = 0
            elif not chunked and b"content-length" in fields:
                try:
                    length = int(fields[b"content-length"])
                except ValueError:
                    raise httpx.RemoteProtocolError("malformed Content-Length") from None
                if length < 0:
                    raise httpx.RemoteProtocolError("malformed Content-Length")
            if length is None and not chunked:
                reusable = False
            body = _Body(self, conn, length, chunked, reusable)
        except BaseException as e:  # cancelled at the deadline, refused, garbage: never reuse it
            conn.close()
            if isinstance(e, OSError):
                raise httpx.ReadError(str(e) or type(e).__name__) from e
            raise
        return httpx.Response(status, headers=headers, stream=body, request=request,
                              extensions={"http_version": version})

    async def aclose(self) -> None:
        for pool in self.idle.values():
            for conn in pool:
                conn.close()
        self.idle.clear()
        await self.fallback.aclose()


def env_proxied(url: str) -> bool:
    """Whether the environment's proxy settings (HTTP_PROXY, ALL_PROXY, NO_PROXY) send ``url``
    through a proxy: a client that should honour them keeps httpx's own transport."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _parse_head(raw: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise httpx.RemoteProtocolError("not an HTTP/1.x status line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed header line")
        headers.append((name, value.strip()))
    return int(parts[1]), parts[0], headers


class LazyFallback(httpx.AsyncBaseTransport):
    """httpx's own transport, made when first needed (an https request or anything but a GET):
    a poller of 10,000 plain-http endpoints never builds 10,000 connection pools."""

    def __init__(self, make: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._make = make
        self._transport: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            self._transport = self._make()
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


_BASE_HEADERS: httpx.Headers | None = None


def _base_headers() -> httpx.Headers:
    """The headers an ``httpx.AsyncClient`` adds to every request, with modeldeck's user agent."""
    global _BASE_HEADERS
    if _BASE_HEADERS is None:
        # (a client with a transport never used: its own would load the CA bundle, 50 ms)
        unused = LazyFallback(lambda: httpx.AsyncHTTPTransport())
        h = httpx.Headers(httpx.AsyncClient(headers={"User-Agent": "modeldeck-poller"}, transport=unused).headers)
        _BASE_HEADERS = h
    return _BASE_HEADERS


class Sender:
    """One scheme://host:port's transport with a small keep-alive pool. Requests go straight
    to the transport (``handle_async_request``, public httpx API), skipping the client's
    redirect/auth/cookie layers that a poller does not use (about 20% of a GET's CPU), and are
    built directly (``httpx.Request`` with the client's default headers) rather than through
    ``client.build_request`` (half a millisecond each at 10,000 endpoints). The transport is
    explicit, so proxy environment variables are not applied (httpx's rule): endpoints are
    reached directly. The ``httpx.AsyncClient`` itself is made only when asked for."""

    __slots__ = ("_client", "transport")

    def __init__(self, scheme: str, n_endpoints: int, *, fast: bool) -> None:
        # A poll uses one connection for health (one request after the other) and one for metrics.
        # Servers close idle keep-alive connections after a few seconds (uvicorn: 5 s); expiring
        # ours first avoids reusing one the server is closing at that moment.
        size = min(2 * n_endpoints + 2, 16)

        def make() -> httpx.AsyncBaseTransport:
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=4.0)
            return httpx.AsyncHTTPTransport(verify=ssl_context(), limits=limits, retries=0)

        transport: httpx.AsyncBaseTransport
        if fast and scheme == "http":
            transport = PlainHTTP1Transport(LazyFallback(make), keepalive_expiry=4.0, max_idle=size)
        else:
            transport = make()
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport, timeout=None, follow_redirects=False,
                                             verify=ssl_context(), headers={"User-Agent": "modeldeck-poller"})
        return self._client

    def build_request(self, url: str, headers: Mapping[str, str]) -> httpx.Request:
        merged = _base_headers().copy()
        merged.update(headers)
        return httpx.Request("GET", url, headers=merged)

    async def send(self, request: httpx.Request) -> httpx.Response:
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        else:
            await self.transport.aclose()


@dataclass
class Answer:
    status: int | None = None
    body: bytes = b""
    error: str | None = None  # in words, when no usable answer came
    timed_out: bool = False


def describe_error(e: BaseException) -> str:
    """An HTTP failure in a few words (never the URL, never headers)."""
    seen: list[BaseException] = []
    x: BaseException | None = e
    while x is not None and x not in seen and len(seen) < 8:
        seen.append(x)
        x = x.__cause__ or x.__context__
    for c in seen:
        if isinstance(c, ConnectionRefusedError) or getattr(c, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
    for c in seen:
        if isinstance(c, socket.gaierror):
            return "cannot resolve the host name"
        if isinstance(c, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(c, ssl.SSLError):
            return "TLS error: " + one_line(getattr(c, "reason", None) or c, 60)
    text = str(e)
    if "refused" in text.lower():
        return "connection refused"
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.RemoteProtocolError):
        if "without sending complete message body" in text or "incomplete" in text.lower():
            return "connection closed in the middle of the answer"
        if "disconnected" in text.lower() or "without sending" in text:
            return "server closed the connection without answering"
        return "not an HTTP answer: " + one_line(text, 60)
    if isinstance(e, httpx.DecodingError):
        return "answer cannot be decoded (content encoding)"
    if isinstance(e, httpx.ConnectError):
        return "cannot connect: " + one_line(text or type(e).__name__, 60)
    return one_line(f"{type(e).__name__}: {text}" if text else type(e).__name__, 80)


_STALE = ("connection reset by the server", "server closed the connection without answering")


async def fetch(client: Sender, request: httpx.Request, limit: int) -> Answer:
    """Send ``request`` and read the answer up to ``limit`` bytes (decoded). Never raises for
    network or protocol failures: they come back as ``error``. A GET that fails because the
    server dropped a kept-alive connection is sent once more (on a new connection)."""
    a = await _fetch_once(client, request, limit)
    if a.status is None and a.error in _STALE:
        a = await _fetch_once(client, request, limit)
    return a


async def _fetch_once(client: Sender, request: httpx.Request, limit: int) -> Answer:
    try:
        resp = await client.send(request)
    except (httpx.HTTPError, OSError) as e:
        return Answer(error=describe_error(e))
    try:
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return Answer(status=resp.status_code, error=f"response larger than {size(limit)} cut off")
        buf = bytearray()
        async for chunk in resp.aiter_bytes():
            buf += chunk
            if len(buf) > limit:
                return Answer(status=resp.status_code, error=f"response larger than {size(limit)} cut off")
        return Answer(status=resp.status_code, body=bytes(buf))
    except (httpx.HTTPError, OSError) as e:
        return Answer(status=resp.status_code, error=describe_error(e))
    finally:
        await resp.aclose()


@functools.lru_cache(maxsize=65536)
def host_key(url: str) -> tuple[str, str, int | None]:
    u = urlsplit(url)
    return (u.scheme.lower(), (u.hostname or "").lower(), u.port)
