#!/usr/bin/env python3
"""An example training pipeline for modeldeck: train, evaluate on a holdout, write the artifact
and its reference data, and register the new version with ``modeldeck register``.

    python sample_data/pipeline/train.py --model churn                 # the sample data
    python sample_data/pipeline/train.py --model churn --data my.csv   # your labelled data
    python sample_data/pipeline/train.py --model churn \\
        --recent 'captures/churn-prod/*.jsonl' --labels 'ground_truth/churn-prod/*.jsonl'

Data. By default the model trains on ``sample_data/MODEL/train.csv`` and is evaluated on
``sample_data/MODEL/reference.csv``. ``--data`` (CSV or Parquet, repeatable) trains on your
labelled data and holds out ``--holdout-fraction`` of it. ``--recent`` trains on the most
recent ``--recent-rows`` records of a SageMaker data-capture window (JSONL; JSON bodies in the
Open Inference Protocol v2 request shape, or plain records) joined by event id with
SageMaker-style ground-truth JSONL (``--labels``), which is what the modeldeck demo fleet
writes: the way to retrain a model on the distribution it now sees. The join is modeldeck's
own (``modeldeck.core.quality.read_labelled``: the one its quality measurement and ``modeldeck
evaluate --data recent`` use), and what did not join is counted on stderr.

Outputs, in a new folder under ``--out`` (default: ``artifacts/`` beside the registry given
with ``--registry`` or ``$MODELDECK_REGISTRY``, else ``$XDG_CACHE_HOME/modeldeck/artifacts``):
``model.pkl`` (a pickled dict: the scikit-learn pipeline and its feature list),
``reference.csv`` (the holdout, or all rows when the holdout has fewer than 1,000, with the
model's outputs ``prediction`` and, for classifiers, ``probability``, out-of-fold for the training
rows: what drift of the live
inputs and outputs is compared against), ``metrics.json``, ``train.csv`` when the training
data was assembled from a capture window (so the registered dataset hash is the real one), and
``holdout.csv`` when the holdout was split off here. The metrics are registered with the data
they were measured on (``--eval-dataset``: the holdout file), so modeldeck's release gates
compare versions on the same data; ``evaluate.py`` beside this file measures any version on
any labelled data (modeldeck's ``evaluate`` hook).

Registration runs the ``modeldeck`` command line next to this Python (or ``python -m
modeldeck``) with the dataset, code version (``git rev-parse --short HEAD``, else the SHA-256 of
this file), params, metrics and reference data; ``$MODELDECK_JOB_ID`` (set by modeldeck's
retraining runner) is passed as ``--job-id``. ``--param demo_fault=errors`` records a param
the demo fleet's servers obey (half of the inferences fail) — for trying automatic rollback.
Prints the new version number as the last line; exit status 0 on success, 2 on bad input,
1 when registration failed.

Needs numpy, pandas and scikit-learn (``pip install 'modeldeck[demo]'``); ``--recent`` also
needs modeldeck importable (it is, on modeldeck's Python).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent
ARTIFACT_FORMAT = "modeldeck-demo-sklearn/1"
REFERENCE_MIN_ROWS = 1000

PRESETS: dict[str, dict[str, Any]] = {
    "churn": {"target": "churned", "task": "classification", "categorical": ["plan"],
              "algorithm": "gbm", "params": {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}},
    "fraud": {"target": "is_fraud", "task": "classification", "categorical": ["merchant_category"],
              "algorithm": "gbm", "params": {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}},
    "demand": {"target": "units_sold", "task": "regression", "categorical": ["store_size"],
               "algorithm": "gbm", "params": {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}},
}
ALGORITHMS = {"classification": ("gbm", "logreg", "dummy"), "regression": ("gbm", "ridge", "dummy")}


class PipelineError(Exception):
    """Bad input: one line for the user, exit status 2."""


# ---------------------------------------------------------------------------------------------
# data


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as e:  # pandas raises many kinds
        raise PipelineError(f"{p}: cannot read: {e}") from None


def _expand(patterns: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(os.path.expanduser(pat)))
        files += [Path(h) for h in hits if Path(h).is_file()]
    return files


def load_recent(capture: Sequence[str], labels: Sequence[str], target: str, rows: int, *,
                label_id_column: str | None = None, label_column: str = "label") -> pd.DataFrame:
    """The last ``rows`` captured input rows that have a ground-truth label, with the label as
    ``target``: modeldeck's own join (``modeldeck.core.quality.read_labelled``, as its quality
    measurement and ``evaluate --data recent`` join them: SageMaker data capture with SageMaker
    ground truth on ``eventMetadata.eventId`` / ``inferenceId``, a batch's labels one per row,
    the newest label of an id winning; or plain files with ``label_id_column`` and
    ``label_column``). What did not join is counted and printed to stderr."""
    if not _expand(capture):
        raise PipelineError(f"no capture files match {', '.join(capture)}")
    if not _expand(labels):
        raise PipelineError(f"no ground-truth files match {', '.join(labels)}")
    try:
        from modeldeck.core import quality
        from modeldeck.core.errors import InputError
    except ImportError as e:  # the pipeline runs on modeldeck's Python (pip install 'modeldeck[demo]')
        raise PipelineError(f"--recent needs modeldeck importable from this Python: {e}") from None
    try:
        found, counts = quality.read_labelled(list(capture), list(labels), rows, label_id_column=label_id_column,
                                              label_column=label_column)
    except InputError as e:
        raise PipelineError(str(e)) from None
    print(f"recent window: {quality.describe_counts(counts)}; the newest {len(found)} labelled rows used",
          file=sys.stderr)
    if not len(found):
        raise PipelineError("no captured record has a ground-truth label (check --labels)")
    out = quality.input_columns(found).reset_index(drop=True)
    out[target] = pd.Series(found[quality.LABELLED].to_numpy(), dtype=object).infer_objects()
    return out


# ---------------------------------------------------------------------------------------------
# model


@dataclass
class TrainResult:
    artifact: dict[str, Any]
    metrics: dict[str, float]
    reference: pd.DataFrame
    params: dict[str, Any]
    n_train: int
    n_holdout: int
    timings: dict[str, float] = field(default_factory=dict)


def split_columns(df: pd.DataFrame, target: str, categorical: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    if target not in df.columns:
        raise PipelineError(f"target column {target!r} not in the data (columns: {', '.join(df.columns)})")
    features = [c for c in df.columns if c != target and c not in ("prediction", "probability")]
    cats = [c for c in features if c in categorical or df[c].dtype == object or
            pd.api.types.is_string_dtype(df[c])]
    return features, cats


def matrix(df: pd.DataFrame, features: Sequence[str], categorical: Sequence[str]) -> np.ndarray:
    """Rows in feature order as one object array: numbers as floats, categories as strings
    (what the demo servers build from an inference request, so training and serving agree)."""
    cols = []
    for c in features:
        if c not in df.columns:
            raise PipelineError(f"feature {c!r} missing from the data")
        if c in categorical:
            cols.append(df[c].astype(str).to_numpy(dtype=object))
        else:
            cols.append(pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float).astype(object))
    return np.column_stack(cols) if cols else np.empty((len(df), 0), dtype=object)


def build_estimator(task: str, algorithm: str, params: Mapping[str, Any], features: Sequence[str],
                    categorical: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if algorithm not in ALGORITHMS[task]:
        raise PipelineError(f"algorithm {algorithm!r} does not fit a {task} task "
                            f"(one of {', '.join(ALGORITHMS[task])})")
    choices: dict[str, Any] = {
        ("classification", "gbm"): GradientBoostingClassifier,
        ("classification", "logreg"): lambda **kw: LogisticRegression(max_iter=1000, **kw),
        ("classification", "dummy"): lambda **kw: DummyClassifier(strategy="prior", **kw),
        ("regression", "gbm"): GradientBoostingRegressor,
        ("regression", "ridge"): Ridge,
        ("regression", "dummy"): DummyRegressor,
    }
    make = choices[(task, algorithm)]
    accepted = set(make().get_params())
    used = {k: v for k, v in params.items() if k in accepted}
    est = make(**used)
    num_idx = [i for i, c in enumerate(features) if c not in categorical]
    cat_idx = [i for i, c in enumerate(features) if c in categorical]
    steps = []
    if num_idx:
        steps.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num_idx))
    if cat_idx:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore"), cat_idx))
    return make_pipeline(ColumnTransformer(steps), est), used


def outputs(artifact: Mapping[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs by name: ``prediction`` and, for classifiers, ``probability`` (of
    the positive class; the top class's for more than two)."""
    est = artifact["estimator"]
    if artifact["task"] == "classification":
        proba = est.predict_proba(x)
        classes = est.classes_
        if proba.shape[1] == 2:
            p = proba[:, 1]
            pred = classes[(p >= 0.5).astype(int)]
        else:
            p = proba.max(axis=1)
            pred = classes[proba.argmax(axis=1)]
        return {"prediction": np.asarray(pred), "probability": p}
    return {"prediction": np.asarray(est.predict(x), dtype=float)}


