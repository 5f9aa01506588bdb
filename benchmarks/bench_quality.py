"""Model quality at scale: 1,000,000 captured records joined with 1,000,000 labels (10 % of the
records never labelled, 1 % of the labels sent twice, the first one wrong) and every
classification metric, by modeldeck (``core.quality.join`` + ``measure``: the join with its
counts, accuracy, precision, recall, F1, ROC AUC, the confusion matrix, each metric's 95 %
interval, the labelled share, the lag, the series and the CBPE estimate) against the same join
done with pandas (``drop_duplicates(keep="last")`` + ``merge``) plus scikit-learn's metrics
(``accuracy_score``, ``precision_score``, ``recall_score``, ``f1_score``, ``roc_auc_score``,
``confusion_matrix``; no intervals), in the same run, on the same frames. The metrics are
checked to agree to 1e-9 first.

Times are the median of ``--repeat`` alternating runs (wall clock, one process); peak memory
is measured in a fresh child process per side (resident memory sampled while it runs, over
what the frames and imports already hold).

    .venv/bin/python benchmarks/bench_quality.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from modeldeck.core import quality
from modeldeck.core.capture import ID, LABEL, LABEL_TIME


def make_data(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Captured rows (event ids, prediction, probability; inference-time index) and labels
    (oldest first: the 1 % duplicates' first, wrong label before the right one)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:016x}-{i % 9973:04d}" for i in rng.permutation(4 * n)[:n]], dtype=object)
    y = (rng.random(n) < 0.3).astype(np.int64)
    score = np.clip(0.3 * y + 0.7 * rng.random(n), 0.0, 1.0).round(6)
    pred = (score >= 0.5).astype(np.int64)
    times = pd.DatetimeIndex(pd.to_datetime(1.7e9 + np.arange(n) * 0.01, unit="s", utc=True), name="inference_time")
    captured = pd.DataFrame({ID: ids, "prediction": pred, "probability": score}, index=times)
    labelled = np.flatnonzero(rng.random(n) >= 0.10)
    again = labelled[rng.random(len(labelled)) < 0.01]
    lab_ids = np.concatenate([ids[again], ids[labelled]])
    lab_y = np.concatenate([1 - y[again], y[labelled]])
    labels = pd.DataFrame({ID: lab_ids, LABEL: pd.Series(lab_y, dtype=object),
                           LABEL_TIME: pd.Series(pd.NaT, index=range(len(lab_ids)), dtype="datetime64[ns, UTC]")})
    # labels arrive in their own order, not the captures': shuffle within the two groups
    first, rest = labels.iloc[:len(again)], labels.iloc[len(again):].sample(frac=1.0, random_state=seed)
    return captured, pd.concat([first, rest], ignore_index=True)


def run_modeldeck(captured: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    spec = quality.QualitySpec(window=len(captured))
    r = quality.measure(quality.join(captured, labels, spec))
    out = {k: m.value for k, m in r.metrics.items()}
    out["confusion"] = r.confusion["matrix"] if r.confusion else None
    out["rows"] = r.rows
    return out


def run_pandas_sklearn(captured: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    from sklearn import metrics as m

    newest = labels.drop_duplicates(ID, keep="last")
    joined = captured.merge(newest, on=ID, how="inner")
    y, p, s = joined[LABEL].astype(np.int64).to_numpy(), joined["prediction"].to_numpy(), joined["probability"].to_numpy()
    return {"accuracy": m.accuracy_score(y, p), "precision": m.precision_score(y, p), "recall": m.recall_score(y, p),
            "f1": m.f1_score(y, p), "roc_auc": m.roc_auc_score(y, s), "confusion": m.confusion_matrix(y, p).tolist(),
            "rows": len(joined)}


SIDES = {"modeldeck": run_modeldeck, "pandas+sklearn": run_pandas_sklearn}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def memory_child(side: str, n: int) -> None:
    """The side's peak resident memory over what the frames and imports already hold: RSS
    sampled every 2 ms in a thread while it runs (numpy, pandas and Arrow allocations alike)."""
    import threading

    captured, labels = make_data(n)
    import sklearn.metrics  # noqa: F401  (both sides pay their imports before the baseline)

    base = _rss_mb()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            done.wait(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    SIDES[side](captured, labels)
    done.set()
    t.join()
    print(json.dumps({"data_mb": base, "peak_mb": max(peak[0], _rss_mb())}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--memory-child", choices=list(SIDES), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.rows)
        return 0
    t0 = time.perf_counter()
    captured, labels = make_data(args.rows)
    print(f"data: {len(captured):,} captured records, {len(labels):,} labels "
          f"({len(labels) - labels[ID].nunique():,} duplicated), built in {time.perf_counter() - t0:.1f} s")
    ours, theirs = run_modeldeck(captured, labels), run_pandas_sklearn(captured, labels)  # warm both, then check
    assert ours["rows"] == theirs["rows"], (ours["rows"], theirs["rows"])
    assert ours["confusion"] == theirs["confusion"]
    for k in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert abs(ours[k] - theirs[k]) <= 1e-9, (k, ours[k], theirs[k])
    print(f"metrics agree to 1e-9 on {ours['rows']:,} joined rows: "
          + ", ".join(f"{k} {ours[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1", "roc_auc")))
    times: dict[str, list[float]] = {k: [] for k in SIDES}
    for _ in range(args.repeat):
        for side, fn in SIDES.items():
            t = time.perf_counter()
            fn(captured, labels)
            times[side].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for side in SIDES:
        print(f"{side:15s} median {med[side]:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[side])})")
    print(f"ratio modeldeck / (pandas merge + scikit-learn) = {med['modeldeck'] / med['pandas+sklearn']:.2f}x "
          f"(want <= 1.0x; modeldeck also computes the intervals, counts, series and CBPE estimate)")
    for side in SIDES:
        r = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--memory-child", side],
                           capture_output=True, text=True, check=True)
        mem = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{side:15s} peak memory {mem['peak_mb']:7.0f} MB, {mem['peak_mb'] - mem['data_mb']:6.0f} MB over the "
              f"{mem['data_mb']:.0f} MB the frames and imports take")
    return 0


if __name__ == "__main__":
    sys.exit(main())
