"""The demo fleet, as a user (and modeldeck) sees it: a child process on loopback serving OIP v2,
MLServer-named metrics and SageMaker capture, following the registry, stopping cleanly.

One fleet per module (its tests share an xdist group, so they run in order on one worker); the
scenario starts at once (drift and errors from 0 s) with doubled traffic so the story shows
within seconds.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modeldeck.core import judge
from modeldeck.core.config import parse_file
from modeldeck.core.demo.datasets import WORLDS
from modeldeck.core.demo.fleet import READY_PREFIX, DemoFleetProcess, FleetSettings, start_subprocess
from modeldeck.core.demo.models import request_body
from modeldeck.core.registry import Registry

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("demo_fleet")]

ROOT = Path(__file__).resolve().parent.parent
FAST = FleetSettings(drift_at=0.0, errors_at=0.0, error_rate=0.3, seed=7, label_delay=1.0,
                     rates=(("churn-prod", 120.0), ("fraud-prod", 30.0)))


def _env(base: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[var] = str(base / var.lower())
    env["XDG_CACHE_HOME"] = str(cache)
    env["MODELDECK_ACTOR"] = "tester"
    env.pop("MODELDECK_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path):
    wd = tmp_path_factory.mktemp("fleet")
    fp = start_subprocess(wd, ready_timeout=60, settings=FAST, env=_env(wd, shared_cache))  # ready, or it raises
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def settings(fleet: DemoFleetProcess):
    return parse_file(fleet.config_path)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c


def _endpoint(settings, name):
    return next(e for e in settings.endpoints if e.name == name)


def _row_body(model: str, n: int = 3, seed: int = 1, request_id: str | None = None) -> dict:
    w = WORLDS[model]
    cols = w.rows(n, seed)
    return request_body({f: cols[f].tolist() for f in w.features}, w.categorical, request_id)


def _wait(pred, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------------------------


def test_written_config_parses_and_points_at_the_fleet(fleet: DemoFleetProcess, settings) -> None:
    assert fleet.alive()
    assert settings.registry == fleet.registry_path and settings.registry.is_file()
    names = {e.name: e for e in settings.endpoints}
    assert set(names) == {"churn-prod", "churn-staging", "fraud-prod", "demand-prod"}
    assert {(e.model, e.environment) for e in settings.endpoints} == {
        ("churn", "production"), ("churn", "staging"), ("fraud", "production"), ("demand", "production")}
    for e in settings.endpoints:
        assert e.url.startswith("http://127.0.0.1:") and e.metrics_url.endswith("/metrics")
        assert e.metrics_url != e.url + "/metrics"  # a separate metrics port, as MLServer's
        assert e.served_model == e.model and Path(e.capture).is_absolute()
    for model in ("churn", "fraud", "demand"):
        mc = settings.models[model]
        cmd = mc.retrain.command
        assert cmd[0] == sys.executable and Path(cmd[1]).is_absolute() and cmd[1].endswith("train.py")
        assert "{model}" in cmd and str(fleet.registry_path) in cmd
        assert mc.gates and all(g.metric for g in mc.gates)


def test_every_server_is_ready_and_health_is_oip(fleet, settings, client) -> None:
    for e in settings.endpoints:
        for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{e.served_model}/ready"):
            r = client.get(e.url + path)
            assert r.status_code == 200 and r.content == b"", (e.name, path)
        assert client.get(e.url + "/v2/models/nope/ready").status_code == 404
        assert client.get(e.url + "/nope").status_code == 404


def test_metadata_reports_the_registry_version(fleet, settings, client) -> None:
    with Registry(fleet.registry_path) as reg:
        for e in settings.endpoints:
            meta = client.get(f"{e.url}/v2/models/{e.served_model}").json()
            assert set(meta) >= {"name", "versions", "platform", "inputs", "outputs"}
            assert meta["name"] == e.served_model
            assert meta["versions"] == [str(reg.alias(e.model, e.environment))]
            assert [i["name"] for i in meta["inputs"]] == list(WORLDS[e.model].features)
            assert meta["outputs"][0]["name"] == "prediction"
            assert client.get(f"{e.url}/v2/models/{e.served_model}/versions/999").status_code == 404


def test_infer_answers_are_well_formed_oip_v2(settings, client) -> None:
    for e in settings.endpoints:
        version = client.get(f"{e.url}/v2/models/{e.served_model}").json()["versions"][0]
        url = f"{e.url}/v2/models/{e.served_model}/infer"
        for _ in range(10):  # fraud-prod fails 30% of the time by design
            r = client.post(url, json=_row_body(e.model, 3, request_id="req-1"))
            if r.status_code == 200:
                break
            assert r.status_code == 500 and e.name == "fraud-prod"
        body = r.json()
        assert body["model_name"] == e.served_model and body["model_version"] == version
        assert body["id"] == "req-1"
        outs = {o["name"]: o for o in body["outputs"]}
        assert "prediction" in outs and outs["prediction"]["shape"] == [3] and len(outs["prediction"]["data"]) == 3
        if WORLDS[e.model].task == "classification":
            assert all(0.0 <= p <= 1.0 for p in outs["probability"]["data"])
            assert outs["prediction"]["datatype"] == "INT64"
        # the versioned route answers for the served version only
        r = client.post(f"{e.url}/v2/models/{e.served_model}/versions/{version}/infer", json=_row_body(e.model, 1))
        assert r.status_code in (200, 500)
    churn = _endpoint(settings, "churn-prod")
    url = f"{churn.url}/v2/models/churn/infer"
    bad = client.post(url, content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    missing = client.post(url, json={"inputs": [{"name": "age", "datatype": "FP64", "shape": [1], "data": [3]}]})
    assert missing.status_code == 400 and "missing input" in missing.json()["error"]
    assert client.post(f"{churn.url}/v2/models/other/infer", json=_row_body("churn")).status_code == 404
    assert client.get(url).status_code == 405


def _families(client, e) -> dict:
    r = client.get(e.metrics_url)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def test_metrics_parse_with_mlserver_names(settings, client) -> None:
    fraud = _endpoint(settings, "fraud-prod")
    _wait(lambda: sum(s.value for s in _families(client, fraud)["model_infer_request_failure"].samples
                      if s.name.endswith("_total")) >= 20, 20, "fraud failures")
    def paths_of(e):  # type: ignore[no-untyped-def]
        return {s.labels["path"] for s in _families(client, e)["rest_server_request_duration_seconds"].samples}

    for e in settings.endpoints:
        # a ready call of its own to count (the server observes a request's duration after answering it)
        assert client.get(f"{e.url}/v2/models/{e.served_model}/ready").status_code == 200
        _wait(lambda e=e: "/v2/models/{model_name}/ready" in paths_of(e), 5, f"{e.name}'s ready calls in its metrics")
        fams = _families(client, e)
        assert fams["model_infer_request_success"].type == "counter"
        assert fams["model_infer_request_failure"].type == "counter"
        assert fams["rest_server_request_duration_seconds"].type == "histogram"
        assert fams["model_infer_request_duration"].type == "summary"
        ok = [s for s in fams["model_infer_request_success"].samples if s.name.endswith("_total")]
        assert ok and ok[0].labels["model"] == e.model and ok[0].value > 0
        paths = {s.labels["path"] for s in fams["rest_server_request_duration_seconds"].samples}
        assert "/v2/models/{model_name}/infer" in paths and "/v2/models/{model_name}/ready" in paths
    fams = _families(client, fraud)
    good = sum(s.value for s in fams["model_infer_request_success"].samples if s.name.endswith("_total"))
    bad = sum(s.value for s in fams["model_infer_request_failure"].samples if s.name.endswith("_total"))
    assert 0.1 < bad / (good + bad) < 0.5  # the scenario's 30%
    demand = _families(client, _endpoint(settings, "demand-prod"))
    assert sum(s.value for s in demand["model_infer_request_failure"].samples) == 0


def test_capture_is_sagemaker_jsonl_with_ground_truth(settings) -> None:
    def answered_before(e, seconds: float) -> list[str]:  # type: ignore[no-untyped-def]
        lines = [ln for f in sorted(glob.glob(e.capture)) for ln in Path(f).read_text().splitlines()][:-1]
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - seconds))
        return [ln for ln in lines if json.loads(ln)["eventMetadata"]["inferenceTime"][:19] < cutoff]

    for e in settings.endpoints:
        # the labels come FAST.label_delay (1 s) after the answer: look at answers older than 3 s
        old = _wait(lambda e=e: [x for x in [answered_before(e, 3)] if len(x) > 10], 20,
                    f"answers of {e.name} older than 3 s")[0]
        ids = set()
        for ln in old[-200:]:
            rec = json.loads(ln)
            assert rec["eventVersion"] == "0"
            meta = rec["eventMetadata"]
            assert meta["eventId"] and meta["inferenceTime"].endswith("Z")
            ids.add(meta["eventId"])
            cap = rec["captureData"]
            for side, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
                block = cap[side]
                assert block["mode"] == mode and block["encoding"] == "JSON"
                assert block["observedContentType"] == "application/json"
            req = json.loads(cap["endpointInput"]["data"])
            assert [t["name"] for t in req["inputs"]] == list(WORLDS[e.model].features)
            resp = json.loads(cap["endpointOutput"]["data"])
            assert resp["model_name"] == e.model and resp["model_version"]
        truth_glob = e.capture.replace("/captures/", "/ground_truth/").replace("capture-", "labels-")
        labelled = {json.loads(ln)["eventMetadata"]["eventId"]
                    for f in glob.glob(truth_glob) for ln in Path(f).read_text().splitlines() if ln.strip()}
        assert len(ids & labelled) > len(ids) // 2


def test_drifting_endpoint_inputs_shift(settings) -> None:
    churn = _endpoint(settings, "churn-prod")
    from modeldeck.core import capture, drift

    window = _wait(lambda: [w for w in [capture.read_window(churn.capture, 1000)] if len(w) >= 300], 20,
                   "300 captured churn-prod records")[0]
    assert (window["plan"] == "unlimited").mean() > 0.2  # a category the reference never saw
    with Registry(settings.registry) as reg:
        ref = reg.version("churn", reg.alias("churn", "production")).reference_path
    result = drift.result_to_json(drift.compare(drift.load_profile(ref), window))
    assert result["dataset_drift"] is True and result["n_drifted"] >= 4
    charges = next(c for c in result["columns"] if c["column"] == "monthly_charges")
    assert charges["drifted"] and charges["psi"] > 0.25
    demand = _endpoint(settings, "demand-prod")
    with Registry(settings.registry) as reg:
        ref = reg.version("demand", reg.alias("demand", "production")).reference_path
    calm = drift.result_to_json(drift.compare(drift.load_profile(ref), capture.read_window(demand.capture, 1000)))
    assert calm["dataset_drift"] is False


def test_alias_move_makes_the_server_serve_the_new_version(fleet, settings, client) -> None:
    churn = _endpoint(settings, "churn-prod")
    with Registry(fleet.registry_path) as reg:
        before = reg.alias("churn", "production")
        target = 3 if before != 3 else 2
        reg.promote("churn", target, "production", "test: move the alias", expect=before)
    # the server follows within a poll of the registry (1 s in the demo config); 5 s is a liveness bound
    meta = _wait(lambda: (m := client.get(f"{churn.url}/v2/models/churn").json())["versions"] == [str(target)] and m,
                 5, "the server to load the promoted version", 0.05)
    assert meta["versions"] == [str(target)]
    r = client.post(f"{churn.url}/v2/models/churn/infer", json=_row_body("churn"))
    assert r.status_code == 200 and r.json()["model_version"] == str(target)


def test_a_demo_fault_version_fails_half_its_inferences(fleet, settings, client) -> None:
    staging = _endpoint(settings, "churn-staging")
    with Registry(fleet.registry_path) as reg:
        base = reg.version("churn", reg.alias("churn", "staging"))
        bad = reg.register("churn", base.artifact, reference=base.reference_path, params={"demo_fault": "errors"},
                           metrics=dict(base.metrics), reason="test: a faulty version")
        reg.promote("churn", bad.version, "staging", "test: promote a faulty version")
    _wait(lambda: client.get(f"{staging.url}/v2/models/churn").json()["versions"] == [str(bad.version)], 5,
          "the faulty version to load", 0.05)
    codes = [client.post(f"{staging.url}/v2/models/churn/infer", json=_row_body("churn", 1, seed=i)).status_code
             for i in range(60)]
    assert set(codes) <= {200, 500}
    assert 10 <= codes.count(500) <= 50


def test_retraining_on_the_recent_window_passes_the_gates(fleet, settings, client) -> None:
    """The issue-6 story: the config's retrain command trains churn on the drifted window and
    registers a candidate with lineage; its metrics pass the churn gates against production;
    promoted, the server serves it and the live window no longer drifts from its reference."""
    churn = _endpoint(settings, "churn-prod")
    truth = churn.capture.replace("/captures/", "/ground_truth/").replace("capture-", "labels-")
    _wait(lambda: sum(len(Path(f).read_text().splitlines()) for f in glob.glob(truth)) >= 1200, 40,
          "1200 labelled churn requests")
    # the drifted world's labels follow its own relation: the served version's accuracy drops
    before = _wait(lambda: [q for q in [_quality(settings, fleet, churn)] if q.status == "measured"], 30,
                   "200 labelled answers of the production version")[0]
    dropped = [v for v in judge.snapshot_quality_verdicts(before) if v.key == "quality"]
    assert dropped and "accuracy" in dropped[0].text, before.result
    with Registry(fleet.registry_path) as reg:
        job = reg.create_job("churn", trigger="drift", runner="command", reason="test")
    cmd = [a.replace("{model}", "churn") for a in settings.models["churn"].retrain.command]
    env = _env(fleet.workdir, Path(os.environ["XDG_CACHE_HOME"]))
    env["MODELDECK_JOB_ID"] = str(job.id)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    version = int(r.stdout.strip().splitlines()[-1])
    with Registry(fleet.registry_path) as reg:
        v = reg.version("churn", version)
        prod = reg.version("churn", reg.alias("churn", "production"))
        assert v.job_id == job.id and reg.job(job.id).produced_version == version
        assert v.dataset_sha256 and Path(v.dataset_path).is_file() and Path(v.reference_path).is_file()
        assert v.code_version and v.params["source"] == "recent" and v.params["algorithm"] == "gbm"
        for gate in settings.models["churn"].gates:
            value = v.metrics[gate.metric]
            if gate.threshold is not None:
                assert value >= gate.threshold
            if gate.min_absolute_change is not None:
                assert value - prod.metrics[gate.metric] >= gate.min_absolute_change
        reg.approve("churn", version, "test: gates pass")
        reg.promote("churn", version, "production", "test: retrained on drift")
    _wait(lambda: client.get(f"{churn.url}/v2/models/churn").json()["versions"] == [str(version)], 5,
          "the retrained version to load", 0.05)
    # its own answers, once labelled, measure up to what it was registered with on its holdout
    after = _wait(lambda: [q for q in [_quality(settings, fleet, churn)]
                           if q.version == str(version) and q.result.get("rows", 0) >= 300], 30,
                  "300 labelled answers of the retrained version")[0]
    # 300 live rows against a value measured on a 300-row holdout: a WARNING (a drop over 0.05
    # whose interval is below too) is a 95 % test and so a chance event now and then (seen once:
    # 0.827 live against 0.890 registered); a CRITICAL one (twice the drop) is not
    verdicts = judge.snapshot_quality_verdicts(after)
    assert not [v for v in verdicts if v.level == judge.CRITICAL], (verdicts, after.result)
    assert after.result["counts"]["other_versions"] > 0  # the old version's rows are left out
    registered = after.result["registered"]["metrics"]["accuracy"]
    assert after.result["metrics"]["accuracy"]["value"] > registered - 0.1
    # and the quality came back: the retrained version is right more often than the drifted one was
    assert after.result["metrics"]["accuracy"]["value"] > before.result["metrics"]["accuracy"]["value"]
    from modeldeck.core import capture, drift

    with Registry(fleet.registry_path) as reg:
        ref = reg.version("churn", version).reference_path
    window = capture.read_window(churn.capture, 1000)
    result = drift.result_to_json(drift.compare(drift.load_profile(ref), window))
    inputs = [c for c in result["columns"] if c["column"] in WORLDS["churn"].features]
    assert sum(c["drifted"] for c in inputs) <= 1, [c["column"] for c in inputs if c["drifted"]]
    assert result["dataset_drift"] is False


def _quality(settings, fleet, ep):  # type: ignore[no-untyped-def]
    """The endpoint's quality as the poller measures it: judged against the production version."""
    from modeldeck.core import quality

    with Registry(fleet.registry_path) as reg:
        version = str(reg.alias(ep.model, ep.environment))
        mc = quality.rules_for(reg, settings, ep.model)
        registered = quality.registered(reg, ep.model, version)
    return quality.endpoint_quality(ep, mc, registered, version, scan=settings.poll.quality_scan)


