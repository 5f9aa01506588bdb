"""False-alarm rates of the drift defaults when nothing drifted.

    .venv/bin/python benchmarks/false_alarms.py [--references 200] [--windows 10] [--reference-rows 10000 1000]

Draws a reference and current windows from the *same* distributions, compares them with
core.drift.compare (defaults: Evidently's tests from 500 current values, the p-value test below,
nothing judged below 30) and prints, per column type and current size, the share of comparisons that
flagged the column as drifted, and the share that flagged dataset drift.  Each reference is redrawn
``--references`` times with ``--windows`` windows each, so the rate is not that of one lucky reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeldeck.core.drift import build_profile, compare

SIZES = [100, 200, 500, 1000]
ZIPF20 = 1 / np.arange(1, 21) ** 1.1
ZIPF20 = ZIPF20 / ZIPF20.sum()
CAT5 = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
NAMES5 = np.array([f"c{i}" for i in range(5)], dtype=object)
NAMES20 = np.array([f"k{i}" for i in range(20)], dtype=object)

COLUMNS = {
    "normal (float)": lambda r, n: r.normal(size=n),
    "lognormal (float, skewed)": lambda r, n: r.lognormal(sigma=0.8, size=n),
    "rounded (float, ties)": lambda r, n: np.round(r.normal(50, 10, size=n)),
    "poisson(4) (int)": lambda r, n: r.poisson(4, size=n),
    "binary (bool, p=0.3)": lambda r, n: r.random(n) < 0.3,
    "3 values (float)": lambda r, n: r.choice([0.0, 1.0, 2.0], size=n, p=[0.6, 0.3, 0.1]),
    "5 categories (str)": lambda r, n: NAMES5[r.choice(5, size=n, p=CAT5)],
    "20 categories, zipf (str)": lambda r, n: NAMES20[r.choice(20, size=n, p=ZIPF20)],
}


def make(r: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({name: gen(r, n) for name, gen in COLUMNS.items()})


def one_reference(reference_rows: int, windows: int, seed: int) -> tuple[dict, dict, dict]:
    """Counts of flagged columns for one reference and ``windows`` windows of each size."""
    r = np.random.default_rng(seed)
    flagged = {(c, n): 0 for c in COLUMNS for n in SIZES}
    methods: dict[tuple[str, int], set] = {(c, n): set() for c in COLUMNS for n in SIZES}
    dataset = dict.fromkeys(SIZES, 0)
    profile = build_profile(make(r, reference_rows), workers=1)
    for n in SIZES:
        for _ in range(windows):
            res = compare(profile, make(r, n), workers=1)
            dataset[n] += res.dataset_drift
            for c in res.columns:
                flagged[(c.column, n)] += c.drifted
                methods[(c.column, n)].add(c.method)
    return flagged, methods, dataset


def measure(reference_rows: int, references: int, windows: int, seed: int, jobs: int) -> tuple[dict, dict]:
    flagged = {(c, n): 0 for c in COLUMNS for n in SIZES}
    methods: dict[tuple[str, int], set] = {(c, n): set() for c in COLUMNS for n in SIZES}
    dataset = dict.fromkeys(SIZES, 0)
    seeds = [seed * 1000 + k for k in range(references)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        parts = pool.map(one_reference, [reference_rows] * references, [windows] * references, seeds)
        for f, m, d in parts:
            for k, v in f.items():
                flagged[k] += v
                methods[k] |= m[k]
            for n, v in d.items():
                dataset[n] += v
    total = references * windows
    rates = {k: v / total for k, v in flagged.items()}
    rates.update({("dataset drift", n): dataset[n] / total for n in SIZES})
    return rates, methods


def table(rates: dict, methods: dict, reference_rows: int, trials: int) -> str:
    head = f"| column (reference {reference_rows:,} rows) | " + " | ".join(f"n={n}" for n in SIZES) + " |"
    lines = [head, "|---|" + "---:|" * len(SIZES)]
    for c in [*COLUMNS, "dataset drift"]:
        cells = []
        for n in SIZES:
            m = methods.get((c, n))
            tag = f" {'/'.join(sorted(x for x in m if x))}" if m else ""
            cells.append(f"{rates[(c, n)]:.1%}{tag}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{trials:,} same-distribution windows per cell."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--references", type=int, default=200)
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--reference-rows", type=int, nargs="+", default=[10_000, 1_000])
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    for rows in args.reference_rows:
        t0 = time.perf_counter()
        rates, methods = measure(rows, args.references, args.windows, args.seed, args.jobs)
        print(table(rates, methods, rows, args.references * args.windows))
        small = max(v for (c, n), v in rates.items() if c != "dataset drift" and n < 500)
        large = max(v for (c, n), v in rates.items() if c != "dataset drift" and n >= 500)
        print(f"worst per-column rate: {small:.1%} below 500 values (modeldeck's guard), {large:.1%} at 500 "
              f"and 1,000 values (Evidently's tests, reproduced exactly); target <= 6% "
              f"({time.perf_counter() - t0:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
