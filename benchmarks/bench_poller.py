"""Poller figures: N endpoints on loopback, polled every interval for a while.

    .venv/bin/python benchmarks/bench_poller.py [--endpoints 200] [--interval 1] [--duration 30]
                                                [--metrics-interval 0] [--baseline-duration 10]

The endpoints are served by a separate process (one asyncio process, one port per endpoint,
answering OIP v2 health and metadata and an MLServer-shaped /metrics of about 200 lines whose
counters grow every second), so this process's CPU time is the poller's own. Prints:

  polls/s             snapshots completed per second (target: endpoints / interval)
  CPU s / 1000 polls  this process's CPU time (all threads) per 1,000 snapshots
  CPU % of one core   CPU seconds per wall second (target: < 25%)
  staleness p50/p99   age of each endpoint's latest snapshot, sampled every 100 ms after the
                      first cycle (target p99: < 2 intervals)

and, measured in the same run against the same servers, two baselines doing the same work per
interval (model readiness + metrics of every endpoint): "naive" -- one shared httpx client
with a 200-connection pool and a full prometheus-client parse of every scrape, the obvious way
to write it --, "httpx" -- plain httpx with a client per endpoint, the two GETs read whole, no
parsing: what the HTTP library alone costs -- and "bare" -- raw asyncio-stream keep-alive GETs,
no HTTP library, no parsing, the floor. Ratios are poller CPU / baseline CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SHARES = (0.55, 0.85, 0.97, 0.99, 0.995, 0.997, 0.999, 1, 1, 1, 1, 1, 1, 1)  # latency distribution
HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}/ready", "/v2/models/{model_name}")


# ---------------------------------------------------------------------------------------------
# the server process


def render_metrics(model: str, t: float, rate: float) -> bytes:
    """An MLServer 1.7-shaped scrape (same families and labels as a real one, ~200 lines)."""
    n = int(t * rate)
    fail = n // 50
    ok = n - fail
    polls = int(t * 2)
    out = []
    for g in range(3):
        out += ["# HELP python_gc_objects_collected_total Objects collected during gc",
                "# TYPE python_gc_objects_collected_total counter",
                f'python_gc_objects_collected_total{{generation="{g}"}} {1000.0 * (g + 1) + polls}']
    for name in ("process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
                 "process_cpu_seconds_total", "process_open_fds", "process_max_fds"):
        out += [f"# HELP {name} x", f"# TYPE {name} gauge", f"{name} {123456.0 + t}"]
    lab = f'model="{model}",version="None"'
    out += ["# HELP model_infer_request_success_total Model infer request success count",
            "# TYPE model_infer_request_success_total counter",
            f"model_infer_request_success_total{{{lab}}} {float(ok)}",
            "# HELP model_infer_request_success_created x", "# TYPE model_infer_request_success_created gauge",
            f"model_infer_request_success_created{{{lab}}} 1.7e+09",
            "# HELP model_infer_request_failure_total Model infer request failure count",
            "# TYPE model_infer_request_failure_total counter",
            f"model_infer_request_failure_total{{{lab}}} {float(fail)}",
            "# HELP model_infer_request_failure_created x", "# TYPE model_infer_request_failure_created gauge",
            f"model_infer_request_failure_created{{{lab}}} 1.7e+09",
            "# HELP model_infer_request_duration Model infer request duration",
            "# TYPE model_infer_request_duration summary",
            f"model_infer_request_duration_count{{{lab}}} {float(n)}",
            f"model_infer_request_duration_sum{{{lab}}} {n * 0.006}",
            "# HELP model_infer_request_duration_created x", "# TYPE model_infer_request_duration_created gauge",
            f"model_infer_request_duration_created{{{lab}}} 1.7e+09"]
    for name in ("grpc_server_handled_total", "grpc_server_started_total", "grpc_server_msg_received_total",
                 "grpc_server_msg_sent_total"):
        out += [f"# HELP {name} x", f"# TYPE {name} counter"]
    out += ["# HELP rest_server_requests_total Total number of requests",
            "# TYPE rest_server_requests_total counter"]
    series = [("GET", p, "200", polls) for p in HEALTH_PATHS] + [
        ("POST", "/v2/models/{model_name}/infer", "200", ok), ("POST", "/v2/models/{model_name}/infer", "500", fail)]
    for method, path, code, count in series:
        out.append(f'rest_server_requests_total{{app_name="mlserver",method="{method}",path="{path}",'
                   f'status_code="{code}"}} {float(count)}')
    out += ["# HELP rest_server_request_duration_seconds Duration of HTTP requests in seconds",
            "# TYPE rest_server_request_duration_seconds histogram"]
    for method, path, code, count in series:
        for b, share in zip(BUCKETS, SHARES):
            out.append(f'rest_server_request_duration_seconds_bucket{{app_name="mlserver",le="{b}",'
                       f'method="{method}",path="{path}",status_code="{code}"}} {float(int(count * share))}')
        common = f'app_name="mlserver",method="{method}",path="{path}",status_code="{code}"'
        out.append(f'rest_server_request_duration_seconds_bucket{{app_name="mlserver",le="+Inf",method="{method}",'
                   f'path="{path}",status_code="{code}"}} {float(count)}')
        out.append(f"rest_server_request_duration_seconds_count{{{common}}} {float(count)}")
        out.append(f"rest_server_request_duration_seconds_sum{{{common}}} {count * 0.006}")
    return ("\n".join(out) + "\n").encode()


class _Endpoint(asyncio.Protocol):
    def __init__(self, model: str, start: float, cache: dict[str, tuple[int, bytes]]) -> None:
        self.model = model
        self.start = start
        self.cache = cache
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1].decode()
            self.reply(path)

    def reply(self, path: str) -> None:
        assert self.transport is not None
        ctype = b"text/plain"
        if path == "/metrics":
            second = int(time.monotonic() - self.start)
            cached = self.cache.get(self.model)
            if cached is None or cached[0] != second:  # counters move once a second
                cached = (second, render_metrics(self.model, second + 60.0, 20.0))
                self.cache[self.model] = cached
            body = cached[1]
        elif path == f"/v2/models/{self.model}":
            body = json.dumps({"name": self.model, "versions": ["1"], "platform": "", "inputs": [],
                               "outputs": []}).encode()
            ctype = b"application/json"
        else:
            body = b""
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)


async def serve(n: int) -> None:
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    cache: dict[str, tuple[int, bytes]] = {}
    ports = []
    for i in range(n):
        model = f"model{i}"
        srv = await loop.create_server(lambda m=model: _Endpoint(m, start, cache), "127.0.0.1", 0, backlog=64)
        ports.append(srv.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


@contextlib.contextmanager
def endpoint_server(n: int) -> Iterator[list[int]]:
    """``n`` endpoints served by a child process (this file with --serve); yields their ports."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield json.loads(server.stdout.readline())
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


