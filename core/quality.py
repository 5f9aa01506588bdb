"""Model quality from delayed ground truth: captured predictions joined with the labels that
arrive later, the metrics over the newest labelled rows with 95 % intervals, and (while the
labels lag) an estimate from the model's own probabilities.

Public API:

    QualitySpec                              what to measure: problem type, columns, window
    join(predictions, labels, spec) -> Joined
    measure(joined, spec) -> QualityResult   metrics, intervals, counts, share, lag, estimate
    assess(capture, labels, spec, ...) -> QualityResult   read both sources, join, measure

**The join.** A captured row's key is its SageMaker ``eventMetadata.eventId`` (or
``inferenceId``; ``core.capture.row_key`` for the rows of a batch), or the configured id
column of a plain capture file. A label's key is the same (``core.capture.read_labels``).
Duplicated labels: the newest wins (by label time when every label has one, else as
written); each superseded label is counted. Labels without a prediction (in the captures
read) and predictions without a label are counted too. Nothing is dropped silently: the
counts are part of the result and of every rendering.

**The metrics** (over the newest ``window`` labelled rows, by inference time): classification
``accuracy``, ``precision``, ``recall``, ``f1`` (of ``positive_label`` against the rest),
``roc_auc`` (from the probability of the positive label, binary only) and the confusion
matrix; regression ``mae``, ``rmse``, ``r2``. The values equal scikit-learn's ``metrics`` on
the same rows (the tests check it to 1e-9); they are computed here with numpy, so the runtime
does not need scikit-learn. A metric that is not defined on the rows (precision without a
positive prediction, AUC with one class, R² of a constant) is ``None`` with the reason.

**Intervals** (95 %): Wilson score intervals for the proportions (accuracy on all rows,
precision on the predicted positives, recall on the actual positives); a percentile
bootstrap (``BOOTSTRAP`` replicates, seeded: the same rows give the same interval) for
``f1``, ``roc_auc`` and the regression metrics. Above ``BOOTSTRAP_MAX_ROWS`` rows the
replicates draw ``BOOTSTRAP_MAX_ROWS`` rows (the m-out-of-n bootstrap) and their spread is
scaled by sqrt(m/n), so a million rows cost what ten thousand do.

**Labelled share** is the share of the newest ``window`` captured rows that have a label;
**label lag** the median time from inference to label over the labelled rows whose label
time is known (``None`` otherwise).

**Estimated** (confidence-based performance estimation, as NannyML's CBPE), for binary
classifiers with probabilities: the probabilities are calibrated on the labelled reference
rows (every labelled row joined, not only the measured window: the newest
``CALIBRATION_ROWS`` of them), then the expected accuracy and
ROC AUC of the newest ``window`` rows *without* a label are computed from the calibrated
probabilities. The calibration is isotonic (as NannyML's) when the reference holds at least
``ISOTONIC_MIN_CLASS`` rows of each class, else ``beta+isotonic``: the mean of beta
calibration (three parameters, monotone: it follows a model that is overconfident at one end
only, which Platt scaling's two cannot; :func:`beta_calibration`) and the isotonic fit. On a
few hundred positives isotonic steps overfit and put the expected ROC AUC high, beta's
family misses part of a boosted model's shape and puts it low; their mean is closer than
isotonic and about as close as beta, with half beta's bias (on the demo's fraud model with
about 270 positives, ROC AUC 0.006-0.008 from what a 400,000-row isotonic fit gives, where
Platt was 0.021-0.022 from it, low; benchmarks/cbpe_window.py). On 1,000 unlabelled rows the
measured value's own sampling noise is about 0.009 (churn) and 0.018 (fraud) for ROC AUC even
with the true probabilities; on 200 rows 0.022 and 0.04.
The estimate is kept apart (``estimated``) and never mixed with measured values.

Judgement (a drop against the version's registered metric) is ``core.judge.quality_verdicts``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeck.core.errors import InputError
from modeldeck.core.judge import QUALITY_HIGHER_IS_BETTER
from modeldeck.core.textfmt import one_line

CLASSIFICATION, REGRESSION = "classification", "regression"
PROBLEM_TYPES = (CLASSIFICATION, REGRESSION)
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = QUALITY_HIGHER_IS_BETTER  # which way is better: the judge's rule
# Names a pipeline may have registered a metric under (the registry's metrics are free-form).
ALIASES = {"roc_auc": ("roc_auc", "auc", "roc-auc", "auroc"), "r2": ("r2", "r_squared", "r2_score"),
           "f1": ("f1", "f1_score"), "accuracy": ("accuracy", "acc"), "precision": ("precision",),
           "recall": ("recall",), "mae": ("mae",), "rmse": ("rmse",)}
Z95 = 1.959963984540054
BOOTSTRAP = 200
BOOTSTRAP_MAX_ROWS = 10_000
SERIES_BLOCKS = 24
CALIBRATION_ROWS = 20_000  # CBPE calibrates on at most the newest this many labelled rows
ISOTONIC_MIN_CLASS = 1_000  # CBPE calibrates isotonically with at least this many reference rows of each class
LABEL_FILE_SLACK = 300.0  # seconds of clock skew allowed between captures' times and label files' mtimes
SCHEMA = "modeldeck.quality/v1"
# What the lag says when no labelled row's label time is known (core.capture.read_labels reads it
# from eventMetadata.labelTime or a label_time/labelTime column; a file's mtime is not used).
LAG_UNKNOWN = "unknown (the labels carry no label time: eventMetadata.labelTime or a label_time column)"


@dataclass(frozen=True)
class QualitySpec:
    problem_type: str = CLASSIFICATION
    prediction_column: str = "prediction"
    probability_column: str | None = "probability"
    positive_label: str = "1"
    id_column: str | None = None  # plain (non-SageMaker) captures: the column holding the join key
    window: int = 1000  # the newest labelled rows measured
    min_rows: int = 200  # fewer labelled rows: "not enough labels"
    seed: int = 0  # of the bootstrap
    version: str | None = None  # only rows this version answered, when the captures say (OIP model_version)

    def check(self) -> QualitySpec:
        if self.problem_type not in PROBLEM_TYPES:
            raise InputError(f"problem type must be classification or regression, not {one_line(self.problem_type, 40)!r}")
        if self.window < 1:
            raise InputError(f"the quality window must be at least 1 row, not {self.window}")
        if self.min_rows < 1:
            raise InputError(f"quality_min_rows must be at least 1, not {self.min_rows}")
        if not self.prediction_column:
            raise InputError("the prediction column must not be empty")
        return self


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None
    low: float | None = None
    high: float | None = None
    method: str = ""  # wilson | bootstrap
    rows: int = 0  # the rows it is measured on (precision: predicted positives; recall: actual positives)
    note: str = ""  # why value is None

    def as_dict(self) -> dict[str, Any]:
        return {"value": _f(self.value), "low": _f(self.low), "high": _f(self.high), "method": self.method,
                "rows": self.rows, **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class Counts:
    predictions: int = 0  # captured rows read
    labels: int = 0  # label rows read
    duplicate_labels: int = 0  # superseded by a newer label of the same id
    labels_without_prediction: int = 0  # distinct labelled ids not among the captured rows read
    predictions_without_label: int = 0  # captured rows (read) that have no label yet
    predictions_without_id: int = 0  # captured rows with no key to join on
    labelled: int = 0  # captured rows that have a label
    unusable: int = 0  # labelled rows left out: a missing prediction or label value, or not a number
    other_versions: int = 0  # captured rows another version answered (left out, with their labels)
    label_files_skipped: int = 0  # label files of a glob last written before the oldest captured row read

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Joined:
    """Captured rows joined with their labels, in inference-time order (oldest first)."""

    spec: QualitySpec
    y_true: np.ndarray  # labelled rows only
    y_pred: np.ndarray
    score: np.ndarray | None  # probability of the positive label (classification), labelled rows
    inference_time: np.ndarray  # datetime64[ns] (NaT unknown), labelled rows
    label_time: np.ndarray  # datetime64[ns] (NaT unknown), labelled rows
    counts: Counts
    recent_labelled: int = 0  # of the newest `window` captured rows, how many have a label
    recent_rows: int = 0  # the newest `window` captured rows (fewer when fewer were read)
    unlabelled_pred: np.ndarray | None = None  # the newest `window` captured rows without a label
    unlabelled_score: np.ndarray | None = None
    numeric: bool = True  # labels and predictions compared as numbers (else as text)
    positive: Any = None  # the positive label as compared
    no_probability: str | None = None  # the probability column configured but not in the captures


@dataclass(frozen=True)
class Estimate:
    """CBPE: expected metrics of the unlabelled rows from calibrated probabilities."""

    rows: int  # unlabelled rows estimated on
    reference_rows: int  # labelled rows calibrated on
    metrics: Mapping[str, float | None]
    calibration: str = "isotonic"  # isotonic | beta+isotonic (core.quality.calibration_method)

    def as_dict(self) -> dict[str, Any]:
        return {"estimated": True, "method": "cbpe", "calibration": self.calibration, "rows": self.rows,
                "reference_rows": self.reference_rows,
                "metrics": {k: _f(v) for k, v in self.metrics.items()}}


@dataclass(frozen=True)
class QualityResult:
    problem_type: str
    rows: int  # labelled rows measured (at most the window)
    window: int
    min_rows: int
    counts: Counts
    labelled_share: float | None
    label_lag_seconds: float | None
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    confusion: Mapping[str, Any] | None = None  # {"labels": [...], "matrix": [[...]]}: rows true, columns predicted
    estimate: Estimate | None = None
    series: Sequence[Mapping[str, Any]] = ()  # the headline metric over consecutive blocks of labelled rows
    positive_label: str | None = None
    computed_at: float = 0.0
    error: str | None = None  # why there is no result (the sources could not be read)

    @property
    def enough(self) -> bool:
        return self.error is None and self.rows >= self.min_rows

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "measured" if self.enough else "not_enough_labels"

    def headline(self) -> str | None:
        """The metric the fleet shows: ROC AUC when measured, else accuracy; R² for regression."""
        if self.problem_type == REGRESSION:
            return "r2"
        m = self.metrics.get("roc_auc")
        return "roc_auc" if m is not None and m.value is not None else "accuracy"

    def value(self, name: str) -> float | None:
        m = self.metrics.get(name)
        return None if m is None else m.value

    def to_json(self) -> dict[str, Any]:
        """The object ``modeldeck quality --format json`` prints and the report embeds."""
        return {
            "schema": SCHEMA, "status": self.status, "problem_type": self.problem_type,
            "rows": self.rows, "window": self.window, "min_rows": self.min_rows,
            "positive_label": self.positive_label,
            "counts": self.counts.as_dict(), "labelled_share": _f(self.labelled_share),
            "label_lag_seconds": _f(self.label_lag_seconds),
            "metrics": {k: m.as_dict() for k, m in self.metrics.items()},
            "confusion_matrix": dict(self.confusion) if self.confusion is not None else None,
            "estimated": self.estimate.as_dict() if self.estimate is not None else None,
            "series": [dict(s) for s in self.series],
            "error": self.error,
        }


def _f(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------------
# the join


def _keys(frame: Any, spec: QualitySpec, name: str) -> Any:
    """The join key of every row, as a pandas Series of text (None: no key)."""
    from modeldeck.core.capture import ID

    if ID in frame.columns and (spec.id_column is None or spec.id_column not in frame.columns):
        col = frame[ID]
    elif spec.id_column is not None and spec.id_column in frame.columns:
        col = frame[spec.id_column]
    else:
        cols = ", ".join(one_line(c, 40) for c in list(frame.columns)[:12])
        raise InputError(f"{name}: no key to join labels on: not SageMaker data capture (eventMetadata.eventId) and "
                         f"no id column {one_line(spec.id_column or 'set label_id_column', 60)} (columns: {cols})")
    return key_text(col)


def key_text(col: Any) -> Any:
    """Ids as text: 12 and 12.0 (an integer column with a missing value, read from CSV) are "12"."""
    import pandas as pd

    if col.dtype.kind == "f":
        return pd.Series([None if v != v else str(int(v)) if float(v).is_integer() else str(v) for v in col],
                         dtype=object)
    if col.dtype.kind in "iub":
        return col.astype(str)
    return col


def factorize(parts: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Integer codes of the text keys in ``parts`` (Series or arrays, one numbering across all;
    -1 for a missing key) and how many distinct keys: one hash pass in Arrow (pandas' object
    hashing is about four times slower on a million strings)."""
    import pyarrow as pa

    chunks = []
    for part in parts:
        try:
            arr = pa.array(part, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: numbers and text mixed
            arr = pa.array([None if v is None or v != v else str(v) for v in part], type=pa.string())
        for c in (arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]):
            if c.type != pa.string():
                c = c.cast(pa.string())
            chunks.append(c)
    if not chunks or not sum(len(c) for c in chunks):
        return np.empty(0, dtype=np.int64), 0
    encoded = pa.chunked_array(chunks, type=pa.string()).dictionary_encode()
    codes = np.concatenate([c.indices.fill_null(-1).to_numpy(zero_copy_only=False) for c in encoded.chunks])
    return codes.astype(np.int64, copy=False), len(encoded.chunks[0].dictionary)


