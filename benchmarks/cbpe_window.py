"""How close the CBPE estimate (``core.quality``: estimated accuracy and ROC AUC of the newest
rows without a label) is on the default 1,000-row quality window, on the demo's trained models
in their own (undrifted) world. Not a timing: an accuracy figure, against the same estimate
calibrated on the window's own labelled rows only (what it did before it calibrated on every
labelled row read), in the same run.

Per model and seed: ``--scan`` captured rows (``poll.quality_scan``, default 5,000), the newest
``U`` of them without a label yet; ``core.quality.join`` + ``measure`` (window 1,000) estimate
those ``U`` rows, and their labels then measure them (scikit-learn). Printed: the mean error
(bias) and the mean and largest absolute error over ``--seeds`` seeds.

    .venv/bin/python benchmarks/cbpe_window.py [--scan 5000] [--unlabelled 1000,200] [--seeds 20]
"""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from modeldeck.core import capture, quality
from modeldeck.core.capture import ID
from modeldeck.core.demo import seed
from modeldeck.core.demo.datasets import WORLDS

MODELS = (("churn", 1), ("churn", 2), ("fraud", 1))  # the versions the demo serves in production / staging


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", type=int, default=5000)
    ap.add_argument("--unlabelled", default="1000,200")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    tr = seed.train_module()
    print(f"{'model':9s} {'U':>5s} {'calibrated on':22s} {'acc bias':>9s} {'acc mae':>8s} {'acc max':>8s} "
          f"{'auc bias':>9s} {'auc mae':>8s} {'auc max':>8s}")
    for model, idx in MODELS:
        folder = seed.trained(model, seed.SEED_VERSIONS[model][idx])
        art = pickle.loads((folder / "model.pkl").read_bytes())
        world = WORLDS[model]
        for u in (int(x) for x in args.unlabelled.split(",")):
            errs: dict[str, list[tuple[float, float]]] = {"window": [], "all": []}
            how: dict[str, set[str]] = {"window": set(), "all": set()}
            for s in range(900, 900 + args.seeds):
                n = args.scan
                cols = world.rows(n, s)
                x = np.empty((n, len(art["features"])), dtype=object)
                for j, f in enumerate(art["features"]):
                    x[:, j] = cols[f]
                out = tr.outputs(art, x)
                p, pred, y = out["probability"], out["prediction"].astype(int), cols[world.target].astype(int)
                ids = [f"e{i}" for i in range(n)]
                frame = pd.DataFrame({ID: ids, "prediction": pred, "probability": p},
                                     index=pd.DatetimeIndex(pd.to_datetime(1.7e9 + np.arange(n), unit="s", utc=True)))
                k = n - u
                labels = capture._label_table(ids[:k], list(y[:k]), [None] * k)
                joined = quality.join(frame, labels, quality.QualitySpec())
                w = slice(max(0, len(joined.y_true) - 1000), len(joined.y_true))
                truth = (skm.accuracy_score(y[k:], pred[k:]), skm.roc_auc_score(y[k:], p[k:]))
                for name, est in (("window", quality._estimate(joined, joined.y_true[w], joined.score[w])),
                                  ("all", quality.measure(joined).estimate)):
                    assert est is not None
                    how[name].add(f"{est.reference_rows} ({est.calibration})")
                    errs[name].append((est.metrics["accuracy"] - truth[0], est.metrics["roc_auc"] - truth[1]))
            for name in ("window", "all"):
                e = np.array(errs[name])
                print(f"{model} v{idx + 1:<3d} {u:5d} {', '.join(sorted(how[name])):22s} "
                      f"{e[:, 0].mean():+9.4f} {np.abs(e[:, 0]).mean():8.4f} {np.abs(e[:, 0]).max():8.4f} "
                      f"{e[:, 1].mean():+9.4f} {np.abs(e[:, 1]).mean():8.4f} {np.abs(e[:, 1]).max():8.4f}")


if __name__ == "__main__":
    main()
