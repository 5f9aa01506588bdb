"""Drift engine figures: 1,000,000 rows x (20 numeric + 5 categorical) columns, reference and current.

    .venv/bin/python benchmarks/bench_drift.py [--rows 1000000] [--workers 2]

Prints, each measured in a fresh process (peak RSS = the kernel's VmHWM, reset just before the
timed step, whole process: interpreter, both frames and everything the step allocates):
  full     build_profile(reference frame) + compare(profile, current frame)
  cached   load_profile(reference.parquet) from the on-disk cache (hash the file, read the profile)
           + compare(profile, current frame)
  scipy    the baseline, per column: scipy.stats.ks_2samp + wasserstein_distance on each numeric
           column, value_counts + chisquare on each categorical one
and the ratios against the baseline and against the size of the two frames.
Targets (2 cores): full <= 4 s, cached <= 2 s, >= 4x faster than scipy, peak < 3x the frames.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_NUMERIC = 20
N_CATEGORICAL = 5
CATEGORY_COUNTS = [3, 10, 50, 200, 1000]


def make_frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(N_NUMERIC):
        kind = i % 4
        if kind == 0:
            v = rng.normal(loc=shift, size=rows)
        elif kind == 1:
            v = rng.lognormal(mean=shift, sigma=0.8, size=rows)
        elif kind == 2:
            v = np.round(rng.normal(50 + shift, 15, size=rows), 1)  # many ties
        else:
            v = rng.exponential(1.0 + shift, size=rows)
            v[rng.random(rows) < 0.02] = np.nan  # a little missing data
        cols[f"num_{i}"] = v
    for j, k in enumerate(CATEGORY_COUNTS):
        names = np.array([f"c{j}_{x}" for x in range(k)], dtype=object)
        p = np.linspace(1.0, 2.0 + shift, k)
        cols[f"cat_{j}"] = pd.Series(names[rng.choice(k, size=rows, p=p / p.sum())], dtype="str")
    return pd.DataFrame(cols)


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def worker(mode: str, rows: int, workers: int, tmp: str) -> dict:
    from modeldeck.core import drift

    cur = make_frame(rows, seed=2, shift=0.02)
    ref = make_frame(rows, seed=1) if mode in ("full", "scipy") else None
    frames = cur.memory_usage(deep=True).sum() * 2 if ref is None else (
        cur.memory_usage(deep=True).sum() + ref.memory_usage(deep=True).sum())
    before = _status_kb("VmRSS") * 1024
    _reset_peak()
    t0 = time.perf_counter()
    if mode == "full":
        profile = drift.build_profile(ref, source="reference", workers=workers)
        result = drift.compare(profile, cur, workers=workers)
        summary = f"{result.n_drifted}/{result.n_columns} drifted"
    elif mode == "cached":
        profile = drift.load_profile(Path(tmp) / "reference.parquet", cache_dir=Path(tmp) / "profiles",
                                     workers=workers)
        result = drift.compare(profile, cur, workers=workers)
        summary = f"{result.n_drifted}/{result.n_columns} drifted"
    elif mode == "scipy":
        from scipy import stats

        for c in ref.columns:
            if c.startswith("num_"):
                r = ref[c].to_numpy()
                r = r[np.isfinite(r)]
                x = cur[c].to_numpy()
                x = x[np.isfinite(x)]
                stats.ks_2samp(r, x)
                stats.wasserstein_distance(r, x)
            else:
                rv = ref[c].value_counts()
                cv = cur[c].value_counts().reindex(rv.index, fill_value=0)
                stats.chisquare(cv.to_numpy(), rv.to_numpy() * (cv.sum() / rv.sum()))
        summary = "baseline"
    elif mode == "prepare":
        full_ref = make_frame(rows, seed=1)
        full_ref.to_parquet(Path(tmp) / "reference.parquet")
        drift.load_profile(Path(tmp) / "reference.parquet", cache_dir=Path(tmp) / "profiles", workers=workers)
        summary = "cache written"
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    return {"mode": mode, "seconds": seconds, "peak": _status_kb("VmHWM") * 1024, "before": before,
            "frames": int(frames), "summary": summary}


def run(mode: str, rows: int, workers: int, tmp: str) -> dict:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, __file__, "--worker", mode, "--rows", str(rows),
                           "--workers", str(workers), "--tmp", tmp],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description="drift engine benchmark")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.workers, args.tmp)))
        return 0
    mb = 1 / 2**20
    print(f"drift benchmark: reference and current {args.rows:,} rows x {N_NUMERIC} numeric + "
          f"{N_CATEGORICAL} categorical columns, {args.workers} worker threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        run("prepare", args.rows, args.workers, tmp)
        res = {m: run(m, args.rows, args.workers, tmp) for m in ("full", "cached", "scipy")}
    frames = res["full"]["frames"]
    print(f"size of the two frames: {frames * mb:,.0f} MB")
    print(f"{'':8} {'wall s':>8} {'peak RSS MB':>12} {'peak/frames':>12} {'added MB':>10}  vs scipy")
    for m in ("full", "cached", "scipy"):
        r = res[m]
        ratio = res["scipy"]["seconds"] / r["seconds"]
        print(f"{m:8} {r['seconds']:8.2f} {r['peak'] * mb:12,.0f} {r['peak'] / frames:12.2f} "
              f"{(r['peak'] - r['before']) * mb:10,.0f}  {ratio:5.1f}x faster  ({r['summary']})")
    ok = (res["full"]["seconds"] <= 4 and res["cached"]["seconds"] <= 2
          and res["scipy"]["seconds"] / res["full"]["seconds"] >= 4
          and res["full"]["peak"] < 3 * frames and res["cached"]["peak"] < 3 * frames)
    print("targets (full <= 4 s, cached <= 2 s, >= 4x scipy, peak < 3x frames):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
