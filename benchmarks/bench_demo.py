"""The demo fleet's start-up time and footprint.

Prints, for a cold start (empty artifact cache: every demo version is trained), a warm start
(cached artifacts, fresh registry) and a restart on an existing registry: the time from spawning
``modeldeck demo-fleet`` to its ready line, and each server's time from start to answering ready;
then, with the default story running, the fleet's memory (RSS of the process tree, and its peak)
and CPU use. The baseline, measured in the same run: a bare interpreter importing the same
libraries (numpy, pandas, scikit-learn, prometheus-client), which is the floor of any Python
model server built on them.

Targets on 2 cores: every server ready within 10 s of start; the fleet under 500 MB.

    python benchmarks/bench_demo.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modeldeck.core.demo.fleet import FleetSettings, start_subprocess  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    for k in kids:
        out += tree(int(k))
    return out


def rss_mb(pids: list[int]) -> tuple[float, float]:
    rss = hwm = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        hwm += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return rss / 1024, hwm / 1024


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])
    return total / TICKS


def start(label: str, workdir: Path, env: dict[str, str], registry: Path | None = None) -> tuple[object, float]:
    t0 = time.monotonic()
    fp = start_subprocess(workdir, registry=registry, ready_timeout=120, env=env)
    wall = time.monotonic() - t0
    log = fp.log_path.read_text()
    m = re.findall(r"ready in ([\d.]+) s \(servers: ([^)]*)\)", log)
    servers = m[-1][1] if m else "?"
    worst = max((float(x) for x in re.findall(r" ([\d.]+) s", servers)), default=float("nan"))
    print(f"{label:28s} ready line after {wall:5.2f} s; slowest server ready {worst:5.2f} s after start "
          f"({servers})")
    return fp, wall


def baseline() -> tuple[float, float]:
    code = ("import time, resource; t = time.perf_counter(); import numpy, pandas, sklearn.ensemble, "
            "sklearn.linear_model, prometheus_client; d = time.perf_counter() - t; "
            "print(d, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="steady traffic measured for this long")
    args = ap.parse_args()
    imp_s, imp_mb = baseline()
    print(f"baseline: python importing numpy, pandas, scikit-learn, prometheus-client: {imp_s:.2f} s, "
          f"{imp_mb:.0f} MB max RSS")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        base = Path(tmp)
        env = dict(os.environ)
        env["XDG_CACHE_HOME"] = str(base / "cache")
        env["XDG_DATA_HOME"] = str(base / "data")
        env["XDG_STATE_HOME"] = str(base / "state")
        env["MODELDECK_ACTOR"] = "bench"
        fp, _ = start("cold (trains 8 versions)", base / "cold", env)
        fp.stop()
        fp, _ = start("warm (cached artifacts)", base / "warm", env)
        registry = fp.registry_path
        fp.stop()
        fp, _ = start("restart (existing registry)", base / "again", env, registry)
        try:
            pids = tree(fp.pid)
            time.sleep(3)  # traffic settles
            c0, t0 = cpu_seconds(pids), time.monotonic()
            peak = 0.0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1)
                peak = max(peak, rss_mb(tree(fp.pid))[0])
            cpu = (cpu_seconds(tree(fp.pid)) - c0) / (time.monotonic() - t0)
            rss, hwm = rss_mb(tree(fp.pid))
            s = FleetSettings()
            rate = sum(s.rate_of(e) for e in s.endpoints)
            print(f"steady, {len(s.endpoints)} servers, {rate:.0f} requests/s in all, {args.seconds:.0f} s: "
                  f"RSS {rss:.0f} MB (max seen {peak:.0f} MB, process peak {hwm:.0f} MB; "
                  f"baseline {imp_mb:.0f} MB = {rss / imp_mb:.2f}x), CPU {cpu:.0%} of one core "
                  f"({cpu / rate * 1000:.2f} ms per request, client and server)")
        finally:
            code = fp.stop()
        print(f"SIGTERM: exit status {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