def _times(frame: Any, column: str | None = None) -> np.ndarray:
    import pandas as pd

    if column is None:
        idx = frame.index
        if isinstance(idx, pd.DatetimeIndex):
            return idx.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]") if idx.tz is not None \
                else idx.to_numpy(dtype="datetime64[ns]")
        return np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[ns]")
    s = frame[column]
    if s.dtype.kind != "M":
        s = pd.to_datetime(s, errors="coerce", utc=True)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.to_numpy(dtype="datetime64[ns]")


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """float64 of ``values`` when every one is a number (bools and numeric text included), else None."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    import pandas as pd

    out = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64, copy=True)
    present = ~pd.isna(values)
    if np.isnan(out[present]).any():
        return None
    out[~present] = np.nan
    return out


def _as_text(values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and v != v):
            out[i] = None
        elif isinstance(v, float) and v.is_integer():
            out[i] = str(int(v))
        else:
            out[i] = str(v)
    return out


def _match(predictions: Any, labels: Any, spec: QualitySpec, name: str, other_keys: Any = None,
           n_other: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The join's matching and counting: for each captured row the row of the label that wins
    (-1: none), whether it has one, and the counts (:class:`Counts`' fields but ``unusable``)."""
    from modeldeck.core.capture import ID, INFERENCE_ID

    n_pred = len(predictions)
    pred_keys = _keys(predictions, spec, name) if n_pred else np.empty(0, dtype=object)
    lab_keys = key_text(labels[ID])
    n_lab = len(lab_keys)
    # One hash pass over every key (labels, captured rows, other versions' rows): integer codes
    # (-1: no key). Then the newest label of a code wins (labels are oldest first), and the
    # join is an array lookup.
    alt_keys = predictions[INFERENCE_ID] if INFERENCE_ID in predictions.columns and n_pred else None
    parts = [lab_keys, pred_keys] + ([alt_keys] if alt_keys is not None else []) + \
        ([other_keys] if other_keys is not None else [])
    codes, n_codes = factorize(parts)
    lc, pc = codes[:n_lab], codes[n_lab:n_lab + n_pred]
    last = np.full(n_codes + 1, -1, dtype=np.int64)  # the slot n_codes takes the keyless (-1)
    np.maximum.at(last, np.where(lc >= 0, lc, n_codes), np.arange(n_lab, dtype=np.int64))
    last[n_codes] = -1
    labelled_codes = int((last[:n_codes] >= 0).sum())
    n_dup = n_lab - labelled_codes - int((lc < 0).sum())
    no_id = pc < 0
    pos = last[np.where(no_id, n_codes, pc)]  # the row of the label that wins, or -1
    seen = np.zeros(n_codes + 1, dtype=bool)
    seen[pc] = True  # -1 lands on the spare slot
    rest = n_lab + n_pred
    if alt_keys is not None:  # SageMaker: a label may name the request by its inferenceId instead
        ac = codes[rest:rest + n_pred]
        rest += n_pred
        alt = last[np.where(ac >= 0, ac, n_codes)]
        pos = np.where(pos >= 0, pos, alt)
        no_id &= ac < 0
        seen[ac] = True
    hit = pos >= 0
    if other_keys is not None:  # the labels of rows another version answered are not orphans
        seen[codes[rest:]] = True
    seen[n_codes] = False
    orphans = int(((last[:n_codes] >= 0) & ~seen[:n_codes]).sum())
    counts = dict(predictions=n_pred, labels=n_lab, duplicate_labels=n_dup,
                  labels_without_prediction=orphans, other_versions=n_other,
                  predictions_without_label=int((~hit).sum()), predictions_without_id=int(no_id.sum()),
                  labelled=int(hit.sum()))
    return pos, hit, counts


