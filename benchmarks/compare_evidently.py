"""Check core.drift against Evidently 0.7's DataDriftPreset on many randomized frames.

Evidently needs pandas < 3, so it lives in its own venv:

    python3 -m venv /tmp/evvenv && /tmp/evvenv/bin/pip install "evidently==0.7.23" "pandas<3"
    .venv/bin/python benchmarks/compare_evidently.py --evidently-python /tmp/evvenv/bin/python --cases 300

Both sides build the same frames from the same seeds (this file runs in both venvs: with ``--worker``
it only imports Evidently, without it only modeldeck); the worker prints Evidently's per-column
method, score and verdict and its DriftedColumnsCount as JSON.  Compared: every column Evidently
judges whose current window has at least 500 values (and, for columns where Evidently uses KS, down
to 30 values), plus the dataset drift share when no column is free text.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

EVIDENTLY_METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
}

REF_SIZES = [40, 200, 999, 1000, 1001, 1500, 5000, 20000]
CUR_SIZES = [500, 501, 700, 1000, 2500, 12000]
SMALL_CUR_SIZES = [30, 60, 150, 499]


def _strings(rng: np.random.Generator, k: int, n: int, p=None, prefix: str = "v") -> list[str]:
    cats = [f"{prefix}{i}" for i in range(k)]
    return list(np.asarray(cats, dtype=object)[rng.choice(k, size=n, p=p)])


def _probs(rng: np.random.Generator, k: int) -> np.ndarray:
    p = rng.dirichlet(np.ones(k) * 2)
    return p / p.sum()


def make_column(rng: np.random.Generator, kind: str, n_ref: int, n_cur: int, shift: float):
    """(reference values, current values) as pandas Series of one column family."""
    if kind == "normal":
        return pd.Series(rng.normal(size=n_ref)), pd.Series(rng.normal(loc=shift, size=n_cur))
    if kind == "lognormal":
        return (pd.Series(rng.lognormal(sigma=1.0, size=n_ref)),
                pd.Series(rng.lognormal(mean=shift, sigma=1.0, size=n_cur)))
    if kind == "float_nan_inf":
        r, c = rng.normal(size=n_ref), rng.normal(loc=shift, size=n_cur)
        for a in (r, c):
            m = rng.random(a.size)
            a[m < 0.03] = np.nan
            a[(m >= 0.03) & (m < 0.035)] = np.inf
            a[(m >= 0.035) & (m < 0.04)] = -np.inf
        return pd.Series(r), pd.Series(c)
    if kind.startswith("float_few"):  # float_few3 -> floats with 3 distinct values
        k = int(kind[len("float_few"):])
        p = _probs(rng, k)
        q = p if shift == 0 else _probs(rng, k)
        return (pd.Series(rng.choice(k, size=n_ref, p=p).astype(float) * 0.5),
                pd.Series(rng.choice(k, size=n_cur, p=q).astype(float) * 0.5))
    if kind[3:].isdigit() and kind.startswith("int"):  # int5 -> integers with 5 distinct values
        k = int(kind[3:])
        p = _probs(rng, k)
        q = p if shift == 0 else _probs(rng, k)
        return (pd.Series(rng.choice(k, size=n_ref, p=p).astype(np.int64)),
                pd.Series(rng.choice(k, size=n_cur, p=q).astype(np.int64)))
    if kind == "int_narrow_current":  # 20 values in the reference, 8 in the current window
        return (pd.Series(rng.integers(0, 20, n_ref)),
                pd.Series(rng.integers(0, 8, n_cur) + int(shift * 3)))
    if kind == "int_wide":
        return pd.Series(rng.integers(0, 10_000, n_ref)), pd.Series(rng.integers(0, 10_000 + int(shift * 3000), n_cur))
    if kind == "bool":
        return pd.Series(rng.random(n_ref) < 0.3), pd.Series(rng.random(n_cur) < 0.3 + shift * 0.1)
    if kind == "bool_const":
        return pd.Series(np.ones(n_ref, dtype=bool)), pd.Series(rng.random(n_cur) < shift * 0.05 + 0.999)
    if kind[3:].isdigit() and kind.startswith("str"):  # str7 -> 7 string categories
        k = int(kind[3:])
        p = _probs(rng, k)
        q = p if shift == 0 else _probs(rng, k)
        return pd.Series(_strings(rng, k, n_ref, p)), pd.Series(_strings(rng, k, n_cur, q))
    if kind == "str_unseen":
        p = _probs(rng, 6)
        cur = _strings(rng, 6, n_cur, p)
        for i in rng.choice(n_cur, size=max(1, int(n_cur * 0.01 * (1 + shift))), replace=False):
            cur[i] = "new"
        return pd.Series(_strings(rng, 6, n_ref, p)), pd.Series(cur)
    if kind == "str_nan":
        r = _strings(rng, 4, n_ref)
        c = _strings(rng, 4, n_cur)
        for a in (r, c):
            for i in rng.choice(len(a), size=len(a) // 20, replace=False):
                a[i] = None
        return pd.Series(r, dtype=object), pd.Series(c, dtype=object)
    if kind == "object_str":
        return (pd.Series(_strings(rng, 5, n_ref), dtype=object),
                pd.Series(_strings(rng, 5, n_cur), dtype=object))
    if kind == "category":
        return (pd.Series(_strings(rng, 4, n_ref), dtype="category"),
                pd.Series(_strings(rng, 4, n_cur, _probs(rng, 4) if shift else None), dtype="category"))
    if kind == "object_numbers":
        return pd.Series(rng.normal(size=n_ref)).astype(object), pd.Series(rng.normal(size=n_cur)).astype(object)
    if kind == "const":
        return pd.Series(np.full(n_ref, 3.0)), pd.Series(np.where(rng.random(n_cur) < shift * 0.5, 4.0, 3.0))
    if kind == "const_vs_spread":
        return pd.Series(np.full(n_ref, 3.0)), pd.Series(3.0 + rng.normal(scale=0.01, size=n_cur) * shift)
    if kind == "rounded":
        return (pd.Series(np.round(rng.normal(size=n_ref), 1)),
                pd.Series(np.round(rng.normal(loc=shift * 0.5, size=n_cur), 1)))
    if kind == "float32":
        return (pd.Series(rng.normal(size=n_ref).astype(np.float32)),
                pd.Series(rng.normal(loc=shift, size=n_cur).astype(np.float32)))
    if kind == "int_ref_float_cur":
        return (pd.Series(rng.integers(0, 50, n_ref)),
                pd.Series(rng.integers(0, 50 + int(10 * shift), n_cur).astype(float)))
    if kind == "float_ref_int_cur":
        return (pd.Series(rng.integers(0, 8, n_ref).astype(float)),
                pd.Series(rng.integers(0, 8 + int(2 * shift), n_cur)))
    if kind == "tiny_std":
        return (pd.Series(1.0 + rng.normal(scale=1e-5, size=n_ref)),
                pd.Series(1.0 + rng.normal(loc=1e-5 * shift, scale=1e-5, size=n_cur)))
    if kind == "uint8":
        return pd.Series(rng.integers(0, 40, n_ref).astype(np.uint8)), pd.Series(rng.integers(0, 40, n_cur).astype(np.uint8))
    if kind == "nullable_int":
        return pd.Series(rng.integers(0, 40, n_ref), dtype="Int64"), pd.Series(rng.integers(0, 40, n_cur), dtype="Int64")
    if kind == "datetime":
        base = np.datetime64("2024-01-01")
        return (pd.Series(base + rng.integers(0, 1000, n_ref).astype("timedelta64[h]")),
                pd.Series(base + rng.integers(0, 1000, n_cur).astype("timedelta64[h]")))
    if kind == "text":
        return (pd.Series([f"t{x}" for x in rng.integers(0, 10**9, n_ref)]),
                pd.Series([f"t{x}" for x in rng.integers(0, 10**9, n_cur)]))
    if kind == "int_with_nan":
        r = rng.integers(0, 4, n_ref).astype(float)
        c = rng.integers(0, 4 + int(shift > 0.2), n_cur).astype(float)
        r[rng.random(n_ref) < 0.05] = np.nan
        c[rng.random(n_cur) < 0.05] = np.nan
        return pd.Series(r), pd.Series(c)
    if kind == "neg_zero":
        r = rng.choice([-0.0, 0.0, 1.0, 2.0], size=n_ref)
        c = rng.choice([-0.0, 0.0, 1.0, 2.0 + shift], size=n_cur)
        return pd.Series(r), pd.Series(c)
    if kind == "category_num":
        return (pd.Series(rng.choice([1, 2, 3, 4], size=n_ref), dtype="category"),
                pd.Series(rng.choice([1, 2, 3, 4, 5 if shift > 0.2 else 4], size=n_cur), dtype="category"))
    if kind == "bool_object_nan":
        r = pd.Series(rng.random(n_ref) < 0.5, dtype=object)
        c = pd.Series(rng.random(n_cur) < 0.5, dtype=object)
        r[rng.random(n_ref) < 0.05] = None
        c[rng.random(n_cur) < 0.05] = None
        return r, c
    if kind == "heavy_ties":
        return (pd.Series(rng.poisson(3, n_ref).astype(float)),
                pd.Series(rng.poisson(3 + shift, n_cur).astype(float)))
    raise ValueError(kind)


KINDS = [
    "normal", "lognormal", "float_nan_inf", "float_few1", "float_few2", "float_few3", "float_few5",
    "float_few6", "int2", "int3", "int5", "int6", "int10", "int11", "int30", "int_narrow_current",
    "int_wide", "bool", "bool_const", "str2", "str3", "str7", "str25", "str_unseen", "str_nan",
    "object_str", "category", "object_numbers", "const", "const_vs_spread", "rounded", "float32",
    "int_ref_float_cur", "float_ref_int_cur", "tiny_std", "uint8", "nullable_int", "datetime", "text",
    "int_with_nan", "neg_zero", "heavy_ties", "category_num", "bool_object_nan",
]


def make_case(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_ref = int(rng.choice(REF_SIZES))
    small = rng.random() < 0.2
    n_cur = int(rng.choice(SMALL_CUR_SIZES if small else CUR_SIZES))
    n_cols = int(rng.integers(2, 7))
    kinds = list(rng.choice(KINDS, size=n_cols, replace=True))
    ref, cur = {}, {}
    for i, kind in enumerate(kinds):
        shift = float(rng.choice([0.0, 0.0, 0.05, 0.1, 0.2, 0.5]))
        r, c = make_column(rng, kind, n_ref, n_cur, shift)
        ref[f"{kind}_{i}"] = r.reset_index(drop=True)
        cur[f"{kind}_{i}"] = c.reset_index(drop=True)
    return pd.DataFrame(ref), pd.DataFrame(cur)


# --------------------------------------------------------------------------- Evidently side


def run_evidently(seeds: list[int]) -> dict:
    warnings.simplefilter("ignore")
    from evidently import Report
    from evidently.presets import DataDriftPreset

    out = {}
    for seed in seeds:
        ref, cur = make_case(seed)
        try:
            snap = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
            d = snap.dict()
        except Exception as e:  # Evidently refuses some frames (an all-NaN column...)
            out[str(seed)] = {"error": f"{type(e).__name__}: {e}"}
            continue
        cols = {}
        share = count = None
        for m in d["metrics"]:
            cfg = m["config"]
            if cfg["type"].endswith("DriftedColumnsCount"):
                share, count = m["value"]["share"], m["value"]["count"]
            elif cfg["type"].endswith("ValueDrift"):
                value = m["value"]
                cols[cfg["column"]] = {
                    "method": EVIDENTLY_METHODS.get(cfg["method"], cfg["method"]),
                    "score": None if value is None or (isinstance(value, float) and math.isnan(value)) else value,
                    "threshold": cfg["threshold"],
                }
        for t in d["tests"]:
            name = t.get("name", "")
            prefix = "Value Drift for column "
            if name.startswith(prefix):
                col = name[len(prefix):]
                if col in cols:
                    cols[col]["drifted"] = str(t.get("status")).endswith("FAIL")
        out[str(seed)] = {"columns": cols, "share": share, "count": count}
    return out


# --------------------------------------------------------------------------- our side


def run_ours(seeds: list[int]) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from modeldeck.core.drift import compare_frames

    out = {}
    for seed in seeds:
        ref, cur = make_case(seed)
        res = compare_frames(ref, cur, workers=1)
        out[str(seed)] = {
            "columns": {c.column: {"method": c.method, "score": c.score, "drifted": c.drifted,
                                   "status": c.status, "n_current": c.n_current, "threshold": c.threshold,
                                   "kind": c.kind}
                        for c in res.columns},
            "share": res.drift_share, "count": res.n_drifted, "n_columns": res.n_columns,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evidently-python", default="/tmp/evvenv/bin/python")
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--worker", action="store_true", help="(internal) run the Evidently side")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.worker:
        seeds = [int(s) for s in args.seeds.split(",") if s]
        json.dump(run_evidently(seeds), sys.stdout)
        return 0

    seeds = list(range(args.first_seed, args.first_seed + args.cases))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [args.evidently_python, __file__, "--worker", "--seeds", ",".join(map(str, seeds))],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 2
    theirs = json.loads(proc.stdout)
    t_ev = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = run_ours(seeds)
    t_ours = time.perf_counter() - t0

    checked = method_bad = verdict_bad = missing = 0
    max_abs = max_rel = 0.0
    share_checked = share_bad = ev_errors = 0
    by_method: dict[str, int] = {}
    worst: list[tuple] = []
    problems: list[str] = []
    for seed in map(str, seeds):
        ev, us = theirs[seed], ours[seed]
        if "error" in ev:
            ev_errors += 1
            problems.append(f"seed {seed}: Evidently refused the frames: {ev['error'][:150]}")
            continue
        has_text = False
        for col, e in ev["columns"].items():
            if e["method"] not in EVIDENTLY_METHODS.values():
                has_text = True
                continue
            u = us["columns"].get(col)
            if u is None or u["method"] is None:
                missing += 1
                problems.append(f"seed {seed} {col}: Evidently {e} / ours {u}")
                continue
            # below 500 values only ks is kept from Evidently (chisquare / z become a permutation test)
            if u["n_current"] < 500 and not (e["method"] == "ks" and u["n_current"] >= 30):
                continue
            checked += 1
            by_method[e["method"]] = by_method.get(e["method"], 0) + 1
            ok = True
            if u["method"] != e["method"]:
                method_bad += 1
                ok = False
            if u["drifted"] != e.get("drifted"):
                verdict_bad += 1
                ok = False
            es, us_ = e["score"], u["score"]
            if es is None or us_ is None:
                if es != us_:
                    ok = False
            else:
                diff = abs(es - us_)
                worst.append((diff, diff / max(abs(es), 1e-300), seed, col, e["method"], es))
                max_abs = max(max_abs, diff)
                max_rel = max(max_rel, diff / max(abs(es), 1e-300))
                if diff > 1e-9:
                    ok = False
            if not ok:
                problems.append(f"seed {seed} {col}: Evidently {e} / ours {u}")
        judged_ours = {c for c, u in us["columns"].items() if u["status"] in ("ok", "drift", "constant")}
        all_big = all(u["n_current"] >= 500 for u in us["columns"].values() if u["status"] != "skipped")
        if not has_text and all_big:
            share_checked += 1
            if (abs(us["share"] - ev["share"]) > 1e-12 or judged_ours != set(ev["columns"])):
                share_bad += 1
                problems.append(f"seed {seed}: share Evidently {ev['share']} ({sorted(ev['columns'])}) / "
                                f"ours {us['share']} ({sorted(judged_ours)})")
    print(f"cases: {len(seeds)} (Evidently refused {ev_errors}); Evidently {t_ev:.1f} s, modeldeck {t_ours:.1f} s")
    print(f"columns compared: {checked} " + " ".join(f"{k}={v}" for k, v in sorted(by_method.items())))
    print(f"method mismatches: {method_bad}; verdict mismatches: {verdict_bad}; columns missing: {missing}")
    print(f"max |score difference|: {max_abs:.3g} (max relative {max_rel:.3g})")
    print(f"dataset drift share compared on {share_checked} cases; mismatches: {share_bad}")
    if args.verbose:
        for w in sorted(worst, reverse=True)[:8]:
            print(f"  diff {w[0]:.3g} rel {w[1]:.3g}: seed {w[2]} {w[3]} {w[4]} score {w[5]!r}")
    for p in problems[: 40 if args.verbose else 10]:
        print("  " + p)
    bad = method_bad or verdict_bad or missing or share_bad or max_abs > 1e-9
    print("RESULT:", "MISMATCH" if bad else "all equal to 1e-9")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