def out_of_fold_outputs(est: Any, task: str, x: np.ndarray, y: np.ndarray, seed: int,
                        folds: int = 5) -> dict[str, np.ndarray]:
    """The outputs ``outputs`` gives, for the training rows, each from a copy of the estimator
    fitted without the fold that holds the row (scikit-learn's ``cross_val_predict``); in-sample
    outputs when a class has fewer rows than folds."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    fitted = {"task": task, "estimator": est}
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        if counts.min() < folds:
            return outputs(fitted, x)
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        proba = cross_val_predict(clone(est), x, y, cv=cv, method="predict_proba")
        if proba.shape[1] == 2:
            p = proba[:, 1]
            return {"prediction": np.asarray(classes[(p >= 0.5).astype(int)]), "probability": p}
        return {"prediction": np.asarray(classes[proba.argmax(axis=1)]), "probability": proba.max(axis=1)}
    if len(y) < 2 * folds:
        return outputs(fitted, x)
    cv = KFold(folds, shuffle=True, random_state=seed)
    return {"prediction": np.asarray(cross_val_predict(clone(est), x, y, cv=cv), dtype=float)}


def evaluate(artifact: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as m

    out = outputs(artifact, x)
    if artifact["task"] == "classification":
        pred = out["prediction"]
        res = {"accuracy": m.accuracy_score(y, pred)}
        classes = artifact["estimator"].classes_
        if len(classes) == 2:
            res["auc"] = m.roc_auc_score(y, out["probability"]) if len(set(y.tolist())) > 1 else 0.5
            res["f1"] = m.f1_score(y, pred, pos_label=classes[1], zero_division=0)
            res["precision"] = m.precision_score(y, pred, pos_label=classes[1], zero_division=0)
            res["recall"] = m.recall_score(y, pred, pos_label=classes[1], zero_division=0)
        else:
            res["f1"] = m.f1_score(y, pred, average="macro", zero_division=0)
        return {k: round(float(v), 6) for k, v in res.items()}
    pred = out["prediction"]
    res = {"rmse": math.sqrt(m.mean_squared_error(y, pred)), "mae": m.mean_absolute_error(y, pred),
           "r2": m.r2_score(y, pred)}
    return {k: round(float(v), 6) for k, v in res.items()}


def train_model(model: str, train: pd.DataFrame, holdout: pd.DataFrame, *, algorithm: str | None = None,
                params: Mapping[str, Any] | None = None, target: str | None = None, task: str | None = None,
                categorical: Sequence[str] | None = None, seed: int = 0) -> TrainResult:
    """Fit on ``train``, evaluate on ``holdout``; returns the artifact, metrics, reference frame
    and the params to record."""
    preset = PRESETS.get(model, {})
    target = target or preset.get("target")
    task = task or preset.get("task")
    if not target or not task:
        raise PipelineError(f"model {model!r} has no preset: give --target and --task")
    algorithm = algorithm or preset.get("algorithm", "gbm")
    merged = {**preset.get("params", {}), **(params or {})} if algorithm == preset.get("algorithm") \
        else dict(params or {})
    merged.setdefault("random_state", seed)
    cats = list(categorical if categorical is not None else preset.get("categorical", []))
    features, cats = split_columns(train, target, cats)
    train = train.dropna(subset=[target])
    holdout = holdout.dropna(subset=[target])
    if len(train) < 20 or len(holdout) < 10:
        raise PipelineError(f"too little labelled data: {len(train)} training and {len(holdout)} holdout rows")
    t0 = time.perf_counter()
    est, used = build_estimator(task, algorithm, merged, features, cats)
    x_train = matrix(train, features, cats)
    y_train = train[target].to_numpy()
    x_hold = matrix(holdout, features, cats)
    y_hold = holdout[target].to_numpy()
    if task == "classification" and len(set(y_train.tolist())) < 2:
        raise PipelineError("the training labels hold a single class")
    est.fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    artifact = {"format": ARTIFACT_FORMAT, "model": model, "task": task, "target": target,
                "features": features, "categorical": cats, "algorithm": algorithm, "estimator": est,
                "outputs": ["prediction", "probability"] if task == "classification" else ["prediction"]}
    metrics = evaluate(artifact, x_hold, y_hold)
    metrics["n_train"] = len(train)
    metrics["n_holdout"] = len(holdout)
    if len(holdout) >= REFERENCE_MIN_ROWS:
        ref_rows, ref_outputs = holdout, outputs(artifact, x_hold)
    else:
        # Too small a holdout: the training rows join the reference, with out-of-fold outputs (a
        # model's outputs on the rows it was fitted on are overconfident, so live predictions of a
        # healthy model would look drifted from them).
        ref_rows = pd.concat([train, holdout], ignore_index=True)
        train_out = out_of_fold_outputs(est, task, x_train, y_train, seed)
        hold_out = outputs(artifact, x_hold)
        ref_outputs = {k: np.concatenate([train_out[k], v]) for k, v in hold_out.items()}
    reference = ref_rows[features].reset_index(drop=True).copy()
    for name, values in ref_outputs.items():
        reference[name] = np.round(values, 6) if values.dtype.kind == "f" else values
    recorded = {"algorithm": algorithm, **used, "target": target, "features": features}
    recorded.update({k: v for k, v in (params or {}).items() if k not in recorded})
    return TrainResult(artifact, metrics, reference, recorded, len(train), len(holdout),
                       {"fit_seconds": round(fit_s, 3)})


def save_run(result: TrainResult, folder: Path, train_data: pd.DataFrame | None = None,
             holdout_data: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write model.pkl, reference.csv, metrics.json (and train.csv, and holdout.csv: the data
    the metrics were measured on, when it was split off here) into ``folder`` atomically (a
    temporary sibling renamed into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with open(tmp / "model.pkl", "wb") as f:
            pickle.dump(result.artifact, f, protocol=pickle.HIGHEST_PROTOCOL)
        result.reference.to_csv(tmp / "reference.csv", index=False)
        (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=1, sort_keys=True) + "\n")
        (tmp / "params.json").write_text(json.dumps(result.params, indent=1, sort_keys=True, default=str) + "\n")
        if train_data is not None:
            train_data.to_csv(tmp / "train.csv", index=False)
        if holdout_data is not None:
            holdout_data.to_csv(tmp / "holdout.csv", index=False)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote the same folder first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = {"artifact": folder / "model.pkl", "reference": folder / "reference.csv",
           "metrics": folder / "metrics.json"}
    if (folder / "train.csv").exists():
        out["dataset"] = folder / "train.csv"
    if (folder / "holdout.csv").exists():
        out["holdout"] = folder / "holdout.csv"
    return out


def load_artifact(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = str(path)
    if p.startswith("file://"):
        p = p[len("file://"):]
    with open(p, "rb") as f:
        art = pickle.load(f)
    if not isinstance(art, dict) or art.get("format") != ARTIFACT_FORMAT:
        raise PipelineError(f"{p}: not an artifact written by this pipeline")
    return art


# ---------------------------------------------------------------------------------------------
# lineage and registration


def code_version() -> str:
    """``git rev-parse --short HEAD`` of the checkout holding this file, else this file's
    SHA-256 prefix."""
    try:
        r = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=5, check=False)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "sha256:" + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def modeldeck_command() -> list[str]:
    """The ``modeldeck`` executable next to this Python, else ``python -m modeldeck``."""
    bindir = Path(sys.executable).parent
    for name in ("modeldeck", "modeldeck.exe"):
        exe = bindir / name
        if exe.is_file() and os.access(exe, os.X_OK):
            return [str(exe)]
    return [sys.executable, "-m", "modeldeck"]


def register(model: str, files: Mapping[str, Path], dataset: str, metrics: Mapping[str, Any],
             params: Mapping[str, Any], *, registry: str | None, config: str | None, reason: str,
             tags: Sequence[str] = (), eval_dataset: str | None = None) -> int:
    cmd = [*modeldeck_command(), "register", model, "--artifact", str(files["artifact"]),
           "--dataset", str(dataset), "--reference", str(files["reference"]),
           "--metrics", json.dumps(dict(metrics)), "--params", json.dumps(dict(params), default=str),
           "--code-version", code_version(), "--json"]
    if eval_dataset:  # the holdout the metrics were measured on: gates compare versions on the same data
        cmd += ["--eval-dataset", str(eval_dataset)]
    if registry:
        cmd += ["--registry", registry]
    if config:
        cmd += ["--config", config]
    job = os.environ.get("MODELDECK_JOB_ID", "").strip()
    if job.isdigit():
        cmd += ["--job-id", job]
    for t in tags:
        cmd += ["--tag", t]
    if reason:
        cmd += ["--reason", reason]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        msg = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()[-1]
        raise RuntimeError(f"modeldeck register failed: {msg}")
    try:
        return int(json.loads(r.stdout)["version"])
    except (ValueError, KeyError, TypeError):
        m = re.search(r"version (\d+)", r.stdout)
        if not m:
            raise RuntimeError(f"modeldeck register printed no version: {r.stdout.strip()[:200]}") from None
        return int(m.group(1))


# ---------------------------------------------------------------------------------------------
# command line


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise PipelineError(f"--param {text!r}: use KEY=VALUE")
    k, v = text.split("=", 1)
    try:
        value: Any = json.loads(v)
    except ValueError:
        value = v
    return k.strip(), value


def default_out(registry: str | None) -> Path:
    if os.environ.get("MODELDECK_ARTIFACTS"):
        return Path(os.environ["MODELDECK_ARTIFACTS"]).expanduser()
    if registry:
        return Path(registry).expanduser().resolve().parent / "artifacts"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "modeldeck" / "artifacts"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=f"model name (presets: {', '.join(PRESETS)})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", action="append", metavar="PATH", help="labelled training data (CSV/Parquet)")
    src.add_argument("--recent", action="append", metavar="GLOB", help="SageMaker capture JSONL files")
    p.add_argument("--labels", action="append", metavar="GLOB", help="ground-truth JSONL for --recent")
    p.add_argument("--recent-rows", type=int, default=1200, help="newest labelled rows to use (default 1200)")
    p.add_argument("--holdout", metavar="PATH", help="evaluation data (default: split off --holdout-fraction)")
    p.add_argument("--holdout-fraction", type=float, default=0.25)
    p.add_argument("--target", help="label column (default: the preset's)")
    p.add_argument("--task", choices=["classification", "regression"])
    p.add_argument("--algorithm", help="gbm, logreg, ridge or dummy (default: the preset's)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter or recorded param (JSON value), repeatable")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag for the version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="DIR", help="artifact folder root")
    p.add_argument("--registry", metavar="FILE", help="registry for modeldeck register "
                   "(default: $MODELDECK_REGISTRY, else the config's)")
    p.add_argument("--config", metavar="FILE", help="config for modeldeck register")
    p.add_argument("--reason", default="", help="why (for the audit log)")
    p.add_argument("--no-register", action="store_true", help="train and write, but do not register")
    p.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    preset = PRESETS.get(args.model, {})
    target = args.target or preset.get("target")
    if not target:
        raise PipelineError(f"model {args.model!r} has no preset: give --target and --task")
    params = dict(_param(t) for t in args.param)
    assembled: pd.DataFrame | None = None
    rng = np.random.default_rng(args.seed)
    if args.recent:
        if not args.labels:
            raise PipelineError("--recent needs --labels (ground truth for the captured requests)")
        data = load_recent(args.recent, args.labels, target, args.recent_rows)
        assembled = data
        dataset = ""  # the assembled window, written with the run
        source = "recent"
    else:
        paths = args.data or [str(SAMPLE / args.model / "train.csv")]
        data = pd.concat([read_table(p) for p in paths], ignore_index=True)
        dataset = paths[0] if len(paths) == 1 else ""
        if len(paths) > 1:
            assembled = data
        source = "data" if args.data else "sample"
    holdout_path = args.holdout
    if holdout_path is None and source == "sample":
        holdout_path = str(SAMPLE / args.model / "reference.csv")
    if holdout_path:
        train, holdout = data, read_table(holdout_path)
    else:
        if not 0 < args.holdout_fraction < 1:
            raise PipelineError("--holdout-fraction must be between 0 and 1")
        idx = rng.permutation(len(data))
        cut = round(len(data) * (1 - args.holdout_fraction))
        train, holdout = data.iloc[idx[:cut]], data.iloc[idx[cut:]]
    result = train_model(args.model, train, holdout, algorithm=args.algorithm, params=params,
                         target=target, task=args.task, seed=args.seed)
    result.params.update({"source": source, "seed": args.seed})
    if source == "recent":
        result.params["recent_rows"] = len(data)
    registry = args.registry or os.environ.get("MODELDECK_REGISTRY", "").strip() or None  # set by modeldeck's runner
    out_root = Path(args.out).expanduser() if args.out else default_out(registry)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    digest = hashlib.sha256(pickle.dumps(result.metrics) + str(time.time_ns()).encode()).hexdigest()[:8]
    files = save_run(result, out_root / args.model / f"{stamp}-{digest}", assembled,
                     holdout_data=None if holdout_path else holdout.dropna(subset=[target]))
    dataset = str(files.get("dataset", dataset))
    eval_dataset = str(holdout_path) if holdout_path else str(files["holdout"])
    summary = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if not k.startswith("n_"))
    print(f"trained {args.model} ({result.params['algorithm']}) on {result.n_train} rows, "
          f"holdout {result.n_holdout}: {summary}", file=sys.stderr)
    print(f"artifact {files['artifact']}", file=sys.stderr)
    record = {"model": args.model, "artifact": str(files["artifact"]), "reference": str(files["reference"]),
              "dataset": dataset, "eval_dataset": eval_dataset, "metrics": result.metrics,
              "params": result.params, "version": None}
    if not args.no_register:
        version = register(args.model, files, dataset, result.metrics, result.params,
                           registry=registry, config=args.config,
                           reason=args.reason or f"trained by train.py on {source} data", tags=args.tag,
                           eval_dataset=eval_dataset)
        record["version"] = version
        print(f"registered {args.model} version {version}", file=sys.stderr)
    if args.json:
        print(json.dumps(record, default=str))
    elif record["version"] is not None:
        print(record["version"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except PipelineError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