def join(predictions: Any, labels: Any, spec: QualitySpec, *, name: str = "the captures") -> Joined:
    """Join captured rows (a frame, in inference-time order: ``core.capture.read_window(...,
    ids=True)``) with labels (``core.capture.read_labels``) on their key."""
    import pandas as pd

    from modeldeck.core.capture import LABEL, LABEL_TIME

    spec.check()
    from modeldeck.core.capture import VERSION

    n_other = 0
    other_keys: Any = None
    if spec.version is not None and VERSION in predictions.columns and len(predictions):
        served = predictions[VERSION]
        other = (served.notna() & (served.astype(str) != str(spec.version))).to_numpy()
        if other.any():
            n_other = int(other.sum())
            others = predictions[other]
            other_keys = _keys(others, spec, name)
            from modeldeck.core.capture import INFERENCE_ID

            if INFERENCE_ID in others.columns:
                import pandas as pd

                other_keys = pd.concat([other_keys.astype(object), others[INFERENCE_ID].astype(object)],
                                       ignore_index=True)
            predictions = predictions[~other]
    if spec.prediction_column not in predictions.columns and len(predictions):
        cols = ", ".join(one_line(c, 40) for c in list(predictions.columns)[:12])
        raise InputError(f"{name}: no prediction column {one_line(spec.prediction_column, 60)!r} (columns: {cols}; "
                         f"set prediction_column)")
    n_pred = len(predictions)
    pos, hit, counts = _match(predictions, labels, spec, name, other_keys, n_other)
    lab_values = labels[LABEL].to_numpy(dtype=object)
    lab_times = _times(labels, LABEL_TIME)
    inf_times = _times(predictions) if n_pred else np.empty(0, dtype="datetime64[ns]")
    pred_raw = predictions[spec.prediction_column].to_numpy() if n_pred else np.empty(0, dtype=object)
    score_raw = None
    if spec.problem_type == CLASSIFICATION and spec.probability_column and n_pred and \
            spec.probability_column in predictions.columns:
        score_raw = pd.to_numeric(predictions[spec.probability_column], errors="coerce").to_numpy(dtype=np.float64)
    # the newest `window` captured rows: labelled share, and the unlabelled rows (for the estimate)
    recent = slice(max(0, n_pred - spec.window), n_pred)
    recent_hit = hit[recent]
    y_true_raw = lab_values[pos[hit]]
    y_pred_raw = pred_raw[hit]
    missing_score = (spec.problem_type == CLASSIFICATION and bool(spec.probability_column) and n_pred > 0
                     and score_raw is None)
    j = Joined(spec=spec, y_true=y_true_raw, y_pred=y_pred_raw,
               no_probability=spec.probability_column if missing_score else None,
               score=score_raw[hit] if score_raw is not None else None,
               inference_time=inf_times[hit], label_time=lab_times[pos[hit]], counts=Counts(**counts),
               recent_labelled=int(recent_hit.sum()), recent_rows=len(recent_hit))
    _normalize(j, pred_raw[recent][~recent_hit], score_raw[recent][~recent_hit] if score_raw is not None else None)
    return j


def _normalize(j: Joined, unlabelled_pred: np.ndarray, unlabelled_score: np.ndarray | None) -> None:
    """Labels and predictions as one comparable kind (numbers when both are, else text); rows
    with a missing value (or a regression value that is not a number) are left out, counted."""
    spec = j.spec
    yt, yp = _as_numbers(np.asarray(j.y_true)), _as_numbers(np.asarray(j.y_pred))
    if spec.problem_type == REGRESSION:
        if yt is None or yp is None:
            which = "labels" if yt is None else "predictions"
            raise InputError(f"regression needs numbers: some {which} are not numbers "
                             f"(use --problem-type classification for class labels)")
        ok = ~(np.isnan(yt) | np.isnan(yp))
        j.numeric = True
    elif yt is not None and yp is not None:
        ok = ~(np.isnan(yt) | np.isnan(yp))
        pos_num = _as_numbers(np.array([spec.positive_label], dtype=object))
        j.positive = float(pos_num[0]) if pos_num is not None else spec.positive_label
        j.numeric = pos_num is not None
        if not j.numeric:  # a text positive label: compare as text
            yt, yp = _as_text(np.asarray(j.y_true)), _as_text(np.asarray(j.y_pred))
            ok = np.array([a is not None and b is not None for a, b in zip(yt, yp)], dtype=bool)
    else:
        yt, yp = _as_text(np.asarray(j.y_true)), _as_text(np.asarray(j.y_pred))
        ok = np.array([a is not None and b is not None for a, b in zip(yt, yp)], dtype=bool)
        j.numeric = False
        j.positive = str(spec.positive_label)
    if j.score is not None and spec.problem_type == CLASSIFICATION:
        ok &= ~np.isnan(j.score)
    unusable = int((~ok).sum())
    j.y_true, j.y_pred = yt[ok], yp[ok]
    if j.score is not None:
        j.score = j.score[ok]
    j.inference_time, j.label_time = j.inference_time[ok], j.label_time[ok]
    j.counts = Counts(**{**j.counts.as_dict(), "unusable": unusable})
    if spec.problem_type == CLASSIFICATION:
        up = _as_numbers(unlabelled_pred) if j.numeric else None
        j.unlabelled_pred = up if up is not None else _as_text(unlabelled_pred)
        j.unlabelled_score = unlabelled_score
    # in inference-time order (the capture reader already orders by it; a stable sort keeps ties)
    t = j.inference_time
    if len(t) and not np.isnat(t).any() and (np.diff(t.astype(np.int64)) < 0).any():
        o = np.argsort(t, kind="stable")
        j.y_true, j.y_pred, j.inference_time, j.label_time = j.y_true[o], j.y_pred[o], t[o], j.label_time[o]
        if j.score is not None:
            j.score = j.score[o]


