"""Real loopback HTTP servers for the poller's tests: a small OIP v2 model server with
MLServer-like metrics, and the ways a server goes wrong.

Every server listens on 127.0.0.1 with an ephemeral port, speaks HTTP/1.1 with keep-alive
over raw asyncio streams (so it can misbehave exactly), and runs on one shared background
event loop thread, so tests on any loop (or none) can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# What a route can do instead of answering normally.
HANG = "hang"  # read the request, never answer (the connection stays open)
ENDLESS = "endless"  # 200 with a chunked body that never ends, sent as fast as possible
DRIP = "drip"  # 200 with a chunked body that never ends, one small chunk every 50 ms
SHORT = "short"  # a Content-Length larger than the body, then close the connection
CLOSE = "close"  # close the connection without answering


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain"


@dataclass
class ModelStats:
    """The counters behind the MLServer-like /metrics."""

    success: float = 0
    failure: float = 0
    durations: list[float] = field(default_factory=list)  # seconds, every observed request

    def observe(self, n: int, seconds: float, *, failed: int = 0) -> None:
        self.success += n - failed
        self.failure += failed
        self.durations.extend([seconds] * n)


def mlserver_metrics(model: str, version: str, stats: ModelStats, *, health_checks: int = 0) -> str:
    """Prometheus text in MLServer 1.7's names and labels (a trimmed real scrape's shape)."""
    labels = f'model="{model}",version="{version}"'
    total = stats.success + stats.failure
    lines = [
        "# HELP python_gc_objects_collected_total Objects collected during gc",
        "# TYPE python_gc_objects_collected_total counter",
        'python_gc_objects_collected_total{generation="0"} 5012.0',
        "# HELP model_infer_request_success_total Model infer request success count",
        "# TYPE model_infer_request_success_total counter",
    ]
    if total:
        lines.append(f"model_infer_request_success_total{{{labels}}} {float(stats.success)}")
    lines += ["# HELP model_infer_request_success_created Model infer request success count",
              "# TYPE model_infer_request_success_created gauge"]
    if total:
        lines.append(f"model_infer_request_success_created{{{labels}}} 1.7e+09")
    lines += ["# HELP model_infer_request_failure_total Model infer request failure count",
              "# TYPE model_infer_request_failure_total counter"]
    if total:
        lines.append(f"model_infer_request_failure_total{{{labels}}} {float(stats.failure)}")
    lines += ["# HELP model_infer_request_duration Model infer request duration",
              "# TYPE model_infer_request_duration summary"]
    if total:
        lines.append(f"model_infer_request_duration_count{{{labels}}} {float(total)}")
        lines.append(f"model_infer_request_duration_sum{{{labels}}} {sum(stats.durations)}")
    lines += [
        "# HELP rest_server_request_duration_seconds Duration of HTTP requests",
        "# TYPE rest_server_request_duration_seconds histogram",
    ]

    def histogram(path: str, method: str, values: list[float]) -> None:
        common = f'app_name="mlserver",method="{method}",path="{path}",status_code="200"'
        for b in BUCKETS:
            n = sum(1 for v in values if v <= b)
            lines.append(f'rest_server_request_duration_seconds_bucket{{app_name="mlserver",le="{b}",'
                         f'method="{method}",path="{path}",status_code="200"}} {float(n)}')
        lines.append(f'rest_server_request_duration_seconds_bucket{{app_name="mlserver",le="+Inf",'
                     f'method="{method}",path="{path}",status_code="200"}} {float(len(values))}')
        lines.append(f"rest_server_request_duration_seconds_count{{{common}}} {float(len(values))}")
        lines.append(f"rest_server_request_duration_seconds_sum{{{common}}} {sum(values)}")

    if health_checks:  # slow health checks must not count as inference latency
        histogram("/v2/models/{model_name}/ready", "GET", [3.0] * health_checks)
    if stats.durations:
        histogram("/v2/models/{model_name}/infer", "POST", stats.durations)
    return "\n".join(lines) + "\n"


class _LoopThread:
    """One event loop in a daemon thread, shared by every server of the test process."""

    _instance: _LoopThread | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faultservers", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def call(self, coro, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class FaultServer:
    """An OIP v2 model server. ``routes[path]`` overrides one path with a :class:`Reply` or one
    of HANG, ENDLESS, DRIP, SHORT, CLOSE; ``default`` does so for every path."""

    def __init__(self, model: str = "m", versions: list[str] | None = None, *,
                 metrics_version: str = "1") -> None:
        self.model = model
        self.versions = ["1"] if versions is None else versions
        self.metrics_version = metrics_version
        self.stats = ModelStats()
        self.health_checks = 0
        self.routes: dict[str, Reply | str] = {}
        self.default: Reply | str | None = None
        self.delay = 0.0  # seconds to wait before every answer (a slow, distant server)
        self.handler: Callable[[str, bytes], Reply | str | None] | None = None  # (path, body) -> reply or None
        self.hits: Counter[str] = Counter()
        self.headers_seen: list[dict[str, str]] = []
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._closed = False  # set by close(): a connection accepted before it but not yet handled is dropped
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FaultServer:
        lt = _LoopThread.get()

        async def start() -> None:
            self._closed = False
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        lt.call(start())
        return self

    def close(self) -> None:
        lt = _LoopThread.get()

        async def close() -> None:
            self._closed = True
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            self._writers.clear()

        with contextlib.suppress(Exception):
            lt.call(close())

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- behaviour ---------------------------------------------------------------------------
    def answer(self, path: str) -> Reply | str:
        override = self.routes.get(path, self.default)
        if override is not None:
            return override
        m = f"/v2/models/{self.model}"
        if path in ("/v2/health/live", "/v2/health/ready", f"{m}/ready"):
            return Reply(200)
        if path.startswith(f"{m}/versions/") and path.endswith("/ready"):
            v = path[len(f"{m}/versions/"):-len("/ready")]
            return Reply(200 if v in self.versions else 404)
        if path == m:
            return Reply(200, json.dumps({"name": self.model, "versions": self.versions, "platform": "",
                                          "inputs": [], "outputs": []}), "application/json")
        if path == "/metrics":
            return Reply(200, mlserver_metrics(self.model, self.metrics_version, self.stats,
                                               health_checks=self.health_checks),
                         "text/plain; version=0.0.4; charset=utf-8")
        if path.startswith("/v2/models/") and path.endswith("/ready"):
            return Reply(404, '{"error": "Model not found"}', "application/json")
        return Reply(404, "not found")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while not self._closed:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                parts = request_line.split(" ")
                path = parts[1] if len(parts) > 1 else "/"
                headers = {}
                for h in header_lines:
                    if ":" in h:
                        k, v = h.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                body_in = await reader.readexactly(length) if length else b""
                self.hits[path] += 1
                self.headers_seen.append(headers)
                reply = (self.handler(path, body_in) if self.handler is not None else None) or self.answer(path)
                if self.delay:
                    await asyncio.sleep(self.delay)
                if reply == HANG:
                    await asyncio.sleep(3600)
                    return
                if reply == CLOSE:
                    return
                if reply in (ENDLESS, DRIP):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                    chunk = b"x" * (65536 if reply == ENDLESS else 16)
                    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    while True:
                        writer.write(frame)
                        await writer.drain()
                        await asyncio.sleep(0 if reply == ENDLESS else 0.05)
                if reply == SHORT:
                    body = b'{"name": "m", "versions": ["1'
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 400\r\n\r\n" + body)
                    await writer.drain()
                    return
                assert isinstance(reply, Reply)
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error",
                          503: "Service Unavailable"}.get(reply.status, "Status")
                writer.write(f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: {reply.content_type}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()


def refused_url() -> str:
    """A loopback URL nobody listens on (the port was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def servers(n: int, **kw) -> Iterator[list[FaultServer]]:  # type: ignore[no-untyped-def]
    out = [FaultServer(**kw).start() for _ in range(n)]
    try:
        yield out
    finally:
        for s in out:
            s.close()
