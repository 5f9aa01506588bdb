"""Releases on real parts: SQLite registry files, real subprocesses for deploy hooks, real
loopback HTTP servers for webhooks and for OIP model servers polled by the real Poller."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modeldeck.core import config as configmod
from modeldeck.core import releases
from modeldeck.core.config import GateConfig
from modeldeck.core.errors import ConflictError, GateError, NotFoundError, RegistryError
from modeldeck.core.registry import Registry
from modeldeck.core.snapshot import EndpointSnapshot
from modeldeck.tui import cli
from tests.conftest import MODELDECK, ROOT, run_env
from tests.hookservers import FakeModelServer, WebhookReceiver

PY = sys.executable
DEPLOY_SCRIPT = ("import json, sys, urllib.request\n"
                 "version, url = sys.argv[1], sys.argv[2]\n"
                 "print('deploying version', version, flush=True)\n"
                 "req = urllib.request.Request(url + '/control', data=json.dumps({'version': version}).encode(),\n"
                 "                             headers={'Content-Type': 'application/json'})\n"
                 "urllib.request.urlopen(req, timeout=5).read()\n"
                 "print('deployed', version)\n")


def settings_for(tmp_path: Path, registry: Path, *, model: dict[str, Any] | None = None,
                 endpoints: list[dict[str, Any]] | None = None, **top: Any) -> configmod.Settings:
    data: dict[str, Any] = {"registry": str(registry), "poll": {"interval": 0.2, "timeout": 1.0},
                            "report": {"sample": 0.5}, **top}
    if model is not None:
        data["models"] = {"churn": model}
    if endpoints is not None:
        data["endpoints"] = endpoints
    return configmod.parse(data, tmp_path / "modeldeck.toml")


HOLDOUT = "93ddf3b" + "0" * 57  # the SHA-256 of the holdout both versions were measured on


def champion_and_candidate(registry: Path, *, cand_auc: float = 0.85, approve: bool = True) -> None:
    with Registry(registry) as reg:
        reg.register("churn", "s3://m/1", metrics={"auc": 0.91, "latency": 20}, eval_sha256=HOLDOUT, eval_rows=300)
        reg.approve("churn", 1, "offline eval")
        reg.promote("churn", 1, "production", "first release")
        reg.register("churn", "s3://m/2", metrics={"auc": cand_auc}, eval_sha256=HOLDOUT, eval_rows=300)
        if approve:
            reg.approve("churn", 2, "offline eval")


def endpoint(server: FakeModelServer, env: str = "production") -> dict[str, Any]:
    return {"name": f"churn-{env}", "model": "churn", "environment": env, "url": server.url,
            "metrics_profile": "triton"}


# ---------------------------------------------------------------------------------------------
# gates


@pytest.mark.parametrize(("gate", "cand", "champ", "passed"), [
    # MLflow's examples: higher is better
    (GateConfig("auc", threshold=0.8), {"auc": 0.85}, None, True),
    (GateConfig("auc", threshold=0.9), {"auc": 0.85}, None, False),
    (GateConfig("auc", min_absolute_change=0.01), {"auc": 0.92}, {"auc": 0.91}, True),
    (GateConfig("auc", min_absolute_change=0.02), {"auc": 0.92}, {"auc": 0.91}, False),
    (GateConfig("auc", min_absolute_change=-0.01), {"auc": 0.905}, {"auc": 0.91}, True),  # allowed dip
    (GateConfig("auc", min_absolute_change=-0.01), {"auc": 0.85}, {"auc": 0.91}, False),
    (GateConfig("auc", min_relative_change=0.05), {"auc": 0.84}, {"auc": 0.8}, True),
    (GateConfig("auc", min_relative_change=0.05), {"auc": 0.83}, {"auc": 0.8}, False),
    # lower is better: mirrored
    (GateConfig("rmse", threshold=2.0, greater_is_better=False), {"rmse": 1.5}, None, True),
    (GateConfig("rmse", threshold=2.0, greater_is_better=False), {"rmse": 2.5}, None, False),
    (GateConfig("rmse", min_absolute_change=0.1, greater_is_better=False), {"rmse": 1.8}, {"rmse": 2.0}, True),
    (GateConfig("rmse", min_absolute_change=0.1, greater_is_better=False), {"rmse": 1.95}, {"rmse": 2.0}, False),
    (GateConfig("rmse", min_relative_change=0.1, greater_is_better=False), {"rmse": 1.8}, {"rmse": 2.0}, True),
    (GateConfig("rmse", min_relative_change=0.1, greater_is_better=False), {"rmse": 1.9}, {"rmse": 2.0}, False),
    # missing metric fails; no champion or a champion without it passes with a note
    (GateConfig("auc", threshold=0.5), {}, None, False),
    (GateConfig("auc", min_absolute_change=0.01), {"auc": 0.7}, None, True),
    (GateConfig("auc", min_absolute_change=0.01), {"auc": 0.7}, {"f1": 0.9}, True),
    # a champion of 0: strictly better is enough (MLflow's fallback)
    (GateConfig("gain", min_relative_change=0.5), {"gain": 0.1}, {"gain": 0}, True),
    (GateConfig("gain", min_relative_change=0.5), {"gain": 0}, {"gain": 0}, False),
])
def test_metric_gate_follows_mlflow_metric_threshold(gate: GateConfig, cand: dict[str, float],
                                                      champ: dict[str, float] | None, passed: bool) -> None:
    r = releases.evaluate_metric_gate(gate, cand, champ, champion_version=1 if champ is not None else None)
    assert r.passed is passed, r.detail
    assert r.name == f"metric:{gate.metric}" and r.detail.startswith(gate.metric)
    if champ is None and cand:
        assert r.data["champion"] is None


@pytest.mark.live
def test_worse_candidate_is_blocked_and_a_forced_release_says_so(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path, cand_auc=0.85)
    s = settings_for(tmp_path, registry_path, model={"gates": [{"metric": "auc", "min_absolute_change": -0.01}]})
    with Registry(registry_path) as reg:
        before = reg.last_audit_id()
        p = releases.plan(s, reg, "churn", 2, "production")
        assert (p.from_version, p.to_version, p.confirm) == (1, 2, "churn")
        assert [(g.name, g.passed) for g in p.gates] == [("approved", True), ("metric:auc", False), ("healthy", True)]
        gate = p.gates[1]
        assert gate.data["candidate"] == 0.85 and gate.data["champion"] == 0.91
        assert "0.85" in gate.detail and "0.91" in gate.detail and "-0.01" in gate.detail
        assert gate.detail.startswith("auc on 93ddf3b… (300 rows): ") and gate.data["dataset_rows"] == 300

        events: list[releases.ReleaseEvent] = []
        out = releases.execute(p, reason="try it", on_event=events.append)
        assert out.status == releases.BLOCKED and not out.ok
        assert "metric:auc" in out.message
        assert reg.alias("churn", "production") == 1 and reg.last_audit_id() == before
        assert any(e.stage == "gates" and e.level == "error" for e in events)

        out = releases.execute(p, reason="hotfix, accepted lower auc", force=True)
        assert out.status == releases.RELEASED and out.forced
        assert reg.alias("churn", "production") == 2
        entry = reg.audit(action="promote", limit=1)[0]
        assert entry.after["forced"] is True and entry.after["forced_gates"] == ["metric:auc"]
        assert {g["name"]: g["passed"] for g in entry.after["gates"]} == {
            "approved": True, "metric:auc": False, "healthy": True}
        assert entry.reason == "hotfix, accepted lower auc"
        assert reg.verify_audit().ok


@pytest.mark.live
def test_cli_prints_gates_and_exits_2_when_blocked(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path, cand_auc=0.85)
    cfg = tmp_path / "modeldeck.toml"
    cfg.write_text(f'registry = {json.dumps(str(registry_path))}\n'
                   '[models.churn]\ngates = [{ metric = "auc", min_absolute_change = -0.01 }]\n')
    base = [*MODELDECK, "--config", str(cfg)]
    r = subprocess.run([*base, "promote", "churn", "2", "--env", "production", "--reason", "x"],
                       capture_output=True, text=True, env=run_env(), cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stderr  # refused before anything moved
    assert "FAIL metric:auc" in r.stdout and "PASS approved" in r.stdout
    assert r.stderr.startswith("modeldeck: blocked by 1 gate(s) (metric:auc)")
    r = subprocess.run([*base, "promote", "churn", "2", "--env", "production", "--reason", "x", "--force",
                        "--json"], capture_output=True, text=True, env=run_env(), cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["state"] == "done" and result["forced"] is True
    assert result["plan"]["gates"][1]["name"] == "metric:auc"
    assert "forced past 1 failed gate" in r.stderr  # progress goes to stderr with --json


@pytest.mark.live
def test_unapproved_to_production_is_the_registry_refusal(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path, approve=False)
    s = settings_for(tmp_path, registry_path)
    with Registry(registry_path) as reg:
        p = releases.plan(s, reg, "churn", 2, "production")
        assert p.failed_gates[0].name == "approved" and "pending, not approved" in p.failed_gates[0].detail
        with pytest.raises(GateError, match="pending, not approved"):
            cli.run_release(s, action="promote", model="churn", version=2, environment="production",
                            reason="x")
        assert reg.alias("churn", "production") == 1


@pytest.mark.live
def test_bad_input_raises_with_the_registrys_words(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    s = settings_for(tmp_path, registry_path)
    with Registry(registry_path) as reg:
        with pytest.raises(NotFoundError, match="has no version 9"):
            releases.plan(s, reg, "churn", 9, "production")
        with pytest.raises(ConflictError, match="already holds version 1"):
            releases.plan(s, reg, "churn", 1, "production")
        with pytest.raises(RegistryError, match="nothing to roll back to"):
            releases.plan(s, reg, "churn", None, "production", action="rollback")
        p = releases.plan(s, reg, "churn", 2, "production")
        with pytest.raises(RegistryError, match="reason is required"):
            releases.execute(p, reason=" ")
        reg.promote("churn", 2, "production", "someone else")  # moves it after the plan was made
        with pytest.raises(ConflictError, match="moved to version 2"):
            releases.execute(p, reason="stale plan")


# ---------------------------------------------------------------------------------------------
# deploy hooks


@pytest.mark.live
def test_failing_deploy_hook_leaves_the_alias_where_it_was(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    hook = [PY, "-c", "import sys; print('pushing {model} v{version}'); print('kubectl: forbidden'); sys.exit(3)"]
    s = settings_for(tmp_path, registry_path, model={"deploy": {"command": hook}})
    with Registry(registry_path) as reg:
        p = releases.plan(s, reg, "churn", 2, "production")
        out = releases.execute(p, reason="new model")
        assert out.status == releases.HOOK_FAILED
        assert "exit status 3: kubectl: forbidden" in out.message
        assert reg.alias("churn", "production") == 1
        hist = reg.history("churn", "production")
        assert [(h.action, h.from_version, h.to_version) for h in hist[:2]] == [("rollback", 2, 1), ("promote", 1, 2)]
        assert "deploy hook failed" in hist[0].reason
        undo = reg.audit(action="rollback", limit=1)[0]
        assert undo.after["automatic"] is True and undo.after["stage"] == "deploy"
        log = Path(out.log_path or "").read_text()
        assert "pushing churn v2" in log and "kubectl: forbidden" in log
        assert reg.verify_audit().ok


@pytest.mark.live
def test_hook_arguments_with_spaces_quotes_and_semicolons_arrive_whole(tmp_path: Path,
                                                                       registry_path: Path) -> None:
    nasty = 's3://bucket/it\'s "quoted"; rm -rf ~ && echo $(whoami) `id` | tee x'
    env = "blue green; echo pwned"
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1")
        reg.promote("churn", 1, env, "first")
        reg.register("churn", nasty)
    dump = tmp_path / "argv.json"
    hook = [PY, "-c", "import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))", str(dump),
            "{model}", "{version}", "{environment}", "{previous}", "{artifact}", "literal with spaces;|&",
            '{"json": {model}}']
    s = settings_for(tmp_path, registry_path, model={"deploy": {"command": hook}})
    with Registry(registry_path) as reg:
        out = releases.execute(releases.plan(s, reg, "churn", 2, env), reason="r")
    assert out.status == releases.RELEASED, out.message
    assert json.loads(dump.read_text()) == [str(dump), "churn", "2", env, "1", nasty, "literal with spaces;|&",
                                            '{"json": churn}']


@pytest.mark.live
def test_deploy_webhook_is_signed_and_the_secret_never_written(tmp_path: Path, registry_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-value-xyz"
    monkeypatch.setenv("DEPLOY_SECRET", secret)
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-123")
    champion_and_candidate(registry_path)
    with WebhookReceiver() as hook_server:
        s = settings_for(tmp_path, registry_path, model={"deploy": {"webhook": {
            "url": hook_server.url + "/deploy", "secret": "${DEPLOY_SECRET}",
            "headers": {"Authorization": "Bearer ${DEPLOY_TOKEN}"}}}})
        with Registry(registry_path) as reg:
            out = releases.execute(releases.plan(s, reg, "churn", 2, "production"), reason="signed")
        assert out.status == releases.RELEASED, out.message
        (req,) = hook_server.requests
    # what a receiver does: HMAC-SHA256 over the raw body with the shared secret
    expected = "sha256=" + hmac.new(secret.encode(), req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Modeldeck-Signature"] == expected
    assert req["headers"]["Authorization"] == "Bearer tok-123"
    body = json.loads(req["body"])
    assert body["event"] == "deploy" and body["model"] == "churn" and body["version"] == 2
    assert body["previous"] == 1 and body["environment"] == "production" and body["artifact"] == "s3://m/2"
    written = Path(out.log_path or "").read_text() + registry_path.read_bytes().decode("latin-1")
    assert secret not in written and "tok-123" not in written


@pytest.mark.live
def test_webhook_refusal_undoes_the_move(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    with WebhookReceiver(status=500, answer={"error": "deployer broken"}) as hook_server:
        s = settings_for(tmp_path, registry_path, model={"deploy": {"webhook": hook_server.url}})
        with Registry(registry_path) as reg:
            out = releases.execute(releases.plan(s, reg, "churn", 2, "production"), reason="x")
            assert out.status == releases.HOOK_FAILED and "HTTP 500" in out.message
            assert reg.alias("churn", "production") == 1


# ---------------------------------------------------------------------------------------------
# rollout verification and baking, against fake OIP servers polled by the real Poller


def rollout_settings(tmp_path: Path, registry_path: Path, server: FakeModelServer, *, verify_timeout: float = 5,
                     bake: float = 2, deploy: bool = True) -> configmod.Settings:
    model: dict[str, Any] = {"verify_timeout": verify_timeout, "bake_seconds": bake}
    if deploy:
        model["deploy"] = {"command": [PY, "-c", DEPLOY_SCRIPT, "{version}", server.url]}
    return settings_for(tmp_path, registry_path, model=model, endpoints=[endpoint(server)])


@pytest.mark.live
def test_healthy_rollout_is_verified_and_baked(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    with FakeModelServer("churn", "1") as server:
        s = rollout_settings(tmp_path, registry_path, server, bake=1.5)
        with Registry(registry_path) as reg:
            p = releases.plan(s, reg, "churn", 2, "production")
            assert p.gates[-1].name == "healthy" and p.gates[-1].passed, p.gates[-1].detail
            events: list[releases.ReleaseEvent] = []
            t0 = time.monotonic()
            out = releases.execute(p, reason="ship it", on_event=events.append)
            assert time.monotonic() - t0 < 20
        assert out.status == releases.RELEASED, out.message
        assert out.verified is True and out.baked is True
        assert server.version == "2" and server.deploys == ["2"]
    stages = [e.stage for e in events]
    for stage in ("plan", "alias", "hook", "verify", "bake", "done"):
        assert stage in stages
    assert any(e.level == "output" and "deployed 2" in e.message for e in events)


@pytest.mark.live
def test_version_that_errors_after_promotion_is_rolled_back_during_baking(tmp_path: Path,
                                                                          registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    bake, every = 8.0, 0.2
    with FakeModelServer("churn", "1", error_ratio={"2": 0.5}) as server:
        s = rollout_settings(tmp_path, registry_path, server, bake=bake)
        with Registry(registry_path) as reg:
            p = releases.plan(s, reg, "churn", 2, "production")
            events: list[releases.ReleaseEvent] = []
            # the rollout's clock counts polls (every poll is `every` seconds of it), so the bake
            # ends after exactly bake / every polls however slow the machine; each poll is made
            # in the stage the events last named
            polls: list[str] = []
            watch = releases.EndpointWatch(p.settings, p.endpoints, live_windows=False)

            def poll() -> list[EndpointSnapshot]:
                polls.append(next((e.stage for e in reversed(events) if e.stage in ("verify", "bake")), "-"))
                return watch()

            try:
                out = releases.execute(p, reason="ship it", on_event=events.append, poll=poll,
                                       clock=lambda: len(polls) * every, interval=every)
            finally:
                watch.close()
            assert out.status == releases.ROLLED_BACK, out.message
            # caught within the baking period, not at its end: the abort came after fewer of the
            # bake's polls than its length holds (a bake judged only at its end makes all 40)
            baking = polls.count("bake")
            assert 0 < baking < bake / every, polls
            stages = [e.stage for e in events]
            assert stages.index("rollback") > stages.index("bake")
            assert not any(e.stage == "bake" and e.level == "success" for e in events)
            assert "baking failed" in out.message and "error ratio" in out.message
            assert out.verified is True and out.baked is False
            assert reg.alias("churn", "production") == 1
            entry = reg.audit(action="rollback", limit=1)[0]
            assert entry.after["automatic"] is True and entry.after["stage"] == "bake"
            assert "error ratio" in entry.reason and entry.actor == "tester"
            assert reg.verify_audit().ok
        # the deploy hook ran again to put the previous version back on the servers
        assert server.deploys == ["2", "1"] and server.version == "1"
    assert any(e.stage == "rollback" for e in events)
    assert events[-1].stage == "done" and events[-1].data.get("automatic") is True


@pytest.mark.live
def test_rollout_verification_timeout_rolls_back(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    with FakeModelServer("churn", "1") as server:  # nothing deploys version 2 to it
        s = rollout_settings(tmp_path, registry_path, server, verify_timeout=1.0, deploy=False)
        with Registry(registry_path) as reg:
            out = releases.execute(releases.plan(s, reg, "churn", 2, "production"), reason="x")
            assert out.status == releases.ROLLED_BACK, out.message
            assert "verification failed" in out.message and "serves version 1" in out.message
            assert out.verified is False
            assert reg.alias("churn", "production") == 1
            assert reg.audit(action="rollback", limit=1)[0].after["stage"] == "verify"


@pytest.mark.live
def test_unhealthy_environment_blocks_promotion(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    with FakeModelServer("churn", "1") as server:
        server.down = True
        s = rollout_settings(tmp_path, registry_path, server)
        with Registry(registry_path) as reg:
            p = releases.plan(s, reg, "churn", 2, "production")
    gate = p.gates[-1]
    assert gate.name == "healthy" and not gate.passed and "churn-production is down" in gate.detail


@pytest.mark.live
def test_rollback_through_the_cli_redeploys_and_verifies(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    with Registry(registry_path) as reg:
        reg.promote("churn", 2, "production", "v2")
    with FakeModelServer("churn", "2") as server:
        cfg = tmp_path / "modeldeck.toml"
        cfg.write_text(
            f'registry = {json.dumps(str(registry_path))}\n[poll]\ninterval = 0.2\n'
            f'[[endpoints]]\nname = "churn-prod"\nmodel = "churn"\nurl = {json.dumps(server.url)}\n'
            f'metrics_profile = "triton"\n'
            f'[models.churn]\nverify_timeout = 5\nbake_seconds = 1\n'
            f'deploy = {{ command = {json.dumps([PY, "-c", DEPLOY_SCRIPT, "{version}", server.url])} }}\n')
        r = subprocess.run([*MODELDECK, "rollback", "churn", "--env", "production", "--reason", "v2 misbehaves",
                            "--config", str(cfg)], capture_output=True, text=True, env=run_env(), cwd=ROOT,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert server.version == "1"
    assert "rolled back churn production: version 2 -> version 1" in r.stdout
    assert "verify: all 1 endpoint(s) serve version 1" in r.stdout
    assert "  | deployed 1" in r.stdout


# ---------------------------------------------------------------------------------------------
# the watch loop with an injected clock and poll function (no waiting)


def snap(version: str, status: str = "UP", error_ratio: float | None = 0.0) -> EndpointSnapshot:
    return EndpointSnapshot(endpoint="churn-production", model="churn", environment="production",
                            taken_at=time.time(), duration_ms=1.0, status=status, reason="test",
                            served_version=version, served_versions=(version,), error_ratio=error_ratio)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        return False


@pytest.mark.live
def test_injected_clock_bakes_a_long_period_instantly(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    s = settings_for(tmp_path, registry_path, model={"verify_timeout": 60, "bake_seconds": 600},
                     endpoints=[{"name": "churn-production", "model": "churn", "url": "http://127.0.0.1:9"}])
    ft = FakeTime()
    # the endpoint picks the new version up after 20 s, then errors at 45% from 300 s on
    def poll() -> list[EndpointSnapshot]:
        if ft.now < 20:
            return [snap("1")]
        return [snap("2", "DEGRADED" if ft.now >= 300 else "UP", 0.45 if ft.now >= 300 else 0.01)]

    with Registry(registry_path) as reg:
        p = releases.plan(s, reg, "churn", 2, "production", snapshots=[snap("1")])
        t0 = time.monotonic()
        out = releases.execute(p, reason="x", poll=poll, clock=ft.clock, sleep=ft.sleep, interval=5)
        assert time.monotonic() - t0 < 5
        assert out.status == releases.ROLLED_BACK and "error ratio 45.0%" in out.message
        assert 300 <= ft.now < 320
        assert reg.alias("churn", "production") == 1


@pytest.mark.live
def test_stop_event_aborts_the_rollout_and_rolls_back(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    s = settings_for(tmp_path, registry_path, model={"verify_timeout": 60, "bake_seconds": 600},
                     endpoints=[{"name": "churn-production", "model": "churn", "url": "http://127.0.0.1:9"}])
    stop = threading.Event()

    def on_event(e: releases.ReleaseEvent) -> None:
        if e.stage == "bake":
            stop.set()  # the user pressed "abort" while it baked

    with Registry(registry_path) as reg:
        p = releases.plan(s, reg, "churn", 2, "production", snapshots={"churn-production": snap("1")})
        out = releases.execute(p, reason="x", poll=lambda: [snap("2")], on_event=on_event, stop_event=stop,
                               interval=0.05)
        assert out.status == releases.ROLLED_BACK and "stopped by the user" in out.message
        assert reg.alias("churn", "production") == 1


@pytest.mark.live
def test_without_endpoints_verification_is_skipped_with_a_note(tmp_path: Path, registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    s = configmod.load(None, registry_path)  # registry-only use: no config file
    with Registry(registry_path) as reg:
        p = releases.plan(s, reg, "churn", 2, "staging", create_env=True)
        assert p.creates_environment and p.confirm is None and p.gates == (releases.GateResult(
            "healthy", True, "no endpoints configured for churn in staging: not checked", {"endpoints": []}),)
        assert any("no config file" in n for n in p.notes)
        out = releases.execute(p, reason="x")
    assert out.status == releases.RELEASED and out.verified is None
    assert "verification and baking are skipped" in out.message


async def test_plan_inside_a_running_loop_judges_from_the_given_snapshots(tmp_path: Path,
                                                                          registry_path: Path) -> None:
    champion_and_candidate(registry_path)
    s = settings_for(tmp_path, registry_path,
                     endpoints=[{"name": "churn-production", "model": "churn", "url": "http://127.0.0.1:9"}])
    with Registry(registry_path) as reg:  # as a Textual handler would: no loop of its own, no blocking poll
        ok = releases.plan(s, reg, "churn", 2, "production", snapshots={"churn-production": snap("1")})
        missing = releases.plan(s, reg, "churn", 2, "production", snapshots={})
    assert ok.gates[-1].passed and ok.gates[-1].detail == (
        "churn-production up, errors 0.0% (critical at 20.0%), p95 latency not known (not in its metrics)")
    assert not missing.gates[-1].passed and missing.gates[-1].detail == "churn-production: no snapshot"


def test_the_bake_counts_the_new_versions_own_requests_where_the_server_labels_them() -> None:
    """One server holding both versions: the totals look healthy, version 2's own series fail."""
    from modeldeck.core.snapshot import EndpointSnapshot

    def snap(at: float, **kw: Any) -> EndpointSnapshot:
        return EndpointSnapshot(endpoint="e", model="churn", environment="production", taken_at=at,
                                duration_ms=1.0, status="UP", reason="ready", request_rate=100.0,
                                error_ratio=0.02, **kw)

    mine, totals = releases._Served(version="2"), releases._Served(version="2")
    for t in (0.0, 10.0, 20.0):
        mine.add(snap(t, version_rates=(("1", 90.0, 0.0), ("2", 10.0, 0.2))))
        totals.add(snap(t))
    assert mine.per_version and close_to(mine.requests, 200.0) and close_to(mine.errors, 40.0)
    assert not totals.per_version and close_to(totals.requests, 2000.0) and close_to(totals.errors, 40.0)
    stored = EndpointSnapshot.from_dict(snap(0.0, version_rates=(("2", 10.0, None),)).to_dict())
    assert stored.version_rates == (("2", 10.0, None),)


