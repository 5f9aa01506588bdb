"""Retraining jobs on real parts: real pipeline subprocesses that register versions through
the real command line, real process groups that get cancelled, a real loopback Airflow-like
API, and real registry files."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from modeldeck.core import config as configmod
from modeldeck.core import hooks, retrain
from modeldeck.core.errors import ConfigError, ConflictError, RegistryError
from modeldeck.core.registry import Registry, format_time
from tests.conftest import MODELDECK, ROOT, run_env
from tests.hookservers import FakeAirflow, WebhookReceiver

pytestmark = pytest.mark.live

PY = sys.executable

# A small pipeline: prints progress, registers a version through `modeldeck register` (which
# links the job through $MODELDECK_JOB_ID), exits with $RC.
PIPELINE = """\
import os, subprocess, sys
model = sys.argv[1]
print("training", model, "job", os.environ["MODELDECK_JOB_ID"], flush=True)
for epoch in range(3):
    print(f"epoch {epoch} loss {1 / (epoch + 1):.3f}", flush=True)
print("warning: a stderr line", file=sys.stderr, flush=True)
if os.environ.get("RC", "0") != "0":
    print("evaluation failed: auc 0.41 below 0.5", flush=True)
    sys.exit(int(os.environ["RC"]))
subprocess.run([sys.executable, "-m", "modeldeck", "register", model, "--artifact", "s3://m/new",
                "--metrics", '{"auc": 0.93}', "--registry", os.environ["MODELDECK_REGISTRY"]], check=True)
print("done", flush=True)
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    p = tmp_path / "train.py"
    p.write_text(PIPELINE)
    return p


def make_settings(tmp_path: Path, registry: Path, retrain_hook: dict[str, Any], **model: Any) -> configmod.Settings:
    data = {"registry": str(registry), "models": {"churn": {"retrain": retrain_hook, **model}}}
    return configmod.parse(data, tmp_path / "modeldeck.toml")


def seed(registry: Path) -> None:
    with Registry(registry) as reg:
        reg.register("churn", "s3://m/1", metrics={"auc": 0.9})


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_command_streams_output_and_records_exit_code_and_produced_version(
        tmp_path: Path, registry_path: Path, pipeline: Path) -> None:
    seed(registry_path)
    s = make_settings(tmp_path, registry_path, {"command": ["{python}", "train.py", "{model}"]})
    lines: list[str] = []
    statuses: list[str] = []
    run = retrain.start_retrain(s, "churn", reason="weekly", on_output=lines.append,
                                on_status=lambda j: statuses.append(j.status))
    job = run.wait(30)
    assert job is not None and job.status == "succeeded", job
    assert job.exit_code == 0 and job.produced_version == 2 and job.trigger == "manual"
    assert job.actor == "tester" and job.reason == "weekly" and job.runner == "command"
    assert statuses == ["running", "succeeded"]
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body[0] == "$ " + " ".join([PY, "train.py", "churn"])
    assert body[1:5] == ["training churn job 1", "epoch 0 loss 1.000", "epoch 1 loss 0.500", "epoch 2 loss 0.333"]
    assert "warning: a stderr line" in body and body[-1] == "done"
    log = Path(job.log_path or "").read_text()
    assert "epoch 2 loss 0.333" in log and "job succeeded; produced version 2" in log
    assert Path(job.log_path or "").is_relative_to(Path(os.environ["XDG_STATE_HOME"]))
    with Registry(registry_path) as reg:
        assert reg.version("churn", 2).job_id == job.id
        actions = [e.action for e in reg.audit(subject="churn#job1")]
        assert actions == ["retrain.succeeded", "retrain.start"]


