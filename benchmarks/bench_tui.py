"""TUI responsiveness, driven by Pilot on a headless app.

    .venv/bin/python benchmarks/bench_tui.py [--endpoints 200] [--keys 200] [--skip-demo]

1. Start-up on the demo: a fresh interpreter runs ``modeldeck --demo``'s app headless and
   reports (a) the first drawn fleet screen and (b) the demo fleet's rows on it, both measured
   from the moment the parent started the process. Baseline in the same run: a fresh
   interpreter drawing an empty Textual app. Target: (a) under 1.5 s.
2. Key latency while 200 endpoints are polled every second (served by
   ``bench_poller.py --serve`` in another process, as real loopback HTTP): the time from a key
   press (j/k moves, enter + esc into a model screen and back, / filter typing) until the app
   has processed it and redrawn. Baseline in the same run: the same keys with polling paused.
   Target: p95 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD_DEMO = r"""
import asyncio, os, sys, time
t0 = float(sys.argv[1])
from modeldeck.tui.app import ModeldeckApp
from modeldeck.tui.screens.fleet import FleetScreen
async def main():
    app = ModeldeckApp(None, demo=True)
    first = rows = None
    async with app.run_test(size=(120, 35)) as pilot:
        deadline = time.time() + 60
        while time.time() < deadline:
            await pilot.pause(0.01)
            screen = app.screen
            if first is None and isinstance(screen, FleetScreen) and getattr(screen, "ready", False):
                first = time.time() - t0
            if first is not None and app.settings is not None and screen._rows:
                rows = time.time() - t0
                break
    print(f"{first} {rows}")
asyncio.run(main())
"""

CHILD_BARE = r"""
import asyncio, sys, time
t0 = float(sys.argv[1])
from textual.app import App
from textual.widgets import Static
class Bare(App):
    def compose(self):
        yield Static("hello")
async def main():
    app = Bare()
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause(0.01)
        print(time.time() - t0)
asyncio.run(main())
"""


def child(code: str) -> list[str]:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, str(t0)], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ), timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"child failed: {out.stderr[-2000:]}")
    return out.stdout.split()


def startup(runs: int) -> None:
    demo = [child(CHILD_DEMO) for _ in range(runs)]
    bare = [float(child(CHILD_BARE)[0]) for _ in range(runs)]
    first = statistics.median(float(d[0]) for d in demo)
    rows = statistics.median(float(d[1]) for d in demo if d[1] != "None")
    base = statistics.median(bare)
    print(f"start-up on the demo (median of {runs}, from process start):")
    print(f"  first drawn fleet screen   {first:6.2f} s   target < 1.5 s  {'ok' if first < 1.5 else 'MISSED'}"
          f"   ({first / base:.1f}x an empty Textual app: {base:.2f} s)")
    print(f"  demo fleet rows on screen  {rows:6.2f} s   (servers answering ready with their models loaded)")


async def key_latency(config: Path, keys: int) -> None:
    from modeldeck.core import config as configmod
    from modeldeck.tui.app import ModeldeckApp

    settings = configmod.parse_file(config)
    app = ModeldeckApp(settings)
    async with app.run_test(size=(120, 35)) as pilot:
        # let the poller reach steady state: every endpoint polled at least twice
        deadline = time.time() + 30
        while time.time() < deadline:
            await pilot.pause(0.2)
            latest = app.source.latest()
            if len(latest) == len(settings.endpoints) and all(s.status != "PENDING" for s in latest.values()):
                break
        await pilot.pause(2.0)
        polled = len(app.source.latest())

        from textual import events

        async def press(key: str) -> float:
            """Milliseconds from the key reaching the app until it was handled and the app, the
            screen and its widgets have processed every message it caused (the redraw is
            scheduled then; it is painted at the next frame). Pilot.press would also wait for the
            whole process to go idle, which never happens while the poller thread works."""
            before = (type(app.screen), getattr(app.screen.focused, "cursor_row", None), len(app.screen_stack))
            t = time.perf_counter()
            app._driver.send_message(events.Key(key, key if len(key) == 1 else None))
            for _ in range(500):
                await pilot._wait_for_screen()
                after = (type(app.screen), getattr(app.screen.focused, "cursor_row", None), len(app.screen_stack))
                if after != before or key not in ("j", "k", "enter", "escape"):
                    break
            await pilot._wait_for_screen()
            return (time.perf_counter() - t) * 1000

        async def measure() -> list[float]:
            out = []
            plan = (["j"] * 20 + ["k"] * 20) * (keys // 40) + ["enter", "escape"] * 5 + ["slash", *"model1", "escape"]
            for key in plan:
                ms = await press(key)
                out.append(ms)
                by_key.setdefault(key if key in ("j", "k", "enter", "escape") else "filter", []).append(ms)
                await asyncio.sleep(0.03)  # a fast typist: a key every 30 ms
            return out

        by_key: dict[str, list[float]] = {}

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        busy = await measure()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        busy_by_key, by_key = by_key, {}
        app.source.pause()
        await pilot.pause(1.5)
        idle = await measure()
    p = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(len(xs) * q))]  # noqa: E731
    print(f"key latency while polling {polled} endpoints every {settings.poll.interval:g} s "
          f"({len(busy)} keys):")
    print(f"  polling   p50 {statistics.median(busy):6.1f} ms  p95 {p(busy, 0.95):6.1f} ms  max {max(busy):6.1f} ms"
          f"   target p95 < 100 ms  {'ok' if p(busy, 0.95) < 100 else 'MISSED'}")
    print(f"  paused    p50 {statistics.median(idle):6.1f} ms  p95 {p(idle, 0.95):6.1f} ms  max {max(idle):6.1f} ms"
          f"   (baseline, same run)  ratio p95 {p(busy, 0.95) / max(p(idle, 0.95), 0.01):.1f}x")
    for key, ms in busy_by_key.items():
        print(f"    {key:8} n={len(ms):3}  p50 {statistics.median(ms):6.1f} ms  max {max(ms):6.1f} ms  (polling)")
    used = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(f"  process CPU while measuring with polling on: {used:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    from modeldeck.core.registry import Registry

    if not args.skip_demo:
        startup(args.runs)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_poller import endpoint_server

    with endpoint_server(args.endpoints) as ports, tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "modeldeck.toml"
        lines = ['registry = "registry.db"', "[poll]", "interval = 1.0", "timeout = 1.0", "store_interval = 0"]
        for i, port in enumerate(ports):
            lines += ["[[endpoints]]", f'name = "model{i}-prod"', f'model = "model{i}"',
                      f'url = "http://127.0.0.1:{port}"']
        cfg.write_text("\n".join(lines) + "\n")
        Registry(Path(tmp) / "registry.db").close()
        os.environ["XDG_STATE_HOME"] = tmp
        asyncio.run(key_latency(cfg, args.keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
