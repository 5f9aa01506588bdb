"""One judge: the fleet's cell colours, the report's findings and the release health gate come
from modeldeck.core.judge, so at and around every threshold they agree."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeck.core import config as configmod
from modeldeck.core import judge, releases, report
from modeldeck.core.config import EndpointConfig, Thresholds
from modeldeck.core.snapshot import DriftSummary, EndpointSnapshot
from modeldeck.tui.screens.fleet import COLUMNS_WIDE, FleetScreen

TH = Thresholds()  # error 5% / 20%, p95 500 / 2000 ms, PSI 0.1 / 0.25
EP = EndpointConfig(name="m-prod", model="m", url="http://127.0.0.1:9", environment="production", thresholds=TH)
SETTINGS = configmod.parse({"registry": "r.db", "endpoints": [{"name": "m-prod", "model": "m",
                                                               "url": "http://127.0.0.1:9"}]}, None)


def snap(**kw: Any) -> EndpointSnapshot:
    base: dict[str, Any] = dict(endpoint="m-prod", model="m", environment="production", taken_at=1.8e9,
                                duration_ms=3.0, status="UP", reason="ready", ready=True, served_version="2",
                                served_versions=("2",), registry_version="2", metrics_window=5.0)
    base.update(kw)
    return EndpointSnapshot(**base)


def fleet_cells(s: EndpointSnapshot) -> dict[str, Any]:
    screen = FleetScreen()
    screen._layout = COLUMNS_WIDE
    return screen._row_cells(EP, s, now=s.taken_at, interval=2.0)


def findings(s: EndpointSnapshot) -> list[report.Finding]:
    return report.endpoint_findings([report.EndpointReport(EP, s)], {"m": object()})


def gate(s: EndpointSnapshot) -> releases.GateResult:
    return releases.health_gate(SETTINGS, "m", "production", [s])


def around(*limits: float) -> st.SearchStrategy[float]:
    """Values at, just under and just over each limit, and anywhere in between."""
    near = [x for limit in limits for x in (limit, limit * (1 - 1e-9), limit * (1 + 1e-9), limit / 2)]
    return st.one_of(st.sampled_from(near), st.floats(0, max(limits) * 2, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(er=st.one_of(st.none(), around(TH.error_ratio_warn, TH.error_ratio_crit)),
       p95=st.one_of(st.none(), around(TH.p95_ms_warn, TH.p95_ms_crit)),
       status=st.sampled_from(["UP", "DEGRADED"]))
def test_fleet_colour_report_severity_and_release_gate_agree_on_health(er: float | None, p95: float | None,
                                                                        status: str) -> None:
    s = snap(error_ratio=er, latency_p95_ms=p95, status=status)
    er_level, p95_level = judge.error_level(er, TH), judge.latency_level(p95, TH)
    cells = fleet_cells(s)
    if er is not None:
        assert cells["err"].style == judge.STYLE[er_level]
    if p95 is not None:
        assert cells["p95"].style == judge.STYLE[p95_level]
    by_subject = {f.message.split(":", 1)[1].strip().split(" ")[0]: f.severity for f in findings(s)}
    assert by_subject.get("error", judge.OK) == er_level  # "error ratio ..."
    assert by_subject.get("p95", judge.OK) == p95_level
    blocks = judge.CRITICAL in (er_level, p95_level)
    assert gate(s).passed is not blocks, gate(s).detail


@settings(max_examples=200, deadline=None)
@given(psi=st.one_of(st.none(), around(TH.psi_warn, TH.psi_alert)), dataset_drift=st.booleans(),
       n_drifted=st.integers(0, 3))
def test_fleet_colour_and_report_agree_on_drift(psi: float | None, dataset_drift: bool, n_drifted: int) -> None:
    summary = DriftSummary(n_columns=4, n_drifted=n_drifted, dataset_drift=dataset_drift, worst_psi=psi,
                           worst_psi_column="x", computed_at=1.8e9, version="2", window_rows=500)
    s = snap(drift=summary)
    lv = judge.drift_level(summary, TH)
    assert fleet_cells(s)["drift"].style == judge.STYLE[lv]
    drift_findings = [f for f in findings(s) if "drift" in f.message or "PSI" in f.message]
    assert bool(drift_findings) is (lv == judge.WARNING)
    assert all(f.severity == judge.WARNING for f in drift_findings)
    assert gate(s).passed  # drift alone never blocks the health gate (the bake judges it on the new version)


def test_a_value_equal_to_a_threshold_is_over_it_everywhere() -> None:
    at_crit = snap(error_ratio=0.20, status="DEGRADED")
    assert judge.error_level(0.20, TH) == judge.CRITICAL
    assert fleet_cells(at_crit)["err"].style == judge.STYLE[judge.CRITICAL]
    assert [(f.severity, f.message) for f in findings(at_crit)] == [
        ("CRITICAL", "m-prod: error ratio 20.0% reaches 20.0%")]
    g = gate(at_crit)
    assert not g.passed and g.detail == "m-prod: error ratio 20.0% reaches 20.0%"
    status, reason = judge.status(down=None, environment="production", registry_version="2", served_versions=("2",),
                                  error_ratio=0.05, p95_ms=None, th=TH)
    assert (status, reason) == ("DEGRADED", "error ratio 5.0% reaches 5.0%")


def test_the_gate_line_shows_the_values_it_judged_or_what_it_lacks() -> None:
    ok = gate(snap(error_ratio=0.012, latency_p95_ms=85.0))
    assert ok.passed and ok.detail == "m-prod up, errors 1.2% (critical at 20.0%), p95 85 ms (critical at 2000 ms)"
    unknown = gate(snap(metrics_window=None))
    assert unknown.passed and unknown.detail == (
        "m-prod up, error ratio and p95 latency not known (no two metrics readings yet)")
    down = gate(snap(status="DOWN", reason="connection refused"))
    assert not down.passed and down.detail == "m-prod is down: connection refused"


def _col(name: str, psi: float, n: int, status: str = "ok") -> dict[str, Any]:
    return {"column": name, "psi": psi, "n_current": n, "status": status, "drifted": status == "drift"}


def test_worst_psi_counts_judged_columns_with_enough_values_only() -> None:
    result = {"n_columns": 2, "n_drifted": 0, "dataset_drift": False, "drift_share": 0.0, "n_current": 500,
              "columns": [_col("few", 2.11, 12, "low_sample"), _col("small", 0.9, 150), _col("a", 0.12, 500),
                          _col("broken", 5.0, 500, "error")]}
    s = judge.summarize_drift(result, version="2", computed_at=0.0)
    assert (s.worst_psi, s.worst_psi_column) == (0.12, "a")
    assert judge.drift_level(s, TH) == judge.NOTICE
    nothing_judged = judge.summarize_drift({"n_columns": 0, "n_drifted": 0, "columns": [_col("x", 2.11, 12, "low_sample")]},
                                           version="2", computed_at=0.0)
    assert nothing_judged.worst_psi is None and judge.drift_level(nothing_judged, TH) == judge.OK
    assert fleet_cells(snap(drift=nothing_judged))["drift"].style == "dim"  # neutral, never red from 12 values


@pytest.mark.parametrize(("registry", "served", "mismatch"), [
    ("2", ("2",), False), ("2", ("1",), True), ("2", ("1", "2"), False), (None, ("1",), False), ("2", (), False)])
def test_version_mismatch_is_one_rule(registry: str | None, served: tuple[str, ...], mismatch: bool) -> None:
    s = snap(registry_version=registry, served_versions=served,
             served_version=judge.served_version(registry, served))
    assert judge.version_mismatch(registry, served) is mismatch
    assert any(f.severity == "CRITICAL" and "served version" in f.message for f in findings(s)) is mismatch
    assert (fleet_cells(s)["version"].spans[0].style == judge.STYLE[judge.CRITICAL]) is mismatch if served else True



def test_a_bake_counts_prediction_drift_only_when_the_test_and_the_shift_size_agree() -> None:
    """A drifted test with a PSI under the minimum (a chance rejection), or a column not judged,
    does not fail a bake; a drifted test with a PSI that reaches it does."""
    def col(name: str, drifted: bool, psi: float, status: str = "drift", n: int = 440) -> dict[str, Any]:
        return {"column": name, "drifted": drifted, "psi": psi, "status": status, "n_current": n}

    result = {"columns": [col("prediction", True, 0.05), col("probability", True, 0.166),
                          col("score", True, 0.9, status="low_sample", n=12), col("margin", False, 0.4)]}
    assert judge.prediction_drift_columns(result, 0.1) == ["probability"]
    assert judge.prediction_drift_columns(result, 0.2) == []
    assert judge.prediction_drift_columns(result, 0.05) == ["prediction", "probability"]