def test_failing_pipeline_records_exit_code_and_last_line(tmp_path: Path, registry_path: Path,
                                                          pipeline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(registry_path)
    monkeypatch.setenv("RC", "3")
    s = make_settings(tmp_path, registry_path, {"command": ["{python}", "train.py", "{model}"]})
    job = retrain.start_retrain(s, "churn").wait(30)
    assert job is not None and job.status == "failed" and job.exit_code == 3
    assert job.message == "exit status 3: evaluation failed: auc 0.41 below 0.5"
    assert job.produced_version is None


def test_missing_program_fails_the_job_clearly(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    s = make_settings(tmp_path, registry_path, {"command": ["no-such-trainer-xyz", "{model}"]})
    job = retrain.start_retrain(s, "churn").wait(10)
    assert job is not None and job.status == "failed" and job.message == "command not found: no-such-trainer-xyz"


def test_no_pipeline_configured_is_a_config_error(registry_path: Path) -> None:
    seed(registry_path)
    r = subprocess.run([*MODELDECK, "retrain", "churn", "--registry", str(registry_path)], capture_output=True,
                       text=True, env=run_env(), cwd=ROOT, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("modeldeck: churn has no retraining pipeline configured")
    with Registry(registry_path) as reg:
        assert reg.jobs() == []


# A pipeline that starts a helper process in its group, says it is ready, and keeps running.
SLOW = """\
import os, subprocess, sys, time, signal
if len(sys.argv) > 1 and sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("helper", child.pid, flush=True)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_cancel_terminates_the_process_group(tmp_path: Path, registry_path: Path, mode: str) -> None:
    seed(registry_path)
    (tmp_path / "slow.py").write_text(SLOW)
    s = make_settings(tmp_path, registry_path, {"command": ["{python}", "slow.py", mode]})
    lines: list[str] = []
    run = retrain.start_retrain(s, "churn", on_output=lines.append)
    wait_for(lambda: "ready" in lines)
    helper = int(next(ln.split()[1] for ln in lines if ln.startswith("helper ")))
    with Registry(registry_path) as reg:
        running = reg.job(run.job_id)
        assert running.status == "running" and running.pid == os.getpid()
        pgid = retrain.job_pgid(running)
        assert pgid is not None and os.getpgid(helper) == pgid
        retrain.cancel(run.job_id, registry=reg, grace=0.5)
    job = run.wait(15)  # SLOW runs 60 s: a job back within 15 s is one the cancel ended
    assert job is not None and job.status == "cancelled" and job.message == "cancelled by tester"
    assert job.exit_code == (-15 if mode == "polite" else -9)
    wait_for(lambda: not hooks.group_exists(pgid), 10)  # the helper went with it
    with Registry(registry_path) as reg, pytest.raises(ConflictError, match="already ended"):
        retrain.cancel(run.job_id, registry=reg)


def test_cli_retrain_wait_streams_and_cancel_works_across_processes(
        tmp_path: Path, registry_path: Path, pipeline: Path) -> None:
    seed(registry_path)
    (tmp_path / "slow.py").write_text(SLOW)
    cfg = tmp_path / "modeldeck.toml"
    cfg.write_text(f'registry = {json.dumps(str(registry_path))}\n'
                   '[models.churn]\nretrain = { command = ["{python}", "train.py", "{model}"] }\n'
                   '[models.slow]\nretrain = { command = ["{python}", "slow.py"] }\n')
    base = [*MODELDECK, "--config", str(cfg)]
    r = subprocess.run([*base, "retrain", "churn", "--reason", "drifted", "--wait"], capture_output=True,
                       text=True, env=run_env(), cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("started job 1: retraining churn")
    assert "epoch 1 loss 0.500" in out and out[-1] == "job 1 succeeded; produced version 2"

    # without --wait the job runs in a detached runner and outlives the command
    with Registry(registry_path) as reg:
        reg.register("slow", "s3://s/1")
    r = subprocess.run([*base, "retrain", "slow"], capture_output=True, text=True, env=run_env(), cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("started job 2: retraining slow"), r.stderr

    with Registry(registry_path) as reg:
        wait_for(lambda: reg.job(2).status == "running" and "ready" in Path(reg.job(2).log_path or "").read_text())
        runner = reg.job(2).pid
        assert runner is not None and runner != os.getpid()  # the detached supervisor
        r = subprocess.run([*base, "cancel", "2"], capture_output=True, text=True, env=run_env(), cwd=ROOT,
                           timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "cancelled job 2 (slow)", r.stderr
        job = wait_for(lambda: (j := reg.job(2)).exit_code is not None and j)
        assert job.status == "cancelled" and job.exit_code == -15
    r = subprocess.run([*base, "jobs", "--json"], capture_output=True, text=True, env=run_env(), cwd=ROOT,
                       timeout=60)
    listed = json.loads(r.stdout)
    assert [(j["id"], j["status"], j["message"]) for j in listed] == [
        (2, "cancelled", "cancelled by tester"), (1, "succeeded", None)]


def test_cli_retrain_wait_exits_1_when_the_job_fails(tmp_path: Path, registry_path: Path, pipeline: Path) -> None:
    seed(registry_path)
    cfg = tmp_path / "modeldeck.toml"
    cfg.write_text(f'registry = {json.dumps(str(registry_path))}\n'
                   '[models.churn]\nretrain = { command = ["{python}", "train.py", "{model}"] }\n')
    r = subprocess.run([*MODELDECK, "--config", str(cfg), "retrain", "churn", "--wait"], capture_output=True,
                       text=True, env=run_env(RC="4"), cwd=ROOT, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == "modeldeck: job 1 failed: exit status 4: evaluation failed: auc 0.41 below 0.5"


def test_job_whose_runner_is_gone_does_not_stay_running(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait()
    with Registry(registry_path) as reg:
        a = reg.create_job("churn", trigger="manual", runner="command")
        reg.update_job(a.id, status="running", pid=gone.pid, external_id=f"pgid:{gone.pid}")
        b = reg.create_job("churn", trigger="schedule", runner="webhook")
        reg.update_job(b.id, status="running", pid=gone.pid, external_id="manual__2026")
        c = reg.create_job("churn", trigger="manual", runner="command")  # queued, just now: left alone
        live = reg.create_job("churn", trigger="manual", runner="command")
        reg.update_job(live.id, status="running", pid=os.getppid())  # a live process that started earlier
        jobs = {j.id: j for j in retrain.list_jobs(reg)}
        assert jobs[a.id].status == "failed" and "exit status unknown" in (jobs[a.id].message or "")
        assert jobs[b.id].status == "failed" and "manual__2026" in (jobs[b.id].message or "")
        assert jobs[c.id].status == "queued" and jobs[live.id].status == "running"
        # a recycled pid: the process now holding it started after the job did
        reg.update_job(live.id, pid=os.getpid())
        assert hooks.pid_alive(os.getpid(), not_after=format_time(
            __import__("datetime").datetime(2000, 1, 1, tzinfo=__import__("datetime").timezone.utc))) is False
        changed = retrain.reconcile(reg, stale_queued=0)
        assert {j.id for j in changed} == {c.id, live.id}
        assert reg.job(c.id).message == "never started (the process that queued it is gone)"


# ---------------------------------------------------------------------------------------------
# webhooks


def test_airflow_dag_run_flow_works_out_of_the_box(tmp_path: Path, registry_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seed(registry_path)
    monkeypatch.setenv("AIRFLOW_AUTH", "Basic YWRtaW46YWRtaW4=")
    monkeypatch.setenv("HOOK_SECRET", "hush-123")

    def last_task(conf: dict[str, Any]) -> None:  # the DAG registers the model it trained
        with Registry(conf["registry"]) as reg:
            reg.register(conf["model"], "s3://airflow/out", metrics={"auc": 0.94}, job_id=conf["job_id"])

    with FakeAirflow(auth="Basic YWRtaW46YWRtaW4=", polls_to_finish=3, on_finish=last_task) as af:
        s = make_settings(tmp_path, registry_path, {"webhook": {
            "url": af.url + "/api/v1/dags/retrain_churn/dagRuns", "poll_interval": 0.1,
            "secret": "${HOOK_SECRET}", "headers": {"Authorization": "${AIRFLOW_AUTH}"}}})
        lines: list[str] = []
        run = retrain.start_retrain(s, "churn", reason="drift on tenure", on_output=lines.append)
        job = run.wait(30)
        (post,) = af.posts
    assert job is not None and job.status == "succeeded", (job, lines)
    assert job.runner == "webhook" and job.produced_version == 2
    assert job.external_id == post["json"]["dag_run_id"] and job.external_id.startswith("modeldeck_churn_job1_")
    conf = post["json"]["conf"]
    assert conf["model"] == "churn" and conf["job_id"] == 1 and conf["reason"] == "drift on tenure"
    assert set(post["json"]) == {"dag_run_id", "conf"}
    sig = "sha256=" + hmac.new(b"hush-123", post["body"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-Modeldeck-Signature"] == sig
    assert hooks.verify_signature("hush-123", post["body"], sig)
    assert "state running" in lines and "state success" in lines
    log = Path(job.log_path or "").read_text()
    assert "hush-123" not in log and "YWRtaW46YWRtaW4" not in log


def test_failed_airflow_run_fails_the_job(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    with FakeAirflow(final="failed", polls_to_finish=1) as af:
        s = make_settings(tmp_path, registry_path, {"webhook": {
            "url": af.url + "/api/v1/dags/retrain_churn/dagRuns", "poll_interval": 0.1}})
        job = retrain.start_retrain(s, "churn").wait(30)
    assert job is not None and job.status == "failed" and job.message and "failed" in job.message


def test_generic_webhook_with_status_url(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    with WebhookReceiver(answer={"id": "run 7/a", "status": "succeeded"}) as hook:
        s = make_settings(tmp_path, registry_path, {"webhook": {
            "url": hook.url + "/start", "status_url": hook.url + "/runs/{run_id}?model={model}",
            "poll_interval": 0.1}})
        job = retrain.start_retrain(s, "churn").wait(30)
        paths = [r["path"] for r in hook.requests]
        body = json.loads(hook.requests[0]["body"])
    assert job is not None and job.status == "succeeded" and job.external_id == "run 7/a"
    assert paths == ["/start", "/runs/run%207%2Fa?model=churn"]
    assert body["event"] == "retrain" and body["model"] == "churn" and body["job_id"] == job.id
    assert "X-Modeldeck-Signature" not in hook.requests[0]["headers"]  # no secret, no signature


def test_webhook_job_cannot_be_cancelled_locally_while_it_runs(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    with Registry(registry_path) as reg:
        j = reg.create_job("churn", trigger="manual", runner="webhook")
        reg.update_job(j.id, status="running", pid=os.getpid(), external_id="manual__1")
        with pytest.raises(RegistryError, match="runs remotely through a webhook"):
            retrain.cancel(j.id, registry=reg)


# ---------------------------------------------------------------------------------------------
# drift-triggered retraining and its cool-down


def test_cooldown_blocks_a_second_drift_retrain(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    s = make_settings(tmp_path, registry_path, {"command": ["{python}", "-c", "print('retrained {model}')"]},
                      retrain_cooldown=3600)
    with Registry(registry_path) as reg:
        first = retrain.maybe_retrain_on_drift(s, reg, "churn", "dataset drift on production")
        assert first is not None and first.trigger == "drift"
        assert retrain.maybe_retrain_on_drift(s, reg, "churn", "still drifting") is None
        # a manual retrain is not subject to the drift cool-down
        manual = retrain.start_retrain(s, "churn", registry=reg)
        assert manual.wait(30) is not None
        done = wait_for(lambda: (j := reg.job(first.id)).status in retrain.ENDED and j, 30)
        assert done.status == "succeeded" and "retrained churn" in Path(done.log_path or "").read_text()
        assert [j.trigger for j in reg.jobs("churn")] == ["manual", "drift"]
    no_hook = configmod.parse({"registry": str(registry_path)}, tmp_path / "x.toml")
    with Registry(registry_path) as reg:
        assert retrain.maybe_retrain_on_drift(no_hook, reg, "churn", "drift") is None


def test_cooldown_expires(tmp_path: Path, registry_path: Path) -> None:
    seed(registry_path)
    s = make_settings(tmp_path, registry_path, {"command": ["{python}", "-c", "pass"]}, retrain_cooldown=0)
    with Registry(registry_path) as reg:
        a = retrain.maybe_retrain_on_drift(s, reg, "churn", "drift", detach=False)
        time.sleep(0.01)
        b = retrain.maybe_retrain_on_drift(s, reg, "churn", "drift", detach=False)
        assert a is not None and b is not None and a.id != b.id
        wait_for(lambda: all(reg.job(j.id).status in retrain.ENDED for j in (a, b)), 30)


def test_templating_never_reaches_a_shell() -> None:
    fields = {"model": "a b; rm -rf / $(x) 'q' \"d\"", "job_id": 3}
    argv = hooks.render_argv(["{model}", "--job={job_id}", '{"keep": {unknown}}'], fields)
    assert argv == ["a b; rm -rf / $(x) 'q' \"d\"", "--job=3", '{"keep": {unknown}}']
    with pytest.raises(ConfigError, match="NOT_SET_VAR_XYZ"):
        hooks.webhook_headers(configmod.WebhookConfig(url="http://x", secret="${NOT_SET_VAR_XYZ}"), b"{}", "w")
