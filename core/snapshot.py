"""What one poll learned about one endpoint, as immutable values: :class:`EndpointSnapshot`
and its :class:`DriftSummary` and :class:`QualitySummary` (and :class:`QualityPoint`, one quality
measurement kept for the chart over time), and the status words. This module imports nothing but the
standard library, :mod:`modeldeck.core.textfmt` and :mod:`modeldeck.core.frozen` (no httpx, no pandas), so every part of
modeldeck can type its snapshots: the poller and the Prometheus source produce them; the
judge, the report, the releases and the screens read them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from math import isfinite
from typing import TYPE_CHECKING, Any

from modeldeck.core.frozen import build, quick_init
from modeldeck.core.textfmt import finite, json_safe, parse_utc, utc_iso

if TYPE_CHECKING:
    from modeldeck.core.config import EndpointConfig

UP = "UP"
DEGRADED = "DEGRADED"
DOWN = "DOWN"
PENDING = "PENDING"
STATUSES = (UP, DEGRADED, DOWN, PENDING)


@dataclass(frozen=True)
class DriftSummary:
    """The last drift comparison of an endpoint's live window with its reference profile.
    ``result`` is ``core.drift.result_to_json(...)`` output (treat it as read-only)."""

    n_columns: int = 0
    n_drifted: int = 0
    dataset_drift: bool = False
    drift_share: float = 0.0
    worst_psi: float | None = None
    worst_psi_column: str | None = None
    computed_at: float = 0.0  # epoch seconds
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    version: str | None = None  # the served version whose reference profile was used
    window_rows: int | None = None

    def to_dict(self, *, result: bool = True) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["result"] = json_safe(self.result) if result else {}
        d["worst_psi"] = finite(self.worst_psi)
        d["drift_share"] = finite(self.drift_share) or 0.0
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftSummary:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if not isinstance(kw.get("result", {}), dict):
            kw["result"] = {}
        return cls(**kw)


@dataclass(frozen=True)
class QualitySummary:
    """The last quality measurement of an endpoint (captures joined with labels):
    ``result`` is ``core.quality.document(...)`` (the JSON the report embeds: metrics with
    intervals, counts, the registered values and the judge's verdicts); treat it as read-only."""

    computed_at: float = 0.0  # epoch seconds
    version: str | None = None  # the served version whose registered metrics it was judged against
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> str:
        """measured | not_enough_labels | error"""
        return "error" if self.error else str(self.result.get("status") or "error")

    def headline(self) -> tuple[str, float | None, float | None]:
        """(metric, live value, registered value): ROC AUC when measured, else accuracy; R² for
        regression."""
        metrics = self.result.get("metrics") or {}
        reg = ((self.result.get("registered") or {}).get("metrics")) or {}
        if self.result.get("problem_type") == "regression":
            name = "r2"
        else:
            name = "roc_auc" if finite((metrics.get("roc_auc") or {}).get("value")) is not None else "accuracy"
        return name, finite((metrics.get(name) or {}).get("value")), finite(reg.get(name))

    def to_dict(self) -> dict[str, Any]:
        return {"computed_at": self.computed_at, "version": self.version, "result": json_safe(self.result),
                "error": self.error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualitySummary:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if not isinstance(kw.get("result", {}), dict):
            kw["result"] = {}
        return cls(**kw)


@dataclass(frozen=True)
class QualityPoint:
    """One quality measurement of an endpoint, kept for the chart over time
    (``Poller.quality_history``): each metric's value and 95 % interval and the registered
    values, not the whole document, so a long history stays small."""

    computed_at: float  # epoch seconds
    version: str | None = None
    status: str = "error"  # measured | not_enough_labels | error
    rows: int = 0  # labelled rows measured
    metrics: Mapping[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)  # (value, low, high)
    registered: Mapping[str, float] = field(default_factory=dict)
    level: str = "OK"  # the judge's worst level of its verdicts (as stored in the document)

    @classmethod
    def of(cls, q: QualitySummary) -> QualityPoint:
        doc = q.result or {}
        metrics = {}
        for name, m in (doc.get("metrics") or {}).items():
            if isinstance(m, Mapping):
                metrics[str(name)] = (finite(m.get("value")), finite(m.get("low")), finite(m.get("high")))
        reg = ((doc.get("registered") or {}).get("metrics")) or {}
        registered = {str(k): f for k, v in reg.items() if (f := finite(v)) is not None}
        rows = doc.get("rows")
        return cls(computed_at=float(q.computed_at), version=q.version, status=q.status,
                   rows=int(rows) if isinstance(rows, int) else 0, metrics=metrics, registered=registered,
                   level=str(doc.get("level") or ("WARNING" if q.error else "OK")))

    def value(self, name: str) -> float | None:
        """The measured value of ``name``; None while labels are too few (no verdict, no point)."""
        if self.status != "measured":
            return None
        return (self.metrics.get(name) or (None, None, None))[0]


_SNAPSHOT_FIELDS: dict[type, tuple[str, ...]] = {}  # to_dict's field names, per class


@quick_init  # one made per endpoint per refresh
@dataclass(frozen=True)
class EndpointSnapshot:
    """What one poll learned about one endpoint. Immutable; ``None`` means unknown."""

    endpoint: str
    model: str
    environment: str
    taken_at: float  # epoch seconds
    duration_ms: float
    status: str  # UP | DEGRADED | DOWN | PENDING (not polled yet)
    reason: str  # in words, one line, plain text (never markup)
    live: bool | None = None
    ready: bool | None = None
    model_ready: bool | None = None
    served_version: str | None = None
    served_versions: tuple[str, ...] = ()
    registry_version: str | None = None
    request_rate: float | None = None  # requests per second
    error_ratio: float | None = None  # 0..1
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_mean_ms: float | None = None
    profile: str | None = None  # the metrics profile used
    restarted: bool = False  # counters went down since the last reading: the server restarted
    drift: DriftSummary | None = None
    quality: QualitySummary | None = None
    metrics_window: float | None = None  # seconds the rates cover
    metrics_age: float | None = None  # seconds since the metrics were read
    source: str = "live"  # "live", or "stored" for history seeded from the registry
    # (version, requests per second, error ratio or None) where the server labels its counters by
    # version (MLServer): a bake judges the new version's own requests with them
    version_rates: tuple[tuple[str, float, float | None], ...] = ()

    @property
    def version_mismatch(self) -> bool:
        return (self.registry_version is not None and bool(self.served_versions)
                and self.registry_version not in self.served_versions)

    def to_dict(self, *, drift_result: bool = True) -> dict[str, Any]:
        """JSON-safe (no NaN, tuples as lists, times as epoch seconds plus ``taken_at_utc``)."""
        d: dict[str, Any] = {}
        names = _SNAPSHOT_FIELDS.get(type(self))
        if names is None:  # fields() builds its tuple on every call: 5,000 snapshots a report
            names = _SNAPSHOT_FIELDS[type(self)] = tuple(f.name for f in fields(self))
        for name in names:
            v = getattr(self, name)
            t = type(v)
            if v is None or t is str or t is bool:  # most fields (5,000 snapshots a report)
                pass
            elif t is float:
                v = v if isfinite(v) else None
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, float):
                v = finite(v)
            elif isinstance(v, DriftSummary):
                v = v.to_dict(result=drift_result)
            elif isinstance(v, QualitySummary):
                v = v.to_dict()
            d[name] = v
        d["taken_at_utc"] = utc_iso(self.taken_at)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EndpointSnapshot:
        """The inverse of :meth:`to_dict`; unknown keys are ignored, ``taken_at`` may be epoch
        seconds or an ISO-8601 string (as stored rows carry)."""
        kw: dict[str, Any] = dict(d)  # build() takes the fields' names only
        t = kw.get("taken_at")
        if isinstance(t, str):
            kw["taken_at"] = parse_utc(t)
        elif t is None:
            kw["taken_at"] = parse_utc(str(d.get("taken_at_utc", ""))) if d.get("taken_at_utc") else 0.0
        for k in ("endpoint", "model", "environment", "status", "reason"):
            kw[k] = str(kw.get(k) or "")
        kw["status"] = kw["status"] if kw["status"] in STATUSES else PENDING
        kw["duration_ms"] = float(kw.get("duration_ms") or 0.0)
        kw["served_versions"] = tuple(str(v) for v in (kw.get("served_versions") or ()))
        drift = kw.get("drift")
        kw["drift"] = DriftSummary.from_dict(drift) if isinstance(drift, Mapping) else None
        q = kw.get("quality")
        kw["quality"] = QualitySummary.from_dict(q) if isinstance(q, Mapping) else None
        kw["restarted"] = bool(kw.get("restarted", False))
        vr = []
        for row in kw.get("version_rates") or ():
            if isinstance(row, (list, tuple)) and len(row) == 3 and isinstance(row[1], (int, float)):
                vr.append((str(row[0]), float(row[1]), float(row[2]) if isinstance(row[2], (int, float)) else None))
        kw["version_rates"] = tuple(vr)
        return build(cls, kw)  # cls(**kw), without matching names read from a row to parameters

    @classmethod
    def pending(cls, cfg: EndpointConfig, registry_version: str | None = None) -> EndpointSnapshot:
        return cls(endpoint=cfg.name, model=cfg.model, environment=cfg.environment, taken_at=time.time(),
                   duration_ms=0.0, status=PENDING, reason="not polled yet", registry_version=registry_version)
