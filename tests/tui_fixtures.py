"""Fixed, deterministic data for TUI tests: a config, a registry with fixed times, and
snapshots (real ``core.poller`` values) served by a FixedSource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modeldeck.core import config
from modeldeck.core.registry import Registry
from modeldeck.core.snapshot import DriftSummary, EndpointSnapshot, QualitySummary

NOW = 1_795_000_000.0  # a fixed clock for ages
EVIL = "[/bold]evil[red]"

CONFIG = f"""
registry = "registry.db"
[poll]
interval = 2.0
[models.fraud]
verify_timeout = 2
bake_seconds = 2
[[endpoints]]
name = "churn-prod"
model = "churn"
url = "http://127.0.0.1:9"
capture = "captures/churn/*.jsonl"
[[endpoints]]
name = "churn-staging"
model = "churn"
environment = "staging"
url = "http://127.0.0.1:9"
[[endpoints]]
name = "fraud-prod"
model = "fraud"
url = "http://127.0.0.1:9"
[[endpoints]]
name = "{EVIL}"
model = "{EVIL}"
url = "http://127.0.0.1:9"
"""


def write_world(folder: Path) -> config.Settings:
    cfg = folder / "modeldeck.toml"
    cfg.write_text(CONFIG)
    fixed = "2026-11-20T09:00:00.000000Z"  # registration times fixed, so screenshots are stable: written as
    with Registry(folder / "registry.db") as reg, _registered_at(fixed):  # such (an edited row breaks the chain)
        for i in range(3):
            reg.register("churn", f"s3://models/churn/{i + 1}.pkl", metrics={"auc": 0.81 + i / 100, "f1": 0.7},
                         params={"depth": 6}, code_version="4f2a9c1", dataset_sha256="ab" * 32,
                         tags={"team": "growth"})
        _registered_at.off()
        reg.approve("churn", 1, "offline eval ok")
        reg.approve("churn", 2, "offline eval ok")
        reg.promote("churn", 1, "production", "first release")
        reg.promote("churn", 2, "production", "weekly retrain")
        reg.promote("churn", 3, "staging", "candidate")
        _registered_at.on()
        reg.register("fraud", "s3://models/fraud/1.pkl", metrics={"auc": 0.9})
        reg.register(EVIL, "[/bold]\x1b[31m", metrics={"[red]": 1.0})
    return config.parse_file(cfg)


class _RegisteredAt:
    """While on, the registry's clock says ``at`` (registrations get a fixed created_at)."""

    def __call__(self, at: str) -> _RegisteredAt:
        self.at, self.active = at, True
        return self

    def __enter__(self) -> None:
        from modeldeck.core import registry

        self.saved = registry.utcnow
        registry.utcnow = lambda: self.at if self.active else self.saved()  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        from modeldeck.core import registry

        registry.utcnow = self.saved  # type: ignore[assignment]

    def on(self) -> None:
        self.active = True

    def off(self) -> None:
        self.active = False


_registered_at = _RegisteredAt()


def drift_summary() -> DriftSummary:
    columns = [
        {"column": "tenure", "kind": "num", "method": "wasserstein", "score": 0.312, "threshold": 0.1,
         "drifted": True, "psi": 0.41, "status": "drift", "missing_share_reference": 0.0,
         "missing_share_current": 0.02, "n_reference": 5000, "n_current": 1000,
         "histogram": {"labels": ["≤3", "3–6", "6–12", "12–24", ">24"],
                       "reference": [0.2, 0.2, 0.2, 0.2, 0.2], "current": [0.05, 0.1, 0.15, 0.3, 0.4]}},
        {"column": "plan", "kind": "cat", "method": "jensenshannon", "score": 0.21, "threshold": 0.1,
         "drifted": True, "psi": 0.3, "status": "drift", "missing_share_reference": 0.0,
         "missing_share_current": 0.0, "unseen_share": 0.12},
        {"column": "[red]monthly", "kind": "num", "method": "wasserstein", "score": 0.02, "threshold": 0.1,
         "drifted": False, "psi": 0.01, "status": "ok", "missing_share_reference": 0.0,
         "missing_share_current": 0.0},
    ]
    return DriftSummary(n_columns=3, n_drifted=2, dataset_drift=True, drift_share=2 / 3, worst_psi=0.41,
                        worst_psi_column="tenure", computed_at=NOW - 3,
                        result={"dataset_drift": True, "n_columns": 3, "n_drifted": 2, "drift_share": 2 / 3,
                                "n_current": 1000, "columns": columns}, version="2", window_rows=1000)


