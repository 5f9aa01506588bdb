"""A fleet of 5,000 endpoints watched through a real Prometheus.

    .venv/bin/python benchmarks/bench_prometheus.py [--endpoints 5000] [--refreshes 6] [--keys 120]

A fake fleet of N endpoints (half MLServer-shaped, half Triton-shaped; two server processes,
each answering ``/metrics/<i>`` for its half with counters that grow at a steady rate) is
scraped every 5 s by Debian's ``prometheus`` (one target per endpoint, file SD). modeldeck
discovers the endpoints with two ``[[discover]]`` blocks and refreshes them every 5 s. Printed:

1. per refresh (discovery + one query per quantity + snapshots for every endpoint), wall time and
   client CPU, against the same PromQL queries run raw (httpx + json.loads, concurrently, asking
   for uncompressed answers as modeldeck does on loopback) in the same run; want <= 1.3x the raw wall time and under 5 % of a core at a 5 s interval;
2. ``modeldeck --report`` over the N endpoints (a fresh process, as cron runs it); want < 3 s;
3. the TUI's key latency with N rows (j/k, enter/esc, typing into the filter) while the
   endpoints refresh every 5 s; want p95 < 50 ms; baseline: the same keys with refreshing paused.

Everything it starts (the servers, Prometheus) is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
INTERVAL = 5.0

# ---------------------------------------------------------------------------------------------
# the fake fleet (a child process per half: python bench_prometheus.py --serve PARITY N PORTFILE)


def _bodies(parity: int, n: int) -> dict[str, tuple[string.Template, float]]:
    out = {}
    for i in range(parity, n, 2):
        rate = 1.0 + i % 10
        if i % 2 == 0:  # MLServer-shaped
            m = f'model="m{i}",version="{1 + i % 3}"'
            r = 'method="POST",path="/v2/models/{model_name}/infer",status_code="200"'
            tmpl = ("# TYPE model_infer_request_success_total counter\n"
                    f"model_infer_request_success_total{{{m}}} $ok\n"
                    f"model_infer_request_failure_total{{{m}}} $bad\n"
                    f"model_infer_request_duration_count{{{m}}} $n\n"
                    f"model_infer_request_duration_sum{{{m}}} $s\n"
                    f'rest_server_request_duration_seconds_bucket{{le="0.01",{r}}} $b1\n'
                    f'rest_server_request_duration_seconds_bucket{{le="0.05",{r}}} $b2\n'
                    f'rest_server_request_duration_seconds_bucket{{le="0.1",{r}}} $b3\n'
                    f'rest_server_request_duration_seconds_bucket{{le="0.5",{r}}} $n\n'
                    f'rest_server_request_duration_seconds_bucket{{le="+Inf",{r}}} $n\n'
                    f"rest_server_request_duration_seconds_count{{{r}}} $n\n"
                    f"rest_server_request_duration_seconds_sum{{{r}}} $s\n")
        else:  # Triton-shaped: no _total, duration counter, summary_latencies
            m = f'model="t{i}",version="{1 + i % 2}"'
            tmpl = (f"nv_inference_request_success{{{m}}} $ok\n"
                    f"nv_inference_request_failure{{{m}}} $bad\n"
                    f"nv_inference_count{{{m}}} $n\n"
                    f"nv_inference_request_duration_us{{{m}}} $us\n"
                    f'nv_inference_request_summary_us{{{m},quantile="0.5"}} 9000\n'
                    f'nv_inference_request_summary_us{{{m},quantile="0.95"}} 21000\n'
                    f'nv_inference_request_summary_us{{{m},quantile="0.99"}} 35000\n')
        out[f"/metrics/{i}"] = (string.Template(tmpl), rate)
    return out


def serve(parity: int, n: int, port_file: str) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bodies = _bodies(parity, n)
    t0 = time.time() - 600

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                item = bodies.get(path)
                if item is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                tmpl, rate = item
                n_ = rate * (time.time() - t0)
                body = tmpl.substitute(ok=n_ * 0.98, bad=n_ * 0.02, n=n_, s=n_ * 0.02, b1=n_ * 0.3, b2=n_ * 0.8,
                                   b3=n_ * 0.95, us=n_ * 0.98 * 12000).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextlib.contextmanager
def fleet(n: int, folder: Path):  # type: ignore[no-untyped-def]
    procs, ports = [], []
    try:
        for parity in (0, 1):
            pf = folder / f"port-{parity}"
            procs.append(subprocess.Popen([sys.executable, __file__, "--serve", str(parity), str(n), str(pf)]))
            deadline = time.time() + 30
            while not pf.exists() or not pf.read_text():
                if time.time() > deadline:
                    raise SystemExit("the fake fleet did not start")
                time.sleep(0.05)
            ports.append(int(pf.read_text()))
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)


@contextlib.contextmanager
def prometheus(n: int, ports: list[int], folder: Path):  # type: ignore[no-untyped-def]
    exe = shutil.which("prometheus")
    if exe is None:
        raise SystemExit("prometheus is not installed (Debian: apt-get install prometheus)")
    targets = [{"targets": [f"127.0.0.1:{ports[i % 2]}"],
                "labels": {"__metrics_path__": f"/metrics/{i}", "instance": f"ep-{i}", "endpoint": f"ep-{i}",
                           "shape": "mlserver" if i % 2 == 0 else "triton"}} for i in range(n)]
    (folder / "targets.json").write_text(json.dumps(targets))
    (folder / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {INTERVAL:g}s\n  scrape_timeout: 4s\n"
        f"scrape_configs:\n  - job_name: fleet\n    file_sd_configs:\n      - files: ['{folder / 'targets.json'}']\n")
    from modeldeck.core.demo.prometheus import _free_port

    port = _free_port()
    log = open(folder / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([exe, f"--config.file={folder / 'prometheus.yml'}",
                             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1):
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("prometheus did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        log.close()


def query(url: str, expr: str) -> list:
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(url + "/api/v1/query", data=data, timeout=30) as r:
        return json.loads(r.read())["data"]["result"]


def wait_scraped(url: str, n: int) -> None:
    """Every target up, and two scrapes of each in the rate window."""
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            up = query(url, "sum(up)")
            rated = query(url, "count(rate(model_infer_request_success_total[1m])) + "
                               "count(rate(nv_inference_request_success[1m]))")
            if up and float(up[0]["value"][1]) >= n and rated and float(rated[0]["value"][1]) >= n:
                return
        except OSError:
            pass
        time.sleep(2)
    raise SystemExit("prometheus did not scrape every target in time")


# ---------------------------------------------------------------------------------------------
# the config


def write_config(folder: Path, url: str) -> Path:
    cfg = folder / "modeldeck.toml"
    blocks = []
    for shape in ("mlserver", "triton"):
        blocks.append(f"""