def close_to(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


def test_the_bake_waits_for_enough_records_to_judge_the_predictions_drift(tmp_path: Path,
                                                                          registry_path: Path) -> None:
    """Traffic enough for the error ratio but too few captured records of the new version for
    its predictions' drift at the bake's end: the bake goes on (up to bake_max_seconds) and
    judges the drift once there are enough, instead of ending with it not judged."""
    import random

    rnd = random.Random(5)
    reference = tmp_path / "reference.csv"
    reference.write_text("x,prediction\n" + "".join(f"{rnd.gauss(0, 1):.4f},{rnd.random():.4f}\n"
                                                     for _ in range(1500)))
    capture = tmp_path / "capture.jsonl"
    capture.write_text("")
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1", metrics={"auc": 0.91}, eval_sha256=HOLDOUT, eval_rows=300)
        reg.approve("churn", 1, "offline eval")
        reg.promote("churn", 1, "production", "first release")
        reg.register("churn", "s3://m/2", metrics={"auc": 0.92}, eval_sha256=HOLDOUT, eval_rows=300,
                     reference=str(reference))
        reg.approve("churn", 2, "offline eval")
    s = settings_for(tmp_path, registry_path,
                     model={"verify_timeout": 60, "bake_seconds": 30, "bake_max_seconds": 300,
                            "bake_min_requests": 30},
                     endpoints=[{"name": "churn-production", "model": "churn", "url": "http://127.0.0.1:9",
                                 "capture": str(capture)}])
    ft = FakeTime()

    def poll() -> list[EndpointSnapshot]:  # 20 records of version 2 a poll (every 5 s): 160 by the bake's end
        with capture.open("a") as f:
            for _ in range(20):
                f.write(json.dumps({"x": rnd.gauss(0, 1), "prediction": rnd.random(), "model_version": "2"}) + "\n")
        return [EndpointSnapshot(endpoint="churn-production", model="churn", environment="production",
                                 taken_at=ft.now, duration_ms=1.0, status="UP", reason="ready",
                                 served_version="2", served_versions=("2",), request_rate=10.0, error_ratio=0.0)]

    with Registry(registry_path) as reg:
        p = releases.plan(s, reg, "churn", 2, "production", snapshots=poll())
        events: list[releases.ReleaseEvent] = []
        out = releases.execute(p, reason="x", poll=poll, clock=ft.clock, sleep=ft.sleep, interval=5,
                               on_event=events.append)
    assert out.status == releases.RELEASED and out.baked, out.message
    bake = [e.message for e in events if e.stage == "bake"]
    assert any("too few records to judge the predictions' drift yet" in m for m in bake), bake
    judged = [m for m in bake if "predictions of version 2 match its reference" in m]
    assert judged and "records served by version 2" in judged[0], bake
    assert not any(m.startswith("churn-production: prediction drift not judged") for m in bake), bake
    assert ft.now < 300
