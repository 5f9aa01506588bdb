"""The headless report (``modeldeck --report``): exit codes reached for real reasons against real
loopback servers (the demo fleet and tests/faultservers.py), every format parsed back, the
atomic write, cron's bare environment, bounded time with hanging endpoints, stored snapshots,
retraining on drift with its cool-down, and no Textual import."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modeldeck.core import judge, report
from modeldeck.core.config import EndpointConfig, Thresholds
from modeldeck.core.errors import ModeldeckError
from modeldeck.core.registry import Registry
from modeldeck.core.snapshot import DriftSummary, EndpointSnapshot
from modeldeck.tui import cli
from tests.conftest import MODELDECK, run_env
from tests.faultservers import HANG, FaultServer, refused_url, servers

SAMPLE = "0.5"
ENDPOINT_KEYS = ["name", "model", "environment", "status", "reason", "served_version", "registry_version",
                 "request_rate", "error_ratio", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "drift",
                 "quality"]
DRIFT_KEYS = {"dataset_drift", "drift_share", "n_columns", "n_drifted", "columns"}


# ---------------------------------------------------------------------------------------------
# helpers


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def write_config(path: Path, registry: Path, endpoints: Sequence[dict[str, Any]], *, timeout: float = 2.0,
                 models: dict[str, dict[str, Any]] | None = None, drift_window: int = 1000) -> Path:
    lines = [f"registry = {_toml(str(registry))}", "", "[poll]", f"timeout = {timeout!r}",
             f"drift_window = {drift_window}", ""]
    for ep in endpoints:
        lines.append("[[endpoints]]")
        lines += [f"{k} = {_toml(v)}" for k, v in ep.items()]
        lines.append("")
    for name, m in (models or {}).items():
        lines.append(f"[models.{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in m.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def frame(seed: int, n: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(shift, 1.0, n), "b": rng.normal(10 + 3 * shift, 2.0, n),
                         "c": rng.exponential(1.0 + shift, n)})


def make_registry(path: Path, reference: Path | None, *, model: str = "m", versions: int = 2,
                  production: int = 2) -> Path:
    with Registry(path) as reg:
        for v in range(1, versions + 1):
            reg.register(model, f"s3://bucket/{model}/{v}", reference=str(reference) if reference else None,
                         actor="ci")
            reg.approve(model, v, "evaluated", actor="alice")
        reg.promote(model, production, "production", "release", actor="bob")
    return path


class Traffic:
    """Feeds a FaultServer's counters like steady traffic: every 20 ms, ``n`` requests of
    ``seconds`` each, ``failed`` of them failing."""

    def __init__(self, server: FaultServer, *, n: int = 10, failed: int = 0, seconds: float = 0.004) -> None:
        self.server, self.n, self.failed, self.seconds = server, n, failed, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.server.stats.observe(self.n, self.seconds, failed=self.failed)

    def __enter__(self) -> Traffic:
        self.server.stats.observe(self.n, self.seconds, failed=self.failed)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def run_report(config: Path, *args: str, env: dict[str, str] | None = None, sample: str = SAMPLE,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MODELDECK, "--report", "--config", str(config), "--sample", sample, *args],
                          capture_output=True, text=True, env=env or run_env(), cwd=config.parent, timeout=timeout)


def run_many(configs_args: Sequence[tuple[Path, Sequence[str]]], at_once: int = 2
             ) -> list[subprocess.CompletedProcess[str]]:
    """Several reports, ``at_once`` at a time (each is mostly waiting for its sample)."""
    out: list[subprocess.CompletedProcess[str]] = []
    todo = list(configs_args)
    while todo:
        batch, todo = todo[:at_once], todo[at_once:]
        procs = [subprocess.Popen([*MODELDECK, "--report", "--config", str(c), "--sample", SAMPLE, *a],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env(),
                                  cwd=c.parent) for c, a in batch]
        for p in procs:
            so, se = p.communicate(timeout=60)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    return out


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One OIP v2 server serving production's version 2 with steady, error-free traffic, a
    capture window from the reference's own distribution, and a registry saying so."""
    ref = tmp_path / "reference.csv"
    frame(1, 2000).to_csv(ref, index=False)
    capture = tmp_path / "capture.csv"
    frame(2, 600).to_csv(capture, index=False)
    reg = make_registry(tmp_path / "registry.db", ref)
    with FaultServer("m", ["2"], metrics_version="2") as srv, Traffic(srv):
        ep = {"name": "m-prod", "model": "m", "environment": "production", "url": srv.url,
              "capture": str(capture)}
        # a generous poll timeout: it only widens the drift deadline (sample + 2 x timeout + 2 s), which a
        # cold pandas/scipy start on a loaded 2-core machine can exceed; the endpoint answers at once
        cfg = write_config(tmp_path / "modeldeck.toml", reg, [ep], timeout=5.0)
        yield {"config": cfg, "registry": reg, "server": srv, "endpoint": ep, "capture": capture,
               "reference": ref, "dir": tmp_path}