[[discover]]
name = "{shape}"
profile = "{shape}"
selector = '{{job="fleet", shape="{shape}"}}'
group_by = ["endpoint", "model"]
model_label = "model"
environment = "production"
name_template = "{{endpoint}}"
""")
    cfg.write_text(f"""registry = "registry.db"
[poll]
interval = {INTERVAL}
store_interval = 0
[prometheus]
url = "{url}"
window = "1m"
timeout = 30.0
discover_interval = {INTERVAL}
{''.join(blocks)}""")
    from modeldeck.core.registry import Registry

    Registry(folder / "registry.db").close()
    return cfg


# ---------------------------------------------------------------------------------------------
# 1. refresh vs raw queries


def _breakdown() -> dict[str, float]:
    """Wrap the refresh's synchronous steps to add up the CPU each takes (thread time: the
    poller runs them on this thread, between awaits). Returns the totals, by step."""
    from modeldeck.core import poller, promql

    spent: dict[str, float] = {}

    def timed(owner: object, name: str, label: str, static: bool = False) -> None:
        f = getattr(owner, name)

        def wrapper(*a: object, **k: object) -> object:
            c = time.thread_time()
            try:
                return f(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + time.thread_time() - c

        setattr(owner, name, staticmethod(wrapper) if static else wrapper)

    timed(promql, "_decode", "decode answers")
    timed(promql._Router, "route", "route series")
    timed(promql.PromFleet, "_reading", "readings", static=True)
    timed(promql, "discovered_endpoints", "discovered configs")
    timed(poller.Poller, "_apply_prom", "apply")
    timed(poller.Poller, "_snapshot", "snapshots")
    timed(poller.Poller, "_publish", "publish")
    return spent


async def refreshes(cfg: Path, n: int, runs: int, breakdown: bool = False) -> None:
    import httpx

    from modeldeck.core import config
    from modeldeck.core.poller import Poller

    settings = config.parse_file(cfg)
    mine_wall, mine_cpu, raw_wall, raw_cpu = [], [], [], []
    # the raw client asks as modeldeck's does: uncompressed from this loopback Prometheus
    async with Poller(settings, aliases={}) as p, httpx.AsyncClient(
            timeout=30, headers={"Accept-Encoding": "identity"}) as client:
        await p.poll_once()  # the first discovery
        assert len(p.configs()) == n, f"discovered {len(p.configs())} of {n}"
        prom = p._prom
        texts = []
        for block in settings.discover:
            texts.append(prom.discover_query(block))
        by_profile: dict[str, list] = {}
        for c in p.configs():
            by_profile.setdefault(c.metrics_profile, []).append(c)
        for profile, cfgs in by_profile.items():
            texts += list(prom.queries_for(profile, cfgs)[0].values())
        url = settings.prometheus.url + "/api/v1/query"

        async def raw() -> None:
            async def one(q: str) -> int:
                r = await client.post(url, data={"query": q})
                return len(json.loads(r.content)["data"]["result"])

            await asyncio.gather(*(one(q) for q in texts))

        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            pr = cProfile.Profile()
            pr.enable()
            p._discover_at = -1e9
            await p.poll_once()
            pr.disable()
            pstats.Stats(pr).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(40)
        parts: dict[str, list[float]] = {}
        spent = _breakdown() if breakdown else None
        for _ in range(runs):
            start = time.monotonic()
            if spent is not None:
                spent.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            p._discover_at = -1e9  # discovery every refresh, as at a 5 s discover_interval
            snaps = await p.poll_once()
            mine_wall.append(time.perf_counter() - t0)
            mine_cpu.append(time.process_time() - c0)
            if spent is not None:
                for k, v in spent.items():
                    parts.setdefault(k, []).append(v)
            if len(snaps) != n or sum(1 for s in snaps if s.request_rate) < 0.99 * n:
                import collections

                why = collections.Counter(s.reason for s in snaps).most_common(3)
                raise SystemExit(f"only {sum(1 for s in snaps if s.request_rate)} of {n} endpoints have a rate: {why}")
            await asyncio.sleep(0.5)
            c0, t0 = time.process_time(), time.perf_counter()
            await raw()
            raw_wall.append(time.perf_counter() - t0)
            raw_cpu.append(time.process_time() - c0)
            await asyncio.sleep(max(0.0, start + INTERVAL - time.monotonic()))
        up = sum(1 for s in snaps if s.status == "UP")
    med = statistics.median
    ratio = med(mine_wall) / med(raw_wall)
    share = med(mine_cpu) / INTERVAL
    print(f"refresh of {n} discovered endpoints ({len(texts)} queries: discovery + one per quantity per "
          f"profile), median of {runs}; {up} UP:")
    print(f"  modeldeck   wall {med(mine_wall) * 1000:7.0f} ms (min {min(mine_wall) * 1000:.0f}, max "
          f"{max(mine_wall) * 1000:.0f})   client CPU {med(mine_cpu) * 1000:6.0f} ms = {share:.1%} of a core at "
          f"{INTERVAL:g} s   target < 5 %  {'ok' if share < 0.05 else 'MISSED'}")
    print(f"  raw PromQL  wall {med(raw_wall) * 1000:7.0f} ms (min {min(raw_wall) * 1000:.0f}, max "
          f"{max(raw_wall) * 1000:.0f})   client CPU {med(raw_cpu) * 1000:6.0f} ms   (httpx + json.loads, same queries)")
    print(f"  ratio wall {ratio:.2f}x   target <= 1.3x  {'ok' if ratio <= 1.3 else 'MISSED'}")
    if parts:
        total = med(mine_cpu) * 1000
        shown = {k: med(v) * 1000 for k, v in parts.items()}
        print("  client CPU by step (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in shown.items())
              + f", the rest (HTTP, event loop, planning) {total - sum(shown.values()):.0f}")


# ---------------------------------------------------------------------------------------------
# 2. --report


def report(cfg: Path, n: int, runs: int = 3) -> None:
    if os.environ.get("BENCH_PROFILE_REPORT"):
        prof = cfg.parent / "report.prof"
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "modeldeck", "--report", "--config",
                        str(cfg), "--format", "json"], capture_output=True, timeout=120, cwd=cfg.parent)
        import pstats

        pstats.Stats(str(prof)).sort_stats("cumtime").print_stats(45)
    # the bytecode an installed copy has (pip compiles it; this machine's PYTHONDONTWRITEBYTECODE
    # would otherwise make every run compile modeldeck's sources again: 0.35 s)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "core"), str(ROOT / "tui")], check=True)
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "modeldeck", "--report", "--config", str(cfg), "--format", "json"],
                           capture_output=True, text=True, timeout=120, cwd=cfg.parent)
        walls.append(time.perf_counter() - t0)
        if r.returncode == 3:
            raise SystemExit(f"report could not run: {r.stderr[-500:]}")
        doc = json.loads(r.stdout)
        assert len(doc["endpoints"]) == n, len(doc["endpoints"])
    med = statistics.median(walls)
    print(f"--report over {len(doc['endpoints'])} endpoints (fresh process, median of {runs}): {med:.2f} s "
          f"(min {min(walls):.2f})   target < 3 s  {'ok' if med < 3 else 'MISSED'}   status {doc['status']}")


# ---------------------------------------------------------------------------------------------
# 3. TUI key latency


async def tui(cfg: Path, n: int, keys: int) -> None:
    from textual import events

    from modeldeck.core import config
    from modeldeck.tui.app import ModeldeckApp

    settings = config.parse_file(cfg)
    app = ModeldeckApp(settings)
    async with app.run_test(size=(120, 35)) as pilot:
        deadline = time.time() + 90
        while time.time() < deadline:
            await pilot.pause(0.5)
            latest = app.source.latest()
            if len(latest) >= n and sum(1 for s in latest.values() if s.request_rate) >= 0.99 * n:
                break
        await pilot.pause(1.0)
        rows = len(app.screen._rows)
        home = len(app.screen_stack)  # the fleet screen's depth (Textual's default screen below it)

        def state() -> tuple:
            screen = app.screen
            return (type(screen), getattr(screen.focused, "cursor_row", None), len(app.screen_stack),
                    type(screen.focused), getattr(screen, "filter_text", None))

        async def press(key: str) -> float:
            before = state()
            # the keys that change what is shown (a move, a screen, the filter), waited for until
            # they have; an escape with nothing to close changes nothing and is only processed
            expect = key in ("j", "k", "enter") or (key == "escape" and (before[2] > home or bool(before[4])))
            t = time.perf_counter()
            app._driver.send_message(events.Key(key, key if len(key) == 1 else None))
            for _ in range(500):
                await pilot._wait_for_screen()
                if not expect or state() != before:
                    break
            await pilot._wait_for_screen()
            return (time.perf_counter() - t) * 1000

        async def measure() -> tuple[list[float], dict[str, list[float]]]:
            out: list[float] = []
            by: dict[str, list[float]] = {}
            plan = ((["j"] * 20 + ["k"] * 20) * max(1, keys // 40) + ["enter", "escape"] * 5
                    + ["slash", *"ep-12", "escape", "escape"])
            for key in plan:
                ms = await press(key)
                out.append(ms)
                by.setdefault(key if key in ("j", "k", "enter", "escape") else "filter", []).append(ms)
                await asyncio.sleep(0.03)
            return out, by

        busy, by_key = await measure()
        app.source.pause()
        await pilot.pause(INTERVAL + 1)
        idle, _ = await measure()
    p = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(len(xs) * q))]  # noqa: E731
    print(f"TUI key latency with {rows} rows refreshed every {INTERVAL:g} s ({len(busy)} keys):")
    print(f"  refreshing p50 {statistics.median(busy):6.1f} ms  p95 {p(busy, 0.95):6.1f} ms  max {max(busy):6.1f} ms"
          f"   target p95 < 50 ms  {'ok' if p(busy, 0.95) < 50 else 'MISSED'}")
    print(f"  paused     p50 {statistics.median(idle):6.1f} ms  p95 {p(idle, 0.95):6.1f} ms  max {max(idle):6.1f} ms"
          f"   (baseline, same run)")
    for key, ms in by_key.items():
        print(f"    {key:8} n={len(ms):3}  p50 {statistics.median(ms):6.1f} ms  p95 {p(ms, 0.95):6.1f} ms  "
              f"max {max(ms):6.1f} ms")


class _Once(logging.Filter):
    """Lets each distinct message through once per process. The refresh measurement and the TUI
    each run a Poller, and each logs the fleet's history budget line once (``history: 20
    snapshots kept per endpoint, …``): without this the run printed it twice."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def say_once(name: str = "modeldeck.poller") -> _Once:
    """Install :class:`_Once` on the logger ``name`` (the poller's, by default)."""
    once = _Once()
    logging.getLogger(name).addFilter(once)
    return once


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, default=5000)
    ap.add_argument("--refreshes", type=int, default=6)
    ap.add_argument("--keys", type=int, default=120)
    ap.add_argument("--serve", nargs=3, metavar=("PARITY", "N", "PORTFILE"), help=argparse.SUPPRESS)
    ap.add_argument("--skip-tui", action="store_true")
    ap.add_argument("--skip-report", action="store_true")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print the refresh's client CPU by step (wraps them: adds a little)")
    ap.add_argument("--no-hold", action="store_true",
                    help="the TUI's keys do not make the poller pause (the comparison for PollerSource.hold)")
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), args.serve[2])
        return 0
    n = args.endpoints
    say_once()
    if args.no_hold:
        from modeldeck.tui.source import PollerSource

        PollerSource.hold = lambda self, seconds=0.25: None  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="bench-prometheus-") as tmp:
        folder = Path(tmp)
        os.environ["XDG_STATE_HOME"] = tmp
        with fleet(n, folder) as ports, prometheus(n, ports, folder) as url:
            t0 = time.time()
            wait_scraped(url, n)
            print(f"{n} endpoints served by 2 processes, scraped by prometheus every {INTERVAL:g} s "
                  f"(ready after {time.time() - t0:.0f} s); load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} cores")
            cfg = write_config(folder, url)
            asyncio.run(refreshes(cfg, n, args.refreshes, args.breakdown))
            if not args.skip_report:
                report(cfg, n)
            if not args.skip_tui:
                asyncio.run(tui(cfg, n, args.keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