def test_sigterm_ends_the_fleet_cleanly(fleet: DemoFleetProcess) -> None:
    assert fleet.alive()
    fleet.proc.send_signal(signal.SIGTERM)
    assert fleet.proc.wait(10) == 0
    log = fleet.log_path.read_text()
    assert "Traceback" not in log


def test_a_second_fleet_reuses_the_registry_and_ctrl_c_ends_it(fleet: DemoFleetProcess, shared_cache: Path,
                                                               tmp_path: Path) -> None:
    """--registry FILE keeps its versions and aliases (nothing is seeded twice); SIGINT exits 0."""
    with Registry(fleet.registry_path) as reg:
        n_versions = len(reg.versions("churn"))
        prod = reg.alias("churn", "production")
    cfg = tmp_path / "again.toml"
    proc = subprocess.Popen([sys.executable, "-P", "-m", "modeldeck", "demo-fleet", "--write-config", str(cfg),
                             "--registry", str(fleet.registry_path), "--rate-scale", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=_env(tmp_path, shared_cache))
    try:
        line = proc.stdout.readline()
        assert line.startswith(READY_PREFIX) and Path(line[len(READY_PREFIX):].strip()) == cfg
        s = parse_file(cfg)
        churn = _endpoint(s, "churn-prod")
        assert httpx.get(f"{churn.url}/v2/models/churn").json()["versions"] == [str(prod)]
        with Registry(fleet.registry_path) as reg:
            assert len(reg.versions("churn")) == n_versions
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err