def findings(doc: dict[str, Any], severity: str | None = None) -> list[str]:
    return [f["message"] for f in doc["findings"] if severity is None or f["severity"] == severity]


# ---------------------------------------------------------------------------------------------
# exit codes for real reasons, and every format parsed back


@pytest.mark.live
def test_healthy_endpoint_is_ok_in_every_format(healthy: dict[str, Any]) -> None:
    cfg = healthy["config"]
    plain = {k: v for k, v in healthy["endpoint"].items() if k != "capture"}  # text and markdown: no drift,
    no_drift = write_config(healthy["dir"] / "no-drift.toml", healthy["registry"], [plain])  # a faster run
    res = run_many([(no_drift, ["--format", "text"]), (no_drift, ["--format", "markdown"]),
                    (cfg, ["--format", "json"]), (cfg, ["--format", "prometheus"])])
    for r in res:
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stderr == ""
    text, markdown, js, prom = (r.stdout for r in res)

    # text: the status line first, no colour without a TTY
    assert text.splitlines()[0].startswith("modeldeck OK: no findings; 1 endpoint (1 up), 1 model")
    assert "\x1b[" not in text
    assert re.search(r"^m-prod\s+m\s+production\s+UP\s+2\s+2\s.*\s-$", text, re.M)  # no drift: "-"
    assert "audit chain intact" in text

    # json: exactly the schema's keys and types
    doc = json.loads(js)
    assert list(doc) == ["schema", "generated_at", "status", "exit_code", "endpoints", "models", "findings"]
    assert doc["schema"] == "modeldeck.report/v1" and doc["status"] == "OK" and doc["exit_code"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["generated_at"])
    assert doc["findings"] == []
    (ep,) = doc["endpoints"]
    assert list(ep) == ENDPOINT_KEYS
    assert ep["status"] == "UP" and ep["served_version"] == "2" and ep["registry_version"] == "2"
    for k in ("request_rate", "error_ratio", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert isinstance(ep[k], float), k
    assert ep["request_rate"] > 100  # 10 requests every 20 ms
    assert ep["error_ratio"] == 0.0
    assert set(ep["drift"]) == DRIFT_KEYS and ep["drift"]["dataset_drift"] is False
    assert ep["drift"]["n_columns"] == 3
    assert {c["column"] for c in ep["drift"]["columns"]} == {"a", "b", "c"}
    (model,) = doc["models"]
    assert model == {"name": "m", "latest_version": 2, "environments": {"production": 2},
                     "pending_approval": [], "jobs": [], "retrain": None}

    # markdown: tables of a constant width with a separator row
    tables = _md_tables(markdown)
    assert markdown.startswith("## modeldeck report: OK")
    assert [len(t[0]) for t in tables] == [13, 5]  # endpoints, models (no findings table)
    assert "No findings." in markdown
    for t in tables:
        assert all(len(row) == len(t[0]) for row in t)
    assert tables[0][1][:6] == ["m-prod", "m", "production", "UP", "2", "2"] and tables[0][1][-1] == "-"

    # prometheus: prometheus-client's parser reads it back
    fams = _prom(prom)
    assert fams["modeldeck_report_status"] == [({}, 0.0)]
    labels = {"endpoint": "m-prod", "model": "m", "environment": "production"}
    assert fams["modeldeck_endpoint_up"] == [(labels, 1.0)]
    assert fams["modeldeck_version_mismatch"] == [(labels, 0.0)]
    assert fams["modeldeck_error_ratio"] == [(labels, 0.0)]
    assert {s[0]["quantile"] for s in fams["modeldeck_latency_seconds"]} == {"0.5", "0.95", "0.99"}
    assert {s[0]["column"] for s in fams["modeldeck_column_psi"]} == {"a", "b", "c"}
    assert fams["modeldeck_dataset_drift"] == [(labels, 0.0)]
    _promtool(prom, healthy["dir"])

    # each run stored its snapshot, so the TUI shows what cron saw
    with Registry(healthy["registry"]) as reg:
        rows = reg.snapshots("m-prod")
    assert len(rows) == 4 and {r["_source"] for r in rows} == {"report"}
    snap = EndpointSnapshot.from_dict(rows[-1])
    assert snap.status == "UP" and snap.served_version == "2" and snap.request_rate
    assert snap.drift is not None and snap.drift.n_columns == 3 and snap.drift.version == "2"


def _md_tables(text: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if current is None:
                current = []
                tables.append(current)
            if all(set(c) == {"-"} for c in cells):
                assert len(current) == 1, "the separator follows the header"
                continue
            current.append(cells)
        else:
            current = None
    return tables


def _prom(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, []).extend((dict(s.labels), s.value) for s in fam.samples)
    return out


def _promtool(text: str, where: Path) -> None:
    """``promtool check metrics`` when promtool is installed (Debian: apt install prometheus)."""
    tool = shutil.which("promtool")
    if tool is None:
        return
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.live
@pytest.mark.parametrize("failed, severity, code", [(1, "WARNING", 1), (3, "CRITICAL", 2)])
def test_error_ratio_is_a_warning_then_critical(tmp_path: Path, failed: int, severity: str, code: int) -> None:
    reg = make_registry(tmp_path / "registry.db", None)
    with FaultServer("m", ["2"], metrics_version="2") as srv, Traffic(srv, failed=failed):
        cfg = write_config(tmp_path / "c.toml", reg, [{"name": "m-prod", "model": "m", "url": srv.url}])
        r = run_report(cfg, "--format", "json")
    assert r.returncode == code, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == severity
    (msg,) = findings(doc)
    m = re.fullmatch(r"m-prod: error ratio (\d+\.\d)% over (5\.0|20\.0)%", msg)
    assert m and float(m.group(1)) == pytest.approx(failed * 10, abs=1.5), msg
    assert m.group(2) == ("5.0" if code == 1 else "20.0")
    assert doc["endpoints"][0]["error_ratio"] == pytest.approx(failed / 10, abs=0.02)


@pytest.mark.live
def test_down_endpoint_and_version_mismatch_are_critical(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "registry.db", None)
    with FaultServer("m", ["1"], metrics_version="1") as old:
        eps = [{"name": "m-prod", "model": "m", "url": old.url},
               {"name": "m-gone", "model": "m", "url": refused_url()}]
        cfg = write_config(tmp_path / "c.toml", reg, eps)
        r = run_report(cfg)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "modeldeck CRITICAL: 2 critical; 2 endpoints (0 up, 1 down), 1 model"
    assert lines[1].split() == ["CRITICAL", "m-prod:", "served", "version", "1", "but", "production", "is", "2"]
    assert re.match(r"CRITICAL\s+m-gone: down: connection refused$", lines[2])


@pytest.mark.live
def test_broken_audit_chain_is_critical(healthy: dict[str, Any]) -> None:
    with sqlite3.connect(healthy["registry"]) as c:
        c.execute("UPDATE audit SET reason = 'nothing to see' WHERE id = 2")
    ep = {k: v for k, v in healthy["endpoint"].items() if k != "capture"}  # no drift: a faster run
    r = run_report(write_config(healthy["config"], healthy["registry"], [ep]), "--format", "json")
    assert r.returncode == 2, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "CRITICAL"
    assert findings(doc, "CRITICAL") == ["registry: audit chain BROKEN at entry 2: its contents do not match "
                                         "its hash (the entry was edited)"]


@pytest.mark.live
def test_dataset_drift_is_a_warning_and_retrains_once_per_cooldown(healthy: dict[str, Any]) -> None:
    frame(3, 600, shift=1.5).to_csv(healthy["capture"], index=False)
    cfg = write_config(healthy["config"], healthy["registry"], [healthy["endpoint"]], timeout=5.0,
                       models={"m": {"retrain": {"command": [sys.executable, "-c", "pass"]}}})
    first = run_report(cfg, "--format", "json", "--retrain-on-drift")
    assert first.returncode == 1, first.stdout + first.stderr
    doc = json.loads(first.stdout)
    msgs = findings(doc, "WARNING")
    assert msgs[0] == "m-prod: dataset drift: 3 of 3 columns drifted (100% >= 50%): a, b, c"
    assert msgs[1].startswith("m-prod: PSI >= 0.25 in ")
    drift = doc["endpoints"][0]["drift"]
    assert drift["dataset_drift"] is True and drift["n_drifted"] == 3
    retrain = doc["models"][0]["retrain"]
    assert retrain["action"] == "started" and isinstance(retrain["job"], int)

    second = run_report(cfg, "--format", "json", "--retrain-on-drift")
    assert second.returncode == 1, second.stdout + second.stderr
    assert json.loads(second.stdout)["models"][0]["retrain"]["action"] == "cooling_down"
    with Registry(healthy["registry"]) as reg:
        jobs = reg.jobs("m")
        assert [(j.id, j.trigger) for j in jobs] == [(retrain["job"], "drift")]
        assert "dataset drift on m-prod (3 of 3 columns)" in jobs[0].reason
        deadline = time.monotonic() + 20  # let the detached runner finish before the folder goes
        while reg.job(jobs[0].id).status not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)


def _labelled(healthy: dict[str, Any], *, accuracy: float, n: int = 600) -> dict[str, Any]:
    """The healthy endpoint's capture with ids and predictions (``accuracy`` of them right) and
    its labels (a plain CSV joined on ``request_id``); version 2 registered with AUC 0.97 and
    accuracy 0.95 on its holdout."""
    rng = np.random.default_rng(5)
    cap = frame(2, n)
    y = (rng.random(n) < 0.4).astype(int)
    right = rng.random(n) < accuracy
    cap["request_id"] = [f"r{i}" for i in range(n)]
    cap["prediction"] = np.where(right, y, 1 - y)
    cap["probability"] = np.clip(np.where(cap["prediction"] == 1, 0.75, 0.25) + rng.normal(0, 0.1, n), 0, 1)
    cap.to_csv(healthy["capture"], index=False)
    labels = healthy["dir"] / "labels.csv"
    pd.DataFrame({"request_id": cap["request_id"], "label": y}).to_csv(labels, index=False)
    holdout = healthy["dir"] / "holdout.csv"
    holdout.write_text("a,label\n1,0\n")
    with Registry(healthy["registry"]) as reg:
        reg.record_evaluation("m", 2, {"auc": 0.97, "accuracy": 0.95}, dataset_sha256="ab" * 32, dataset_rows=300,
                              dataset_path=str(holdout), source="evaluate", reason="holdout")
    return {**healthy["endpoint"], "labels": str(labels), "label_id_column": "request_id"}


@pytest.mark.live
def test_quality_drop_is_a_finding_a_gauge_and_retrains(healthy: dict[str, Any]) -> None:
    ep = _labelled(healthy, accuracy=0.7)
    cfg = write_config(healthy["config"], healthy["registry"], [ep], timeout=5.0,
                       models={"m": {"retrain": {"command": [sys.executable, "-c", "pass"]}}})
    js, prom = run_many([(cfg, ["--format", "json", "--retrain-on", "drift,quality"]),
                         (cfg, ["--format", "prometheus"])])
    assert js.returncode == 2, js.stdout + js.stderr
    doc = json.loads(js.stdout)
    crit = findings(doc, "CRITICAL")
    assert len(crit) >= 1 and crit[0].startswith("m-prod: accuracy 0.") and "below 0.950, version 2's registered " \
        "value on abababa… (300 rows)" in crit[0]
    q = doc["endpoints"][0]["quality"]
    assert q["status"] == "measured" and q["rows"] == 600 and q["registered"]["metrics"] == {"roc_auc": 0.97,
                                                                                          "accuracy": 0.95}
    assert q["level"] == "CRITICAL" and q["counts"]["labelled"] == 600
    # the same object `modeldeck quality --format json` prints for the same files and model
    cli = subprocess.run([*MODELDECK, "quality", ep["capture"], ep["labels"], "--label-id-column", "request_id",
                          "--model", "m", "--format", "json", "--config", str(cfg)], capture_output=True, text=True,
                         env=run_env(), timeout=60)
    assert cli.returncode == 1, cli.stderr
    assert {k: v for k, v in json.loads(cli.stdout).items() if k != "series"} == \
        {k: v for k, v in q.items() if k != "series"}
    retrain = doc["models"][0]["retrain"]
    assert retrain["action"] == "started" and retrain["trigger"] == "quality"
    assert prom.returncode == 2
    assert re.search(r'^modeldeck_endpoint_quality\{endpoint="m-prod",model="m",environment="production",'
                     r'metric="accuracy"\} 0\.[67]\d*$', prom.stdout, re.M)
    assert 'modeldeck_endpoint_quality_registered{endpoint="m-prod",model="m",environment="production",' \
           'metric="roc_auc"} 0.97' in prom.stdout
    assert re.search(r'^modeldeck_endpoint_quality_rows\{[^}]*\} 600$', prom.stdout, re.M)
    _promtool(prom.stdout, healthy["dir"])
    second = run_report(cfg, "--format", "json", "--retrain-on-drift", "--retrain-on", "quality")
    assert json.loads(second.stdout)["models"][0]["retrain"]["action"] == "cooling_down"
    with Registry(healthy["registry"]) as reg:
        jobs = reg.jobs("m")
        assert [(j.id, j.trigger) for j in jobs] == [(retrain["job"], "quality")]
        assert "quality drop on m-prod: accuracy" in jobs[0].reason
        deadline = time.monotonic() + 20  # let the detached runner finish before the folder goes
        while reg.job(jobs[0].id).status not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.mark.live
def test_skipped_label_files_are_counted_in_the_reports_quality(healthy: dict[str, Any]) -> None:
    from tests.test_quality import _skip_world

    cap, gt = _skip_world(healthy["dir"])
    ep = {**healthy["endpoint"], "capture": cap, "labels": gt}
    cfg = write_config(healthy["config"], healthy["registry"], [ep], timeout=5.0)
    r = run_report(cfg, "--format", "json")
    q = json.loads(r.stdout)["endpoints"][0]["quality"]
    assert q["counts"]["label_files_skipped"] == 2, r.stdout + r.stderr
    assert q["counts"]["predictions_without_label"] == 20 and q["counts"]["labelled"] == 280


@pytest.mark.live
def test_quality_fine_or_not_enough_labels_is_no_finding(healthy: dict[str, Any]) -> None:
    ep = _labelled(healthy, accuracy=0.95)
    few = {**ep, "name": "m-few", "labels": str(healthy["dir"] / "few.csv")}
    pd.read_csv(ep["labels"]).head(50).to_csv(few["labels"], index=False)
    cfg = write_config(healthy["config"], healthy["registry"], [ep, few], timeout=5.0)
    r = run_report(cfg, "--format", "json")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["findings"] == [], r.stdout + r.stderr
    fine, short = (e["quality"] for e in doc["endpoints"])
    assert fine["status"] == "measured" and fine["level"] == "OK" and fine["verdicts"] == []
    assert short["status"] == "not_enough_labels" and short["rows"] == 50 and short["counts"]["labelled"] == 50
    text = run_report(cfg)
    assert re.search(r"^m-prod\s.*\sacc \.9\d\d [▲▽=]$", text.stdout, re.M) or \
        re.search(r"^m-prod\s.*\sauc \.\d{3} [▲▽=]$", text.stdout, re.M), text.stdout
    assert re.search(r"^m-few\s.*\sn=50/200$", text.stdout, re.M), text.stdout


def test_retrain_on_takes_drift_and_quality() -> None:
    assert report.retrain_triggers("drift,quality") == ("drift", "quality")
    assert report.retrain_triggers(" quality ", drift_flag=True) == ("drift", "quality")
    assert report.retrain_triggers(None) == ()
    with pytest.raises(ModeldeckError, match="'errors' is not a trigger"):
        report.retrain_triggers("drift,errors")


@pytest.mark.live
def test_could_not_run_is_unknown(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[poll]\ntimeout = 'soon'\n")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 10)
    cfg_garbage = write_config(tmp_path / "garbage.toml", garbage, [])
    cfg_missing = write_config(tmp_path / "missing.toml", tmp_path / "nowhere" / "registry.db", [])
    cfg_fine = write_config(tmp_path / "fine.toml", make_registry(tmp_path / "registry.db", None), [])
    prom = tmp_path / "modeldeck.prom"
    res = run_many([(bad, []), (cfg_garbage, ["--format", "prometheus", "--output", str(prom)]),
                    (cfg_missing, ["--format", "json"]),
                    (cfg_fine, ["--output", str(tmp_path / "no" / "such" / "folder" / "r.txt")])], at_once=4)
    for r in res:
        assert r.returncode == 3, r.stdout + r.stderr
        assert r.stdout == ""
        assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("modeldeck: "), r.stderr
    assert "poll.timeout: must be a number" in res[0].stderr
    assert "not a modeldeck registry" in res[1].stderr
    assert "no registry here" in res[2].stderr
    assert res[3].stderr.startswith("modeldeck: cannot write ") and "No such file or directory" in res[3].stderr
    # a textfile collector does not keep serving the last good status
    fams = _prom(prom.read_text())
    assert fams["modeldeck_report_status"] == [({}, 3.0)]
    _promtool(prom.read_text(), tmp_path)


# ---------------------------------------------------------------------------------------------
# the demo fleet: real model servers, real traffic, drift on churn from the start


DEMO_ENDPOINTS = ("fraud-prod", "demand-prod", "churn-prod")


@pytest.fixture(scope="module")
def demo_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from modeldeck.core.demo.fleet import FleetSettings, start_subprocess

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    wd = tmp_path_factory.mktemp("demo-fleet")
    fleet = start_subprocess(wd, settings=FleetSettings(drift_at=0.0, errors_at=-1.0), ready_timeout=90)
    try:
        data = tomllib.loads(fleet.config_path.read_text())
        by_name = {e["name"]: e for e in data["endpoints"]}
        # wait until every capture has records (a drift window needs some)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = [sum(len(Path(p).read_bytes().splitlines()) for p in glob.glob(by_name[n]["capture"]))
                      for n in DEMO_ENDPOINTS]
            if min(counts) >= 40:
                break
            time.sleep(0.2)
        yield {"dir": wd, "registry": Path(data["registry"]), "endpoints": by_name}
    finally:
        fleet.stop()


def _demo_config(fleet: dict[str, Any], path: Path, names: Sequence[str]) -> Path:
    return write_config(path, fleet["registry"], [fleet["endpoints"][n] for n in names], timeout=5.0)


@pytest.mark.live
@pytest.mark.xdist_group("report-demo-fleet")
def test_demo_fleet_healthy_and_drifting(demo_fleet: dict[str, Any], tmp_path: Path) -> None:
    healthy = _demo_config(demo_fleet, tmp_path / "healthy.toml", ["fraud-prod", "demand-prod"])
    drifting = _demo_config(demo_fleet, tmp_path / "drifting.toml", ["churn-prod"])
    ok, warn = run_many([(healthy, ["--format", "json"]), (drifting, ["--format", "json"])])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = json.loads(ok.stdout)
    assert [e["status"] for e in doc["endpoints"]] == ["UP", "UP"]
    for e in doc["endpoints"]:
        assert e["served_version"] == e["registry_version"] and e["served_version"] is not None
        assert e["request_rate"] is not None and set(e["drift"]) == DRIFT_KEYS
    assert {m["name"] for m in doc["models"]} == {"churn", "fraud", "demand"}
    doc = json.loads(warn.stdout)
    assert any(m.startswith("churn-prod: dataset drift: ") for m in findings(doc, "WARNING")), doc["findings"]
    assert doc["endpoints"][0]["drift"]["dataset_drift"] is True
    # its labels follow the drifted relation: once 200 are in, accuracy is judged (and drops)
    q = doc["endpoints"][0]["quality"]
    assert q["status"] in ("measured", "not_enough_labels") and q["registered"]["metrics"]["accuracy"] > 0.8
    assert warn.returncode == (2 if findings(doc, "CRITICAL") else 1), warn.stdout + warn.stderr


# ---------------------------------------------------------------------------------------------
# behaviour that must hold


@pytest.mark.live
def test_a_third_of_fifty_endpoints_hanging_are_timed_out_the_rest_up(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "registry.db", None)
    timeout, sample = 1.0, 0.5
    with servers(50, model="m", versions=["2"], metrics_version="2") as srvs:
        hanging = set()
        for i, s in enumerate(srvs):
            if i % 3 == 0:
                s.default = HANG
                hanging.add(f"ep{i:02d}")
        eps = [{"name": f"ep{i:02d}", "model": "m", "url": s.url} for i, s in enumerate(srvs)]
        cfg = write_config(tmp_path / "c.toml", reg, eps, timeout=timeout)
        # the time it takes is a figure of benchmarks/bench_report.py, not an assertion here
        r = run_report(cfg, "--format", "json", sample=str(sample))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr
    doc = json.loads(r.stdout)
    down = {f["subject"] for f in doc["findings"] if f["severity"] == "CRITICAL" and "timed out" in f["message"]}
    assert down == hanging and len(hanging) == 17
    assert {e["name"] for e in doc["endpoints"] if e["status"] == "UP"} == {e["name"] for e in eps} - hanging


@pytest.mark.live
def test_runs_under_crons_bare_environment_without_textual(healthy: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out" / "report.txt"
    out.parent.mkdir()
    code = ("import sys\nfrom modeldeck.tui import cli\n"
            "rc = cli.main(sys.argv[1:])\n"
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "print('TEXTUAL:' + ','.join(bad) if bad else 'clean', file=sys.stderr)\n"
            "sys.exit(rc)\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh", "LOGNAME": "cron"}  # cron's, no more
    r = subprocess.run([sys.executable, "-c", code, "--report", "--config", str(healthy["config"]),
                        "--sample", SAMPLE, "--output", str(out)], capture_output=True, text=True, env=env,
                       cwd="/", stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr.strip() == "clean"
    assert out.read_text().startswith("modeldeck OK: ")
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.txt"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# the atomic write


def test_write_atomic_replaces_by_rename_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "modeldeck.prom"
    report.write_atomic(target, "first\n")
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    os.chmod(target, 0o640)
    before = target.stat().st_ino
    with open(target) as reader:  # a reader that opened the old file keeps reading it whole
        report.write_atomic(target, "second\n")
        assert reader.read() == "first\n"
    assert target.read_text() == "second\n"
    assert target.stat().st_ino != before  # replaced by rename, never rewritten in place
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)
    assert [p.name for p in tmp_path.iterdir()] == ["modeldeck.prom"]


def test_write_atomic_cleans_up_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "modeldeck.prom"
    target.write_text("old\n")

    def boom(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report.os, "fsync", boom)
    with pytest.raises(OSError):
        report.write_atomic(target, "new\n" * 1000)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["modeldeck.prom"]


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    versions = [json.dumps({"n": i, "pad": "x" * 200_000}) for i in range(2)]
    report.write_atomic(target, versions[0])
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(target.read_text())

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(60):
            report.write_atomic(target, versions[i % 2])
    finally:
        stop.set()
        t.join()
    assert seen and all(s in versions for s in seen)


# ---------------------------------------------------------------------------------------------
# findings and rendering, without a network


def _snap(**kw: Any) -> EndpointSnapshot:
    base = dict(endpoint="ep", model="m", environment="production", taken_at=1.8e9, duration_ms=3.0, status="UP",
                reason="ready", ready=True, served_version="2", served_versions=("2",), registry_version="2")
    base.update(kw)
    return EndpointSnapshot(**base)


def _ep(snap: EndpointSnapshot, th: Thresholds | None = None, **kw: Any) -> report.EndpointReport:
    cfg = EndpointConfig(name=snap.endpoint, model=snap.model, url="http://127.0.0.1:1",
                         environment=snap.environment, thresholds=th or Thresholds())
    return report.EndpointReport(cfg, snap, **kw)


def _judge(*eps: report.EndpointReport) -> list[tuple[str, str]]:
    found = report.sort_findings(report.endpoint_findings(eps, {"m": object()}))
    return [(f.severity, f.message) for f in found]


def test_findings_follow_the_thresholds() -> None:
    assert _judge(_ep(_snap())) == []
    assert _judge(_ep(_snap(latency_p95_ms=600.0))) == [("WARNING", "ep: p95 latency 600 ms over 500 ms")]
    assert _judge(_ep(_snap(latency_p95_ms=2500.0))) == [("CRITICAL", "ep: p95 latency 2500 ms over 2000 ms")]
    strict = Thresholds(error_ratio_warn=0.01, error_ratio_crit=0.02)
    assert _judge(_ep(_snap(error_ratio=0.015), strict)) == [("WARNING", "ep: error ratio 1.5% over 1.0%")]
    assert _judge(_ep(_snap(registry_version=None))) == [
        ("WARNING", "ep: the registry has no production version of m")]
    assert _judge(_ep(_snap(served_versions=("3", "4"), served_version="4"))) == [
        ("CRITICAL", "ep: served versions 3, 4 but production is 2")]
    assert _judge(_ep(_snap(status="DEGRADED", reason="metrics: timed out after 1 s"))) == [
        ("WARNING", "ep: degraded: metrics: timed out after 1 s")]
    assert _judge(_ep(_snap(status="DOWN", reason="connection refused", ready=None))) == [
        ("CRITICAL", "ep: down: connection refused")]
    assert _judge(_ep(_snap(), drift_error="capture: no files match x/*.jsonl")) == [
        ("WARNING", "ep: drift not checked: capture: no files match x/*.jsonl")]
    found = report.endpoint_findings([_ep(_snap(model="other"))], {"m": object()})
    assert [f.message for f in found] == ["ep: model other is not in the registry"]


def _col(name: str, psi: float, n: int = 1000, status: str = "ok", miss: tuple[float, float] = (0.0, 0.0)
         ) -> dict[str, Any]:
    return {"column": name, "psi": psi, "n_current": n, "status": status, "drifted": status == "drift",
            "missing_share_reference": miss[0], "missing_share_current": miss[1]}


def test_drift_findings_judge_only_compared_columns() -> None:
    th = Thresholds()
    data = {"dataset_drift": False, "drift_share": 0.0, "n_columns": 3, "n_drifted": 0,
            "columns": [_col("a", 0.3), _col("b", 0.9, n=20, status="low_sample"), _col("c", 0.8, n=150),
                        _col("d", 0.0, miss=(0.01, 0.2))]}
    assert [v.text for v in judge.drift_verdicts(data, th)] == ["PSI >= 0.25 in a (0.30)",
                                               "missing values up by >= 10 points in d (1.0% -> 20.0%)"]
    data = {"dataset_drift": True, "drift_share": 2 / 3, "n_columns": 3, "n_drifted": 2,
            "columns": [_col("a", 0.01, status="drift"), _col("b", 0.02, status="drift"), _col("c", 0.0)]}
    assert [v.text for v in judge.drift_verdicts(data, th)] == ["dataset drift: 2 of 3 columns drifted (67% >= 50%): a, b"]


def _report_with(names: Sequence[str]) -> report.Report:
    eps = []
    for n in names:
        drift = {"dataset_drift": False, "drift_share": 0.0, "n_columns": 1, "n_drifted": 0,
                 "columns": [_col(n, 0.05)]}
        snap = _snap(endpoint=n, model=n, environment=n, request_rate=1.5, error_ratio=0.0, latency_p50_ms=2.0,
                     latency_p95_ms=4.0, latency_p99_ms=8.0, reason="a | b `c` <d>",
                     drift=DriftSummary(n_columns=1, worst_psi=0.05, worst_psi_column=n))
        eps.append(_ep(snap, drift=drift))
    return report.Report(generated_at=1.8e9, sample=1.0, endpoints=eps, audit_ok=True, audit_text="audit ok",
                         findings=[report.Finding("WARNING", names[0], f"{names[0]}: odd | name")])


@pytest.mark.live
def test_prometheus_labels_are_escaped_and_parse_back(tmp_path: Path) -> None:
    weird = ['quote"d', "back\\slash", "new\nline", "plain"]
    text = report.render_prometheus(_report_with(weird))
    fams = _prom(text)
    assert {s[0]["endpoint"] for s in fams["modeldeck_endpoint_up"]} == set(weird)
    assert {s[0]["column"] for s in fams["modeldeck_column_psi"]} == set(weird)
    assert fams["modeldeck_report_status"] == [({}, 1.0)]
    assert ({"quantile": "0.99", "endpoint": "plain", "model": "plain", "environment": "plain"}, 0.008) in \
        fams["modeldeck_latency_seconds"]
    for name in fams:
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text
    _promtool(text, tmp_path)


def test_markdown_escapes_cells_and_text_colours_only_on_request() -> None:
    r = _report_with(["a|b", "plain"])
    md = report.render_markdown(r)
    tables = _md_tables(md)
    assert [len(t[0]) for t in tables] == [3, 13]
    for t in tables:
        assert all(len(row) == len(t[0]) for row in t)
    assert "a\\|b: odd \\| name" in md
    plain = report.render_text(r)
    assert "\x1b[" not in plain and plain.startswith("modeldeck WARNING: 1 warning; 2 endpoints (2 up), 0 models")
    assert "\x1b[33mWARNING\x1b[0m" in report.render_text(r, color=True)


class _Tty:
    def isatty(self) -> bool:
        return True


def test_colour_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli._wants_color(_Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli._wants_color(_Tty())  # type: ignore[arg-type]
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not cli._wants_color(_Tty())  # type: ignore[arg-type]


def test_worst_and_exit_codes() -> None:
    assert report.worst([]) == "OK"
    assert report.worst(["WARNING", "CRITICAL", "OK"]) == "CRITICAL"
    assert [report.EXIT_CODES[s] for s in report.SEVERITIES] == [0, 1, 2, 3]


def test_json_text_is_what_json_dumps_writes_ascii_only() -> None:
    # the report's JSON is rendered by orjson and escaped to ASCII as json.dumps does: a hostile
    # name's bidi override, C1 CSI or escape never reaches a terminal raw
    doc = {"endpoints": [{"name": "evil\u202e\x9b[31m\x1b]0;x\x07😀é", "rate": 0.30000000000000004, "n": 10 ** 15,
                          "none": None, "ok": True, "list": [], "map": {}, "neg": -0.0}], "status": "OK"}
    text = report.json_text(doc)
    assert text.isascii() and "\\u202e" in text and "\\u009b" in text and "\\ud83d\\ude00" in text
    assert json.loads(text) == doc
    assert text == json.dumps(doc, indent=2)