# ---------------------------------------------------------------------------------------------
# metrics (numpy; equal to sklearn.metrics on the same rows)


def wilson(successes: int, n: int) -> tuple[float | None, float | None]:
    """The 95 % Wilson score interval of a proportion."""
    if n <= 0:
        return None, None
    p = successes / n
    z2 = Z95 * Z95
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Labels (sorted, as sklearn's ``unique_labels``) and the matrix: rows true, columns predicted."""
    import pandas as pd

    classes = np.sort(pd.unique(np.concatenate([pd.unique(y_true), pd.unique(y_pred)]))) if len(y_true) else \
        np.array([])
    k = len(classes)
    ti = np.searchsorted(classes, y_true)
    pi = np.searchsorted(classes, y_pred)
    m = np.bincount(ti * k + pi, minlength=k * k).reshape(k, k) if k else np.zeros((0, 0), dtype=np.int64)
    return classes.tolist(), m


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for the boolean ``y`` (Mann-Whitney with ties counted half: the
    trapezoidal area sklearn's ``roc_auc_score`` computes)."""
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mid = (starts + ends - 1) / 2.0 + 1.0  # mid-ranks of the tie groups, 1-based
    ranks = np.repeat(mid, ends - starts)
    r_pos = float(ranks[y[order]].sum())
    return (r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _bootstrap_indices(n: int, seed: int) -> tuple[np.ndarray, float]:
    """(B x m row indices, scale): m = min(n, BOOTSTRAP_MAX_ROWS) draws with replacement; the
    replicates' spread is scaled by sqrt(m / n)."""
    m = min(n, BOOTSTRAP_MAX_ROWS)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP, m), dtype=np.int64 if n > 2**31 - 1 else np.int32)
    return idx, math.sqrt(m / n)


def _percentile(reps: np.ndarray, value: float, scale: float) -> tuple[float | None, float | None]:
    reps = reps[np.isfinite(reps)]
    if len(reps) < BOOTSTRAP // 2:
        return None, None
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(value + scale * (lo - value)), float(value + scale * (hi - value))


def _bootstrap_auc(y: np.ndarray, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC AUC of every replicate (rows ``idx``), exactly as on its rows: the rows are sorted
    once by score with the positives first among equal scores, so a replicate's positions
    (its draws' global ranks sorted row-wise, an integer sort) count the negatives strictly
    below each positive; pairs of a positive and a negative with the same score count half,
    added from the few rows whose score both classes share."""
    n = len(score)
    order = np.lexsort((~y, score))  # by score, positives first among equal scores
    rank_of = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
    rank_of[order] = np.arange(n, dtype=rank_of.dtype)
    y_sorted = y[order]
    s_sorted = score[order]
    group = np.cumsum(np.r_[False, s_sorted[1:] != s_sorted[:-1]])  # tie group of each sorted position
    # the groups holding both classes: only their pairs are ties that count
    n_groups = int(group[-1]) + 1
    has_pos = np.bincount(group, weights=y_sorted, minlength=n_groups) > 0
    has_neg = np.bincount(group, weights=~y_sorted, minlength=n_groups) > 0
    mixed = (has_pos & has_neg)[group]  # per sorted position
    out = np.empty(idx.shape[0])
    step = max(1, 2_000_000 // idx.shape[1])
    for a in range(0, idx.shape[0], step):
        r = np.sort(rank_of[idx[a:a + step]], axis=1)
        b, m = r.shape
        yy = y_sorted[r]
        p = yy.sum(axis=1).astype(np.float64)
        u = yy.astype(np.float64) @ np.arange(1.0, m + 1.0) - p * (p + 1) / 2.0
        tied = mixed[r]
        if tied.any():
            rows, cols = np.nonzero(tied)
            key = rows.astype(np.int64) * n_groups + group[r[rows, cols]]
            pos = yy[rows, cols]
            keys, inv = np.unique(key, return_inverse=True)
            tp = np.bincount(inv, weights=pos, minlength=len(keys))
            tn = np.bincount(inv, weights=~pos, minlength=len(keys))
            u += 0.5 * np.bincount(keys // n_groups, weights=tp * tn, minlength=b)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:a + b] = u / (p * (m - p))
    return out


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None, positive: Any,
                           seed: int = 0) -> tuple[dict[str, Metric], dict[str, Any]]:
    """Accuracy, precision, recall, F1 (of ``positive`` against the rest) and ROC AUC (of
    ``score``, the probability of ``positive``, when given and the labels are binary), with
    their intervals, and the confusion matrix."""
    n = len(y_true)
    classes, matrix = confusion(y_true, y_pred)
    cm = {"labels": [_label_json(c) for c in classes], "matrix": matrix.tolist()}
    if n == 0:
        return {k: Metric(k, None, note="no labelled rows") for k in CLASSIFICATION_METRICS
                if k != "roc_auc" or score is not None}, cm
    correct = int(np.trace(matrix))
    t = y_true == positive
    p = y_pred == positive
    tp = int((t & p).sum())
    fp = int((~t & p).sum())
    fn = int((t & ~p).sum())
    out: dict[str, Metric] = {}
    lo, hi = wilson(correct, n)
    out["accuracy"] = Metric("accuracy", correct / n, lo, hi, "wilson", n)
    if tp + fp:
        lo, hi = wilson(tp, tp + fp)
        out["precision"] = Metric("precision", tp / (tp + fp), lo, hi, "wilson", tp + fp)
    else:
        out["precision"] = Metric("precision", None, rows=0, note=f"no row is predicted {_label_json(positive)}")
    if tp + fn:
        lo, hi = wilson(tp, tp + fn)
        out["recall"] = Metric("recall", tp / (tp + fn), lo, hi, "wilson", tp + fn)
    else:
        out["recall"] = Metric("recall", None, rows=0, note=f"no row is labelled {_label_json(positive)}")
    idx, scale = _bootstrap_indices(n, seed)
    if 2 * tp + fp + fn:
        f1 = 2 * tp / (2 * tp + fp + fn)
        tpb = (t & p)[idx].sum(axis=1)
        errb = (t ^ p)[idx].sum(axis=1)
        denom = 2 * tpb + errb
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = np.where(denom > 0, 2 * tpb / np.maximum(denom, 1), np.nan)
        lo2, hi2 = _percentile(reps, f1, scale)
        out["f1"] = Metric("f1", f1, lo2, hi2, "bootstrap", n)
    else:
        out["f1"] = Metric("f1", None, rows=n, note=f"no row is labelled or predicted {_label_json(positive)}")
    if score is not None:
        if len(classes) > 2 or len(np.unique(y_true)) > 2:
            out["roc_auc"] = Metric("roc_auc", None, rows=n, note="ROC AUC is measured for two classes only")
        else:
            auc = roc_auc(t, score)
            if auc is None:
                out["roc_auc"] = Metric("roc_auc", None, rows=n, note="the labels hold one class only")
            else:
                lo2, hi2 = _percentile(_bootstrap_auc(t, score, idx), auc, scale)
                out["roc_auc"] = Metric("roc_auc", auc, lo2, hi2, "bootstrap", n)
    return out, cm


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, seed: int = 0) -> dict[str, Metric]:
    n = len(y_true)
    if n == 0:
        return {k: Metric(k, None, note="no labelled rows") for k in REGRESSION_METRICS}
    e = y_true - y_pred
    ae, se = np.abs(e), e * e
    mae = float(ae.mean())
    rmse = math.sqrt(float(se.mean()))
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    idx, scale = _bootstrap_indices(n, seed)
    out = {}
    lo, hi = _percentile(ae[idx].mean(axis=1), mae, scale)
    out["mae"] = Metric("mae", mae, lo, hi, "bootstrap", n)
    lo, hi = _percentile(np.sqrt(se[idx].mean(axis=1)), rmse, scale)
    out["rmse"] = Metric("rmse", rmse, lo, hi, "bootstrap", n)
    if ss_tot > 0:
        r2 = 1.0 - float(se.sum()) / ss_tot
        yb = y_true[idx]
        tot = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = 1.0 - se[idx].sum(axis=1) / tot
        lo, hi = _percentile(np.where(tot > 0, reps, np.nan), r2, scale)
        out["r2"] = Metric("r2", r2, lo, hi, "bootstrap", n)
    else:
        out["r2"] = Metric("r2", None, rows=n, note="the labels are constant")
    return out


def _label_json(v: Any) -> Any:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---------------------------------------------------------------------------------------------
# CBPE: an estimate while the labels lag


def expected_auc(score: np.ndarray, p: np.ndarray) -> float | None:
    """The ROC AUC expected when row i is positive with probability p[i] (pairs of distinct
    rows; ties in score count half)."""
    q = 1.0 - p
    sp, sq = float(p.sum()), float(q.sum())
    pairs = sp * sq - float((p * q).sum())
    if pairs <= 0:
        return None
    order = np.argsort(score, kind="mergesort")
    s, ps, qs = score[order], p[order], q[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    gp, gq = np.add.reduceat(ps, starts), np.add.reduceat(qs, starts)
    gpq = np.add.reduceat(ps * qs, starts)
    below = np.cumsum(gq) - gq  # expected negatives with a lower score
    num = float((gp * below).sum() + 0.5 * (gp * gq - gpq).sum())
    return num / pairs


def platt(score: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Logistic calibration (Platt scaling) on the logit of ``score``: (a, b) of
    P(y | s) = sigmoid(a * logit(s) + b), by maximum likelihood (a=1, b=0 is a calibrated model)."""
    f = np.column_stack([_logit(score), np.ones(len(score))])
    w = _logistic_fit(f, y.astype(np.float64), np.array([1.0, 0.0]), iterations)
    return float(w[0]), float(w[1])


def _logit(s: np.ndarray) -> np.ndarray:
    c = np.clip(s.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def isotonic(score: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic calibration (scikit-learn's ``IsotonicRegression``, increasing, clipped out of
    bounds): the distinct scores and the fitted P(y | s) at each; between them the fit is
    interpolated linearly (:func:`calibrate`)."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(score, kind="mergesort")
    s, t = score[order].astype(np.float64), y[order].astype(np.float64)
    xs, starts, counts = np.unique(s, return_index=True, return_counts=True)
    means = np.add.reduceat(t, starts) / counts
    return xs, np.clip(isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x, 0.0, 1.0)


def beta_calibration(score: np.ndarray, y: np.ndarray, iterations: int = 100) -> tuple[float, float, float]:
    """Beta calibration (Kull, Silva Filho and Flach, 2017): (a, b, c) of
    P(y | s) = sigmoid(a * ln(s) - b * ln(1 - s) + c), fitted by maximum likelihood (Newton's
    method, halving a step that does not lower the loss; a=b=1, c=0 is a calibrated model).
    It is kept monotone as the ``betacal`` package keeps it: when a or b comes out negative it
    is fixed at 0 and the other two are fitted again (both at 0: the mean, a model no better
    than chance). Platt scaling on the logit is its case a = b."""
    f = _beta_features(score)
    yf = y.astype(np.float64)
    w = _logistic_fit(f, yf, np.array([1.0, 1.0, 0.0]), iterations)
    for drop in (0, 1):
        if w[drop] < 0:
            keep = [1 - drop, 2]
            w = np.zeros(3)
            w[keep] = _logistic_fit(f[:, keep], yf, np.array([1.0, 0.0]), iterations)
            if w[1 - drop] < 0:
                m = min(max(float(yf.mean()), 1e-6), 1 - 1e-6)
                w = np.array([0.0, 0.0, math.log(m / (1 - m))])
            break
    return float(w[0]), float(w[1]), float(w[2])


def _beta_features(score: np.ndarray) -> np.ndarray:
    """ln(s), -ln(1 - s) and 1 per score: P(y | s) = sigmoid(features @ (a, b, c))."""
    c = np.clip(score.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.column_stack([np.log(c), -np.log1p(-c), np.ones_like(c)])


def _logistic_fit(f: np.ndarray, y: np.ndarray, w: np.ndarray, iterations: int) -> np.ndarray:
    """Unpenalised logistic regression of ``y`` on the columns of ``f`` from ``w``: Newton's
    method with step halving."""
    def loss(v: np.ndarray) -> float:
        z = f @ v
        return float((np.logaddexp(0.0, z) - y * z).sum())

    cur = loss(w)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(f @ w)))
        g = f.T @ (p - y)
        h = (f * (p * (1 - p) + 1e-12)[:, None]).T @ f + np.eye(f.shape[1]) * 1e-9
        step = np.linalg.solve(h, g)
        t = 1.0
        while t > 1e-6:
            nxt = w - t * step
            new = loss(nxt)
            if new <= cur:
                break
            t /= 2
        else:
            break
        w, done = nxt, abs(t * step).max() < 1e-10 or cur - new < 1e-12 * max(1.0, abs(cur))
        cur = new
        if done:
            break
    return w


def calibration_method(ref_true: np.ndarray) -> str:
    """``isotonic`` (NannyML's choice) when the reference holds at least ``ISOTONIC_MIN_CLASS``
    rows of each class, else ``beta+isotonic`` (the mean of :func:`beta_calibration`'s and the
    isotonic fit's probabilities): isotonic steps fitted on a few hundred positives overfit and
    bias the expected ROC AUC upwards, beta calibration's three parameters miss part of a
    boosted model's shape and bias it downwards (Platt's two, used before, much more: about
    0.02 low on the demo's fraud model however many rows); the mean is closer than isotonic
    alone on the demo's models from 80 to 700 positives, about as close as beta alone, with
    half its bias (benchmarks/cbpe_window.py)."""
    pos = int(np.count_nonzero(ref_true))
    return "isotonic" if min(pos, len(ref_true) - pos) >= ISOTONIC_MIN_CLASS else "beta+isotonic"


CALIBRATIONS = ("isotonic", "beta+isotonic", "beta", "platt")


def calibrate(ref_score: np.ndarray, ref_true: np.ndarray, cur_score: np.ndarray,
              method: str | None = None) -> np.ndarray:
    """P(positive) of ``cur_score`` calibrated on the labelled reference rows, by ``method``
    (one of ``CALIBRATIONS``; default :func:`calibration_method`'s choice)."""
    method = method or calibration_method(ref_true)
    if method not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {method!r} (one of {', '.join(CALIBRATIONS)})")
    if method == "platt":
        a, b = platt(ref_score, ref_true)
        return 1.0 / (1.0 + np.exp(-(a * _logit(cur_score) + b)))
    out = np.zeros(len(cur_score))
    if method in ("isotonic", "beta+isotonic"):
        xs, fit = isotonic(ref_score, ref_true)
        out += np.interp(cur_score.astype(np.float64), xs, fit)
    if method in ("beta", "beta+isotonic"):
        w = np.array(beta_calibration(ref_score, ref_true))
        out += 1.0 / (1.0 + np.exp(-(_beta_features(cur_score) @ w)))
    return out / 2 if method == "beta+isotonic" else out


def cbpe(ref_score: np.ndarray, ref_true: np.ndarray, cur_score: np.ndarray, cur_pred_positive: np.ndarray,
         method: str | None = None) -> dict[str, float | None]:
    """Expected accuracy and ROC AUC of the current rows (their scores and whether each is
    predicted positive) after calibrating scores on the labelled reference rows
    (:func:`calibration_method` picks isotonic or beta+isotonic)."""
    c = calibrate(ref_score, ref_true, cur_score, method)
    acc = float(np.where(cur_pred_positive, c, 1.0 - c).mean()) if len(c) else None
    return {"accuracy": acc, "roc_auc": expected_auc(cur_score, c) if len(c) > 1 else None}


# ---------------------------------------------------------------------------------------------
# measuring


def measure(j: Joined, *, clock: Any = time.time) -> QualityResult:
    """The metrics of the newest ``window`` labelled rows of ``j`` (see the module docstring)."""
    spec = j.spec
    n_all = len(j.y_true)
    w = slice(max(0, n_all - spec.window), n_all)
    yt, yp = j.y_true[w], j.y_pred[w]
    sc = j.score[w] if j.score is not None else None
    rows = len(yt)
    confusion_json = None
    estimate = None
    if spec.problem_type == CLASSIFICATION:
        metrics, confusion_json = classification_metrics(yt, yp, sc, j.positive, spec.seed)
        if j.no_probability is not None:
            metrics["roc_auc"] = Metric("roc_auc", None, rows=rows,
                                        note=f"no probability column {one_line(j.no_probability, 40)!r} in the captures")
        estimate = _estimate(j, j.y_true, j.score)  # calibrated on every labelled row read, not only the window
    else:
        metrics = regression_metrics(yt.astype(np.float64), yp.astype(np.float64), spec.seed)
    lag = None
    it, lt = j.inference_time[w], j.label_time[w]
    known = ~(np.isnat(it) | np.isnat(lt))
    if known.any():
        lag = float(np.median((lt[known] - it[known]).astype("timedelta64[ns]").astype(np.int64))) / 1e9
    share = j.recent_labelled / j.recent_rows if j.recent_rows else None
    result = QualityResult(problem_type=spec.problem_type, rows=rows, window=spec.window, min_rows=spec.min_rows,
                           counts=j.counts, labelled_share=share, label_lag_seconds=lag, metrics=metrics,
                           confusion=confusion_json, estimate=estimate,
                           positive_label=str(_label_json(j.positive)) if spec.problem_type == CLASSIFICATION
                           else None, computed_at=float(clock()))
    return _with_series(result, j)


def _estimate(j: Joined, ref_true: np.ndarray, ref_score: np.ndarray | None) -> Estimate | None:
    """CBPE on the newest window's unlabelled rows, calibrated on the labelled rows given (every
    labelled row joined, the newest CALIBRATION_ROWS of them: isotonic needs ISOTONIC_MIN_CLASS of
    each class, which a 1,000-row window never holds); only for binary labels with
    probabilities, and only with enough labelled rows of both classes."""
    if ref_score is None or j.unlabelled_score is None or j.unlabelled_pred is None:
        return None
    t = ref_true == j.positive
    if len(t) < j.spec.min_rows or t.all() or not t.any() or len(np.unique(ref_true)) != 2:
        return None
    cur_s = j.unlabelled_score
    ok = ~np.isnan(cur_s)
    cur_s = cur_s[ok]
    if len(cur_s) == 0:
        return None
    cur_pos = np.asarray(j.unlabelled_pred)[ok] == j.positive
    keep = slice(max(0, len(t) - CALIBRATION_ROWS), len(t))  # the newest labelled rows calibrate
    method = calibration_method(t[keep])
    m = cbpe(ref_score[keep], t[keep], cur_s, cur_pos, method)
    return Estimate(rows=len(cur_s), reference_rows=min(len(t), CALIBRATION_ROWS), metrics=m, calibration=method)


def _with_series(r: QualityResult, j: Joined) -> QualityResult:
    """The headline metric over consecutive blocks of labelled rows (oldest first): the chart."""
    from dataclasses import replace

    n = len(j.y_true)
    block = max(50, j.spec.window // 4)
    if n < block:
        return r
    name = r.headline() or "accuracy"
    out = []
    first = max(0, n - block * SERIES_BLOCKS)
    first = n - ((n - first) // block) * block
    for a in range(first, n, block):
        b = a + block
        yt, yp = j.y_true[a:b], j.y_pred[a:b]
        v: float | None
        if r.problem_type == REGRESSION:
            e = yt.astype(np.float64) - yp.astype(np.float64)
            tot = float(((yt - yt.mean()) ** 2).sum())
            v = 1.0 - float((e * e).sum()) / tot if tot > 0 else None
        elif name == "roc_auc" and j.score is not None:
            v = roc_auc(yt == j.positive, j.score[a:b])
        else:
            v = float((yt == yp).mean())
        end = j.inference_time[b - 1]
        out.append({"metric": name, "rows": int(b - a), "value": _f(v),
                    "end": None if np.isnat(end) else str(np.datetime_as_string(end, unit="s")) + "Z"})
    return replace(r, series=tuple(out))


# ---------------------------------------------------------------------------------------------
# from the sources


def assess(capture: str, labels: str, spec: QualitySpec, *, last_n: int | None = None,
           label_id_column: str | None = None, label_column: str = "label", timeout: float = 10.0,
           max_bytes: int | None = None, clock: Any = time.time) -> QualityResult:
    """Read the newest ``last_n`` captured rows (all with None) and every label, join, measure.
    Raises InputError for sources that cannot be read."""
    from modeldeck.core import capture as cap

    kw: dict[str, Any] = {"timeout": timeout}
    if max_bytes is not None:
        kw["max_bytes"] = max_bytes
    preds = cap.read_window(capture, last_n, ids=True, **kw)
    # label files last written before the oldest prediction read cannot hold its label
    oldest = None
    times = _times(preds) if len(preds) else None
    if times is not None and len(times) and not np.isnat(times).any():
        oldest = float(times.min().astype("datetime64[ns]").astype(np.int64)) / 1e9 - LABEL_FILE_SLACK
    skipped: list[Any] = []
    labs = cap.read_labels(labels, id_column=label_id_column, label_column=label_column, modified_after=oldest,
                           skipped=skipped, **kw)
    j = join(preds, labs, spec, name=str(capture))
    if skipped:
        from dataclasses import replace

        j.counts = replace(j.counts, label_files_skipped=len(skipped))
    return measure(j, clock=clock)


LABELLED = "_label"  # labelled_rows: the label of each captured row


def labelled_rows(predictions: Any, labels: Any, *, id_column: str | None = None,
                  name: str = "the captures") -> tuple[Any, Counts]:
    """The captured rows that have a label, joined exactly as :func:`join` joins them (the same
    keys, the newest label of an id wins, a label may name a request by its ``inferenceId``),
    with the label as :data:`LABELLED`, in inference-time order; and the join's counts. For
    training and evaluating on the labelled live window (``core.evaluation.labelled_window``,
    the example pipeline's ``--recent``). The captured rows keep their order (read_window's:
    by inference time)."""
    from modeldeck.core.capture import LABEL

    spec = QualitySpec(id_column=id_column)
    if not len(predictions):
        return predictions.iloc[0:0], Counts(labels=len(labels))
    pos, hit, counts = _match(predictions, labels, spec, name)
    frame = predictions.iloc[np.flatnonzero(hit)].copy()
    frame.attrs.update(predictions.attrs)
    frame[LABELLED] = labels[LABEL].to_numpy(dtype=object)[pos[hit]]
    return frame, Counts(**counts)


def input_columns(frame: Any) -> Any:
    """A copy of the captured input columns of ``frame`` (``labelled_rows``' or
    ``read_window``'s): without the model's outputs, the keys, the version and the label."""
    from modeldeck.core.capture import ID, INFERENCE_ID, VERSION

    drop = set(frame.attrs.get("output_columns", [])) | {ID, VERSION, INFERENCE_ID, LABELLED}
    return frame[[c for c in frame.columns if c not in drop]].copy()


def read_labelled(capture: str | Sequence[str], labels: str | Sequence[str], rows: int, *,
                  label_id_column: str | None = None, label_column: str = "label", timeout: float = 10.0,
                  max_bytes: int | None = None) -> tuple[Any, Counts]:
    """The newest ``rows`` captured rows that have a label (:func:`labelled_rows`) from the
    sources (a file, glob or URL each, or several of them), read as :func:`assess` reads them:
    the newest captured records (4 x ``rows``, at least 5,000, more while too few of them are
    labelled), and the label files not older than the oldest of those (the skipped ones
    counted). Returns the frame (at most ``rows``) and the counts of the whole join."""
    from dataclasses import replace

    import pandas as pd

    from modeldeck.core import capture as cap

    captures = [capture] if isinstance(capture, (str, bytes)) or not isinstance(capture, Sequence) else list(capture)
    label_sources = [labels] if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) else list(labels)
    kw: dict[str, Any] = {"timeout": timeout}
    if max_bytes is not None:
        kw["max_bytes"] = max_bytes
    n = max(4 * max(1, rows), 5000)
    while True:
        frames = [cap.read_window(c, n, ids=True, **kw) for c in captures]
        preds = frames[0] if len(frames) == 1 else pd.concat(frames)
        if len(frames) > 1 and isinstance(preds.index, pd.DatetimeIndex) and not preds.index.hasnans:
            preds = preds.iloc[np.argsort(preds.index.to_numpy(dtype="datetime64[ns]"), kind="stable")]
            preds.attrs.update(frames[0].attrs)
        complete = all(len(f) < n for f in frames)
        oldest = None
        times = _times(preds) if len(preds) else None
        if times is not None and len(times) and not np.isnat(times).any():
            oldest = float(times.min().astype("datetime64[ns]").astype(np.int64)) / 1e9 - LABEL_FILE_SLACK
        skipped: list[Any] = []
        parts = [cap.read_labels(src, id_column=label_id_column, label_column=label_column, modified_after=oldest,
                                 skipped=skipped, **kw) for src in label_sources]
        labs = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        if len(parts) > 1 and len(labs) and not labs[cap.LABEL_TIME].isna().any():  # the newest label last
            labs = labs.iloc[np.argsort(labs[cap.LABEL_TIME].to_numpy(), kind="stable")].reset_index(drop=True)
        frame, counts = labelled_rows(preds, labs, id_column=label_id_column,
                                      name=", ".join(str(c) for c in captures))
        if len(frame) >= rows or complete:
            break
        n *= 4
    if skipped:
        counts = replace(counts, label_files_skipped=len(skipped))
    out = frame.iloc[max(0, len(frame) - rows):]
    out.attrs.update(frame.attrs)
    return out, counts


def failed(spec: QualitySpec, error: str, *, clock: Any = time.time) -> QualityResult:
    """A result saying why quality could not be measured (a source that cannot be read)."""
    return QualityResult(problem_type=spec.problem_type, rows=0, window=spec.window, min_rows=spec.min_rows,
                         counts=Counts(), labelled_share=None, label_lag_seconds=None,
                         computed_at=float(clock()), error=one_line(error, 300))


# ---------------------------------------------------------------------------------------------
# words


def fmt_value(name: str, v: float | None) -> str:
    if v is None:
        return "-"
    if name in ("mae", "rmse"):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return f"{v:.3f}"


def describe_counts(c: Counts) -> str:
    parts = [f"{c.labelled} of {c.predictions} captured rows labelled"]
    if c.predictions_without_label:
        parts.append(f"{c.predictions_without_label} without a label")
    if c.labels_without_prediction:
        parts.append(f"{c.labels_without_prediction} labels without a prediction")
    if c.duplicate_labels:
        parts.append(f"{c.duplicate_labels} duplicated labels (the newest kept)")
    if c.predictions_without_id:
        parts.append(f"{c.predictions_without_id} captured rows without an id")
    if c.unusable:
        parts.append(f"{c.unusable} labelled rows without a usable value")
    if c.other_versions:
        parts.append(f"{c.other_versions} rows another version answered (left out)")
    if c.label_files_skipped:
        parts.append(f"{c.label_files_skipped} label {_files(c.label_files_skipped)} skipped ({SKIPPED_WHY})")
    return ", ".join(parts)


# Why label files are skipped (core.capture.read_labels' modified_after), in the counts' words.
SKIPPED_WHY = f"last written before the oldest captured row read, less {LABEL_FILE_SLACK / 60:g} minutes"


def _files(n: int) -> str:
    return "file" if n == 1 else "files"


def metric_names(problem_type: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if problem_type == CLASSIFICATION else REGRESSION_METRICS


# ---------------------------------------------------------------------------------------------
# what a version's live quality is compared with


@dataclass(frozen=True)
class Registered:
    """A version's registered metrics on its own evaluation data, by quality's names."""

    model: str
    version: int
    metrics: Mapping[str, float]
    dataset_sha256: str | None
    dataset_rows: int | None

    def describe(self) -> str:
        from modeldeck.core import datafiles

        return f"version {self.version}'s registered value on {datafiles.describe(self.dataset_sha256, self.dataset_rows)}"

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "metrics": dict(self.metrics), "dataset_sha256": self.dataset_sha256,
                "dataset_rows": self.dataset_rows, "describe": self.describe()}


def by_quality_names(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Registered metric names -> quality's (``auc`` -> ``roc_auc``); the exact name wins."""
    out: dict[str, float] = {}
    for name, names in ALIASES.items():
        for alias in names:
            v = _f(metrics.get(alias))
            if v is not None:
                out[name] = v
                break
    return out


def registered(reg: Any, model: str, version: int | str | None) -> Registered | None:
    """The metrics ``version`` was registered with on its own evaluation data (issue 12's
    evaluations: those recorded at registration, else its newest evaluation on a known
    dataset, else its metrics registered without data). None: no such version or no metric."""
    if version is None or not str(version).isdigit():
        return None
    v = int(version)
    evs = list(reg.evaluations(model, v))
    own = [e for e in evs if e.source == "register"] or [e for e in evs if e.dataset_sha256] or evs
    if own:
        sha = own[-1].dataset_sha256
        chosen = [e for e in own if e.dataset_sha256 == sha]
        values = by_quality_names({e.metric: e.value for e in chosen})
        if values:
            return Registered(model, v, values, sha, chosen[-1].dataset_rows)
    try:
        ver = reg.version(model, v)
    except Exception:  # no such version
        return None
    values = by_quality_names(getattr(ver, "metrics", None) or {})
    return Registered(model, v, values, None, None) if values else None


def spec_for(mc: Any, *, window: int | None = None, id_column: str | None = None) -> QualitySpec:
    """The QualitySpec a model's rules (``core.config.ModelConfig``, the policy applied) say."""
    return QualitySpec(problem_type=mc.problem_type or CLASSIFICATION,
                       prediction_column=mc.prediction_column or "prediction",
                       probability_column=mc.probability_column or "probability",
                       positive_label=mc.positive_label if mc.positive_label is not None else "1",
                       id_column=id_column, window=window or mc.quality_window, min_rows=mc.quality_min_rows)


def document(r: QualityResult, reg: Registered | None, drop: float) -> dict[str, Any]:
    """The quality object ``modeldeck quality --format json`` prints and the report embeds as
    ``endpoints[].quality``: :meth:`QualityResult.to_json` with the registered metrics it was
    judged against, the verdicts (``core.judge.quality_verdicts``) and their worst level."""
    from modeldeck.core import judge

    doc = r.to_json()
    found = judge.quality_verdicts(doc, reg.metrics if reg else None, drop, reg.describe() if reg else "",
                                   reg.dataset_rows if reg else None)
    doc["registered"] = reg.as_dict() if reg else None
    doc["quality_drop"] = drop
    doc["verdicts"] = [{"level": v.level, "text": v.text} for v in found]
    doc["level"] = judge.worst(v.level for v in found)
    return doc


def render_text(r: QualityResult, reg: Registered | None = None, verdicts: Sequence[Any] = ()) -> str:
    """The table ``modeldeck quality`` prints: each metric with its interval (and the
    registered value it is judged against), the counts, share, lag, the confusion matrix and
    the estimate, kept apart."""
    from modeldeck.core.textfmt import duration, pct, table

    lines: list[str] = []
    if r.error:
        return f"quality not measured: {r.error}\n"
    head = f"{r.problem_type}: {r.rows} labelled rows (window {r.window})"
    if not r.enough:
        head += f"; not enough labels (fewer than {r.min_rows}): no verdict"
    lines.append(head)
    lines.append(describe_counts(r.counts))
    lag = LAG_UNKNOWN if r.label_lag_seconds is None else duration(max(0.0, r.label_lag_seconds))
    lines.append(f"labelled share of the newest {r.window} captured rows {pct(r.labelled_share)}, "
                 f"label lag (median) {lag}")
    rows = []
    for name in metric_names(r.problem_type):
        m = r.metrics.get(name)
        if m is None:
            continue
        iv = f"{fmt_value(name, m.low)} - {fmt_value(name, m.high)}" if m.low is not None else "-"
        ref = reg.metrics.get(name) if reg is not None else None
        rows.append([name, fmt_value(name, m.value), iv, m.method or "-", str(m.rows),
                     fmt_value(name, ref) if ref is not None else "-", one_line(m.note, 60) or ""])
    lines += ["", table(["METRIC", "VALUE", "95% INTERVAL", "METHOD", "ROWS", "REGISTERED", "NOTE"], rows,
                        right=[1, 4, 5])]
    if reg is not None:
        lines.append(f"registered: {reg.describe()}")
    if r.confusion is not None and r.confusion["labels"]:
        labels = [one_line(x, 16) for x in r.confusion["labels"]]
        cm_rows = [[f"true {lab}", *[str(v) for v in row]] for lab, row in zip(labels, r.confusion["matrix"])]
        lines += ["", table(["", *[f"pred {lab}" for lab in labels]], cm_rows, right=range(1, len(labels) + 1))]
    if r.estimate is not None:
        e = r.estimate
        vals = ", ".join(f"{k} {fmt_value(k, v)}" for k, v in e.metrics.items())
        lines += ["", f"estimated (CBPE, not measured) on {e.rows} unlabelled rows, calibrated on "
                      f"{e.reference_rows} labelled ({e.calibration}): {vals}"]
    for v in verdicts:
        lines.append(f"{v['level']}: {v['text']}" if isinstance(v, Mapping) else f"{v.level}: {v.text}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# one endpoint (the poller, the report)


def rules_for(reg: Any, settings: Any, model: str) -> Any:
    """The model's rules that apply (the registry's policy made stricter by the config; a
    looser config value does not change what the policy says)."""
    from modeldeck.core import policy

    return policy.merge(settings.model(model), reg.policy(model), settings.path).model_config


def endpoint_quality(cfg: Any, mc: Any, reg_metrics: Registered | None, version: str | None, *, scan: int,
                     timeout: float = 10.0, clock: Any = time.time) -> Any:
    """The :class:`core.snapshot.QualitySummary` of one endpoint with ``capture`` and ``labels``:
    its newest ``scan`` captured rows joined with its labels, measured and judged against
    ``reg_metrics`` (the served version's). A source that cannot be read is the summary's
    ``error`` (the judge's "quality not measured" warning), never an exception."""
    from dataclasses import replace

    from modeldeck.core.snapshot import QualitySummary

    spec = replace(spec_for(mc, id_column=cfg.label_id_column), version=version)
    try:
        result = assess(cfg.capture, cfg.labels, spec, last_n=scan, label_id_column=cfg.label_id_column,
                        label_column=cfg.label_column, timeout=timeout, clock=clock)
    except InputError as e:
        result = failed(spec, str(e), clock=clock)
    doc = document(result, reg_metrics, mc.quality_drop)
    return QualitySummary(computed_at=float(clock()), version=version, result=doc, error=result.error)
