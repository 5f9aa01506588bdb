"""How close the CBPE estimate (``core.quality``: estimated accuracy and ROC AUC of the newest
rows without a label) is on the default 1,000-row quality window, on the demo's trained models
in their own (undrifted) world. Not a timing: an accuracy figure, in the same run against

- ``old``: the calibration it had before (Platt scaling below 1,000 labelled rows of each
  class, isotonic above), on the same rows;
- ``floor``: the same scores calibrated by an isotonic fit on 400,000 fresh labelled rows of the
  model's world (P(y | score) as well as it can be known): what any calibration of these scores
  could reach. What is left there is the measured value's own sampling noise (the labels of
  ``U`` rows), which no estimate can remove.

Per model and seed: ``--scan`` captured rows (``poll.quality_scan``, default 5,000), the newest
``U`` of them without a label yet; ``core.quality.join`` + ``measure`` (window 1,000) estimate
those ``U`` rows (``new``: the code as it is), and their labels then measure them
(scikit-learn). Printed: the calibration used, the mean error (bias) and the mean and largest
absolute error over ``--seeds`` seeds, and ``vs floor``: the mean absolute distance of the
ROC AUC estimate from the floor's (the calibration's own error, without the labels' noise).

    .venv/bin/python benchmarks/cbpe_window.py [--scan 5000] [--unlabelled 1000,200] [--seeds 20]
"""

from __future__ import annotations

import argparse
import pickle
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from modeldeck.core import capture, quality
from modeldeck.core.capture import ID
from modeldeck.core.demo import seed
from modeldeck.core.demo.datasets import WORLDS

MODELS = (("churn", 1), ("churn", 2), ("fraud", 1))  # the versions the demo serves in production / staging
FLOOR_ROWS, FLOOR_SEED = 400_000, 77


def old_method(ref_true: np.ndarray) -> str:
    """The calibration before beta+isotonic: Platt scaling below ISOTONIC_MIN_CLASS of a class."""
    pos = int(np.count_nonzero(ref_true))
    return "isotonic" if min(pos, len(ref_true) - pos) >= quality.ISOTONIC_MIN_CLASS else "platt"


def outputs(tr: Any, art: dict[str, Any], world: Any, n: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's probabilities and predictions on ``n`` fresh rows of its world, and their labels."""
    cols = world.rows(n, s)
    x = np.empty((n, len(art["features"])), dtype=object)
    for j, f in enumerate(art["features"]):
        x[:, j] = cols[f]
    out = tr.outputs(art, x)
    return out["probability"], out["prediction"].astype(int), cols[world.target].astype(int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", type=int, default=5000)
    ap.add_argument("--unlabelled", default="1000,200")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    tr = seed.train_module()
    print(f"{'model':9s} {'U':>5s} {'':5s} {'calibrated on':24s} {'acc bias':>9s} {'acc mae':>8s} {'acc max':>8s} "
          f"{'auc bias':>9s} {'auc mae':>8s} {'auc max':>8s} {'vs floor':>8s}")
    for model, idx in MODELS:
        folder = seed.trained(model, seed.SEED_VERSIONS[model][idx])
        art = pickle.loads((folder / "model.pkl").read_bytes())
        world = WORLDS[model]
        fp, _, fy = outputs(tr, art, world, FLOOR_ROWS, FLOOR_SEED)
        floor_x, floor_fit = quality.isotonic(fp, fy == 1)
        for u in (int(x) for x in args.unlabelled.split(",")):
            names = ("old", "new", "floor")
            errs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
            how: dict[str, set[str]] = {k: set() for k in names}
            for s in range(900, 900 + args.seeds):
                n = args.scan
                p, pred, y = outputs(tr, art, world, n, s)
                ids = [f"e{i}" for i in range(n)]
                frame = pd.DataFrame({ID: ids, "prediction": pred, "probability": p},
                                     index=pd.DatetimeIndex(pd.to_datetime(1.7e9 + np.arange(n), unit="s", utc=True)))
                k = n - u
                labels = capture._label_table(ids[:k], list(y[:k]), [None] * k)
                joined = quality.join(frame, labels, quality.QualitySpec())
                truth = (skm.accuracy_score(y[k:], pred[k:]), skm.roc_auc_score(y[k:], p[k:]))
                new = quality.measure(joined).estimate
                assert new is not None
                ref = slice(max(0, k - quality.CALIBRATION_ROWS), k)
                old_how = old_method(y[ref] == 1)
                cur_pos = pred[k:] == 1
                c = np.interp(p[k:], floor_x, floor_fit)
                floor = {"accuracy": float(np.where(cur_pos, c, 1 - c).mean()),
                         "roc_auc": quality.expected_auc(p[k:], c)}
                got = {"old": quality.cbpe(p[ref], y[ref] == 1, p[k:], cur_pos, old_how),
                       "new": dict(new.metrics), "floor": floor}
                how["old"].add(f"{k} ({old_how})")
                how["new"].add(f"{new.reference_rows} ({new.calibration})")
                how["floor"].add(f"{FLOOR_ROWS:,} (isotonic)")
                for name in names:
                    m = got[name]
                    errs[name].append((m["accuracy"] - truth[0], m["roc_auc"] - truth[1],
                                       m["roc_auc"] - floor["roc_auc"]))
            for name in names:
                e = np.array(errs[name])
                vs_floor = f"{np.abs(e[:, 2]).mean():8.4f}" if name != "floor" else f"{'':8s}"
                print(f"{model} v{idx + 1:<3d} {u:5d} {name:5s} {', '.join(sorted(how[name])):24s} "
                      f"{e[:, 0].mean():+9.4f} {np.abs(e[:, 0]).mean():8.4f} {np.abs(e[:, 0]).max():8.4f} "
                      f"{e[:, 1].mean():+9.4f} {np.abs(e[:, 1]).mean():8.4f} {np.abs(e[:, 1]).max():8.4f} {vs_floor}")


if __name__ == "__main__":
    main()