# ---------------------------------------------------------------------------------------------
# measuring


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure_poller(ports: list[int], interval: float, duration: float, metrics_interval: float,
                         tmp: Path) -> dict[str, float]:
    from modeldeck.core.config import parse
    from modeldeck.core.poller import Poller

    eps = [{"name": f"e{i}", "model": f"model{i}", "url": f"http://127.0.0.1:{p}"} for i, p in enumerate(ports)]
    settings = parse({"registry": str(tmp / "registry.db"),
                      "poll": {"interval": interval, "timeout": 1.0, "store_interval": 0,
                               "metrics_interval": metrics_interval},
                      "endpoints": eps})
    count = 0

    def on_snapshot(_s: object) -> None:
        nonlocal count
        count += 1

    poller = Poller(settings, on_snapshot=on_snapshot)
    task = asyncio.ensure_future(poller.run())
    # warm up: one full cycle done (connections open, imports done)
    while sum(1 for s in poller.latest().values() if s.status != "PENDING") < len(ports):
        await asyncio.sleep(0.05)
    await asyncio.sleep(interval)
    c0, t0, n0 = cpu(), time.monotonic(), count
    stale: list[float] = []
    statuses: dict[str, int] = {}
    while time.monotonic() - t0 < duration:
        await asyncio.sleep(0.1)
        now = time.time()
        for s in poller.latest().values():
            stale.append(now - s.taken_at)
    c1, t1, n1 = cpu(), time.monotonic(), count
    for s in poller.latest().values():
        key = s.status if s.status == "UP" else f"{s.status}: {s.reason}"
        statuses[key] = statuses.get(key, 0) + 1
    poller.stop()
    await task
    await poller.aclose()
    wall = t1 - t0
    polls = n1 - n0
    stale.sort()
    return {"wall": wall, "polls": polls, "polls_per_s": polls / wall, "cpu": c1 - c0,
            "cpu_per_1000": (c1 - c0) / polls * 1000 if polls else float("nan"),
            "cpu_share": (c1 - c0) / wall, "stale_p50": statistics.median(stale),
            "stale_p99": stale[int(0.99 * (len(stale) - 1))], "statuses": statuses}  # type: ignore[dict-item]


