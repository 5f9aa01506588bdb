"""The headless report's start-up and its bounded time.

1. Start-up: ``modeldeck --report`` on a config with no endpoints (a registry with 3 models),
   median wall time of N runs, against ``python -c pass`` (the interpreter's own start-up) and
   ``python -c "import textual.app"`` (what a Textual import alone would add), measured in the
   same run; and the report with pandas blocked from importing (core.registry's sqlite_utils
   imports pandas whenever it is installed; the report itself needs it only for drift).
2. Bounded time: 50 loopback endpoints (tests/faultservers.py), a third of them hanging, at the
   default ``--sample 5`` and ``poll.timeout = 1``: wall time of the whole command against the
   bound ``sample + 2 x timeout + 5 s``.
3. Scale: 10,000 endpoints whose connections are refused (``--refused N``): wall time of the
   whole command against ``sample + 2 x timeout``, and the machine's load average.

Run: .venv/bin/python benchmarks/bench_report.py [--runs 15] [--sample 5] [--timeout 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeldeck.core.registry import Registry
from tests.faultservers import HANG, servers

ROOT = Path(__file__).resolve().parent.parent


def wall(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    return time.perf_counter() - t0, r


def median_ms(argv: list[str], env: dict[str, str], cwd: Path, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t, r = wall(argv, env, cwd)
        if r.returncode not in (0, 1, 2):
            raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
        times.append(t * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.9) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--sample", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--refused", type=int, default=10_000, help="refused endpoints in part 3")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(d)}  # cron-like
        reg = d / "registry.db"
        with Registry(reg) as r:
            for m in ("churn", "fraud", "demand"):
                r.register(m, f"s3://b/{m}/1", actor="bench")
                r.approve(m, 1, "ok", actor="bench")
                r.promote(m, 1, "production", "release", actor="bench")
        empty = d / "empty.toml"
        empty.write_text(f"registry = {json.dumps(str(reg))}\n")

        print(f"start-up, median / p90 of {args.runs} runs (ms):")
        base = median_ms([py, "-c", "pass"], env, d, args.runs)
        print(f"  python -c pass                          {base[0]:7.0f} / {base[1]:.0f}   (baseline)")
        try:
            tx = median_ms([py, "-c", "import textual.app"], env, d, max(5, args.runs // 3))
            print(f"  python -c 'import textual.app'          {tx[0]:7.0f} / {tx[1]:.0f}")
        except SystemExit:
            pass
        rep = median_ms([py, "-m", "modeldeck", "--report", "--config", str(empty)], env, d, args.runs)
        print(f"  modeldeck --report (no endpoints)       {rep[0]:7.0f} / {rep[1]:.0f}   "
              f"(+{rep[0] - base[0]:.0f} ms over the baseline)")
        nopd = median_ms([py, "-c", "import sys; sys.modules['pandas'] = None; from modeldeck.tui.cli import main; "
                                    f"sys.exit(main(['--report', '--config', {str(empty)!r}]))"], env, d, args.runs)
        print(f"  the same, pandas import blocked         {nopd[0]:7.0f} / {nopd[1]:.0f}   "
              f"(sqlite_utils imports pandas when installed: {rep[0] - nopd[0]:.0f} ms of it)")
        script = Path(py).parent / "modeldeck"
        if script.exists():
            rs = median_ms([str(script), "--report", "--config", str(empty)], env, d, args.runs)
            print(f"  .venv/bin/modeldeck --report            {rs[0]:7.0f} / {rs[1]:.0f}")

        with servers(50, model="churn", versions=["1"], metrics_version="1") as srvs:
            for i, s in enumerate(srvs):
                if i % 3 == 0:
                    s.default = HANG
            lines = [f"registry = {json.dumps(str(reg))}", "[poll]", f"timeout = {args.timeout!r}"]
            for i, s in enumerate(srvs):
                lines += ["[[endpoints]]", f'name = "ep{i:02d}"', 'model = "churn"', f'url = "{s.url}"']
            cfg = d / "fifty.toml"
            cfg.write_text("\n".join(lines) + "\n")
            t, r = wall([py, "-m", "modeldeck", "--report", "--config", str(cfg), "--sample", str(args.sample),
                         "--format", "json"], dict(os.environ), d)
        doc = json.loads(r.stdout)
        hung = sum(1 for f in doc["findings"] if "timed out" in f["message"])
        bound = args.sample + 2 * args.timeout + 5
        print(f"\n50 endpoints, 17 hanging, sample {args.sample:g} s, timeout {args.timeout:g} s:")
        print(f"  wall time {t:.2f} s (bound {bound:g} s), exit {r.returncode}, {hung} timed-out findings")
        if t >= bound or hung != 17:
            print("  FAILED the bound")
            return 1

        # 3. many refused endpoints (nothing listens on their ports): the report's own work per
        # endpoint, which is what bounds it at scale (issue 13)
        import socket

        socks = []
        for _ in range(50):  # 50 ports bound and closed again: refused, and 200 endpoints share each
            s_ = socket.socket()
            s_.bind(("127.0.0.1", 0))
            socks.append(s_.getsockname()[1])
            s_.close()
        lines = [f"registry = {json.dumps(str(reg))}", "[poll]", f"timeout = {args.timeout!r}"]
        for i in range(args.refused):
            lines += ["[[endpoints]]", f'name = "r{i}"', f'model = "m{i % 50}"',
                      f'url = "http://127.0.0.1:{socks[i % 50]}/e{i}"']
        cfg = d / "refused.toml"
        cfg.write_text("\n".join(lines) + "\n")
        t, r = wall([py, "-m", "modeldeck", "--report", "--config", str(cfg), "--sample", str(args.sample),
                     "--format", "json"], dict(os.environ), d)
        doc = json.loads(r.stdout)
        refused = sum(1 for f in doc["findings"] if f["message"].endswith("connection refused"))
        bound = args.sample + 2 * args.timeout
        load = os.getloadavg()[0]
        print(f"\n{args.refused} refused endpoints, sample {args.sample:g} s, timeout {args.timeout:g} s "
              f"(load average {load:.1f} on {os.cpu_count()} cores):")
        print(f"  wall time {t:.2f} s = {t / bound:.2f} x the bound sample + 2 x timeout = {bound:g} s; "
              f"{refused} 'connection refused' findings")
        if refused != args.refused:
            print("  FAILED: not every endpoint was reported refused")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