def quality_summary(kind: str) -> QualitySummary:
    """Real ``core.quality`` results on fixed data: ``drop`` (churn: accuracy and AUC well
    below version 2's registered values), ``text`` (class labels with markup in them, judged
    fine), ``few`` (not enough labels)."""
    import numpy as np
    import pandas as pd

    from modeldeck.core import capture, quality

    rng = np.random.default_rng({"drop": 1, "text": 2, "few": 3}[kind])
    n = {"drop": 1200, "text": 600, "few": 150}[kind]
    y = (rng.random(n) < 0.4).astype(int)
    right = rng.random(n) < (0.72 if kind == "drop" else 0.9)
    pred = np.where(right, y, 1 - y)
    score = np.clip(np.where(pred == 1, 0.7, 0.3) + rng.normal(0, 0.15, n), 0, 1).round(3)
    ids = [f"e{i}" for i in range(n)]
    times = pd.DatetimeIndex(pd.to_datetime(NOW - 3600 + np.arange(n), unit="s", utc=True))
    if kind == "text":
        names = np.array(["ok", "[red]fraud"], dtype=object)
        frame = pd.DataFrame({"_id": ids, "prediction": names[pred], "probability": score}, index=times)
        labels = capture._label_table(ids, list(names[y]), [None] * n)
        spec = quality.QualitySpec(positive_label="[red]fraud")
    else:
        frame = pd.DataFrame({"_id": ids, "prediction": pred, "probability": score}, index=times)
        keep = n - 100  # the newest 100 rows wait for their labels (the estimate covers them)
        labels = capture._label_table(ids[:keep], list(y[:keep]), list(times[:keep] + pd.Timedelta(seconds=90)))
        spec = quality.QualitySpec()
    result = quality.measure(quality.join(frame, labels, spec), clock=lambda: NOW - 5)
    reg = quality.Registered("churn" if kind != "text" else "fraud", 2,
                             {"roc_auc": 0.86, "accuracy": 0.84} if kind != "text" else {"accuracy": 0.9},
                             "ab" * 32, 1500)
    return QualitySummary(computed_at=NOW - 5, version="2", result=quality.document(result, reg, 0.05))


def snapshot(name: str, model: str, env: str, status: str, **kw: Any) -> EndpointSnapshot:
    base: dict[str, Any] = dict(endpoint=name, model=model, environment=env, taken_at=NOW - 1, duration_ms=3.0,
                                status=status, reason=kw.pop("reason", ""), served_version="2",
                                served_versions=("2",), registry_version="2", request_rate=24.5,
                                error_ratio=0.004, latency_p50_ms=8.0, latency_p95_ms=21.0, latency_p99_ms=40.0)
    base.update(kw)
    return EndpointSnapshot(**base)


def fleet_snapshots() -> tuple[dict[str, EndpointSnapshot], dict[str, list[EndpointSnapshot]]]:
    latest = {
        "churn-prod": snapshot("churn-prod", "churn", "production", "DEGRADED", drift=drift_summary(),
                               reason="ready", quality=quality_summary("drop")),
        "churn-staging": snapshot("churn-staging", "churn", "staging", "UP", served_version="3",
                                  served_versions=("3",), registry_version="3", request_rate=3.0,
                                  quality=quality_summary("few")),
        "fraud-prod": snapshot("fraud-prod", "fraud", "production", "DEGRADED", error_ratio=0.31,
                               latency_p95_ms=640.0, reason="error ratio 31.0% over 5.0%", registry_version=None,
                               quality=quality_summary("text")),
        EVIL: snapshot(EVIL, EVIL, "production", "DOWN", served_version=None, served_versions=(),
                       request_rate=None, error_ratio=None, latency_p95_ms=None,
                       reason="/v2/health/ready answered 500: [/bold]\x1b[31m<html>[link=x]"),
    }
    history = {
        "churn-prod": [snapshot("churn-prod", "churn", "production", "UP", taken_at=NOW - 60 + i * 2,
                                request_rate=20 + (i % 7), latency_p95_ms=18 + (i % 5) * 3,
                                error_ratio=0.002 * (i % 4)) for i in range(30)],
    }
    return latest, history