async def measure_naive(ports: list[int], interval: float, duration: float) -> dict[str, float]:
    """One shared client, 200-connection pool, full prometheus-client parse of every scrape."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    polls = 0
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=1.0, limits=httpx.Limits(max_connections=len(ports) * 2,
                                                                   max_keepalive_connections=len(ports) * 2)) as c:
        async def one(i: int, p: int) -> None:
            nonlocal polls, errors
            base = f"http://127.0.0.1:{p}"
            try:
                _, r2 = await asyncio.gather(c.get(f"{base}/v2/models/model{i}/ready"), c.get(f"{base}/metrics"))
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                return
            sum(1 for f in text_string_to_metric_families(r2.text) for _ in f.samples)
            polls += 1

        await asyncio.gather(*(one(i, p) for i, p in enumerate(ports)))  # warm up
        polls = 0
        c0, t0 = cpu(), time.monotonic()
        nxt = t0
        while time.monotonic() - t0 < duration:
            await asyncio.gather(*(one(i, p) for i, p in enumerate(ports)))
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        c1, t1 = cpu(), time.monotonic()
    return {"polls": polls, "cpu": c1 - c0, "wall": t1 - t0, "cpu_per_1000": (c1 - c0) / polls * 1000,
            "errors": errors}  # type: ignore[dict-item]


async def measure_httpx(ports: list[int], interval: float, duration: float) -> dict[str, float]:
    """Plain httpx, one AsyncClient per endpoint: the same two GETs read whole, no parsing."""
    import httpx

    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=1.0) for p in ports]
    polls = 0

    async def one(i: int) -> None:
        nonlocal polls
        c = clients[i]
        await asyncio.gather(c.get(f"/v2/models/model{i}/ready"), c.get("/metrics"))
        polls += 1

    await asyncio.gather(*(one(i) for i in range(len(ports))))
    polls = 0
    c0, t0 = cpu(), time.monotonic()
    nxt = t0
    while time.monotonic() - t0 < duration:
        await asyncio.gather(*(one(i) for i in range(len(ports))))
        nxt += interval
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))
    c1, t1 = cpu(), time.monotonic()
    for c in clients:
        await c.aclose()
    return {"polls": polls, "cpu": c1 - c0, "wall": t1 - t0, "cpu_per_1000": (c1 - c0) / polls * 1000}


async def measure_bare(ports: list[int], interval: float, duration: float) -> dict[str, float]:
    """Raw asyncio-stream keep-alive GETs of the same two paths; no HTTP library, no parsing."""
    conns = [await asyncio.open_connection("127.0.0.1", p) for p in ports]

    async def get(r: asyncio.StreamReader, w: asyncio.StreamWriter, path: str) -> bytes:
        w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        return await r.readexactly(length)

    polls = 0

    async def one(i: int) -> None:
        nonlocal polls
        r, w = conns[i]
        await get(r, w, f"/v2/models/model{i}/ready")
        await get(r, w, "/metrics")
        polls += 1

    c0, t0 = cpu(), time.monotonic()
    nxt = t0
    while time.monotonic() - t0 < duration:
        await asyncio.gather(*(one(i) for i in range(len(ports))))
        nxt += interval
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))
    c1, t1 = cpu(), time.monotonic()
    for _, w in conns:
        w.close()
    return {"polls": polls, "cpu": c1 - c0, "wall": t1 - t0, "cpu_per_1000": (c1 - c0) / polls * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--metrics-interval", type=float, default=0.0, help="poll.metrics_interval (0: every poll)")
    ap.add_argument("--baseline-duration", type=float, default=10.0)
    ap.add_argument("--uvloop", action="store_true", help="run the poller and baselines on uvloop (if installed)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.uvloop:
        import uvloop  # not a modeldeck dependency: for comparison only

        uvloop.install()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0

    with endpoint_server(args.endpoints) as ports:
        with tempfile.TemporaryDirectory() as tmp:
            p = asyncio.run(measure_poller(ports, args.interval, args.duration, args.metrics_interval, Path(tmp)))
        naive = asyncio.run(measure_naive(ports, args.interval, args.baseline_duration))
        plain = asyncio.run(measure_httpx(ports, args.interval, args.baseline_duration))
        bare = asyncio.run(measure_bare(ports, args.interval, args.baseline_duration))

    n, iv = args.endpoints, args.interval
    mi = args.metrics_interval or iv
    print(f"poller: {n} endpoints, interval {iv:g} s, metrics every {mi:g} s, {p['wall']:.1f} s measured "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cores{', uvloop' if args.uvloop else ''}, "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"  polls/s             {p['polls_per_s']:8.1f}   target {n / iv:.0f}")
    print(f"  CPU s / 1000 polls  {p['cpu_per_1000']:8.3f}")
    print(f"  CPU % of one core   {p['cpu_share'] * 100:8.1f}   target < 25")
    print(f"  staleness p50       {p['stale_p50']:8.3f} s")
    print(f"  staleness p99       {p['stale_p99']:8.3f} s   target < {2 * iv:g} s")
    print(f"  statuses            {p['statuses']}")
    print(f"baseline naive (one shared client, full parse): CPU s / 1000 polls {naive['cpu_per_1000']:.3f} "
          f"({naive['polls'] / naive['wall']:.0f} polls/s) -> poller/naive = "
          f"{p['cpu_per_1000'] / naive['cpu_per_1000']:.2f}")
    print(f"baseline httpx (a client per endpoint, no parse): CPU s / 1000 polls {plain['cpu_per_1000']:.3f} "
          f"({plain['polls'] / plain['wall']:.0f} polls/s) -> poller/httpx = "
          f"{p['cpu_per_1000'] / plain['cpu_per_1000']:.2f}")
    print(f"baseline bare (asyncio streams, no parse):      CPU s / 1000 polls {bare['cpu_per_1000']:.3f} "
          f"({bare['polls'] / bare['wall']:.0f} polls/s) -> poller/bare = "
          f"{p['cpu_per_1000'] / bare['cpu_per_1000']:.2f}")
    ok = (p["polls_per_s"] >= 0.97 * n / iv and p["cpu_share"] < 0.25 and p["stale_p99"] < 2 * iv)
    print("targets: " + ("all met" if ok else "MISSED (see above)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
