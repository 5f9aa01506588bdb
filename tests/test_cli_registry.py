"""The registry command line, run as a real subprocess the way a pipeline or a person runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modeldeck.core.registry import Registry
from tests.conftest import MODELDECK, ROOT, run_env


def md(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MODELDECK, *args], capture_output=True, text=True, env=env or run_env(),
                          cwd=cwd, timeout=60)


@pytest.mark.live
def test_release_flow_end_to_end(registry_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,0\n2,1\n")
    reg = str(registry_path)
    r = md("register", "churn", "--artifact", "s3://m/1", "--dataset", str(data), "--metrics", '{"auc": 0.9}',
           "--params", '{"depth": 4}', "--code-version", "abc1234", "--tag", "team=growth", "--registry", reg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "registered churn version 1 (pending approval)"
    # --registry before the subcommand works as well as after it
    assert md("--registry", reg, "approve", "churn", "1", "--reason", "offline eval").returncode == 0
    r = md("promote", "churn", "1", "--env", "production", "--reason", "first release", "--registry", reg)
    assert r.returncode == 2 and "unknown environment 'production' (known: none yet); --create-env" in r.stderr
    r = md("promote", "churn", "1", "--env", "production", "--reason", "first release", "--create-env",
           "--registry", reg)
    assert r.returncode == 0, r.stderr
    assert "unset -> version 1" in r.stdout

    versions = json.loads(md("versions", "churn", "--json", "--registry", reg).stdout)
    assert versions[0]["environments"] == ["production"]
    assert versions[0]["metrics"] == {"auc": 0.9} and versions[0]["code_version"] == "abc1234"
    history = json.loads(md("history", "churn", "--env", "production", "--json", "--registry", reg).stdout)
    assert [(h["from_version"], h["to_version"], h["action"]) for h in history] == [(None, 1, "promote")]
    r = md("history", "churn", "--env", "production", "--at", "1 minute ago", "--registry", reg)
    assert r.returncode == 0 and "held no version" in r.stdout
    r = md("audit", "--registry", reg)
    assert "promote" in r.stdout and "first release" in r.stdout
    r = md("audit", "--verify", "--registry", reg)
    assert r.returncode == 0 and "intact: 6 entries" in r.stdout  # with the rollout's gating, deploying, done
    rollouts = json.loads(md("rollouts", "--json", "--registry", reg).stdout)
    assert [(x["id"], x["state"], x["to_version"]) for x in rollouts] == [(1, "done", 1)]


@pytest.mark.live
@pytest.mark.parametrize(("args", "message"), [
    (["promote", "churn", "7", "--env", "production", "--reason", "x"],
     "modeldeck: model churn has no version 7 (latest is 2)"),
    (["promote", "churn", "2", "--env", "production", "--reason", "x"],
     "modeldeck: churn version 2 is pending, not approved; only an approved version can be promoted to production"),
    (["approve", "fraud", "1", "--reason", "x"], "modeldeck: no model named 'fraud'"),
    (["rollback", "churn", "--env", "production", "--reason", "x"], "modeldeck: production of churn has only ever held version 1: there is nothing to roll back to"),
    (["register", "churn", "--artifact", "s3://m/3", "--metrics", "{auc: 1}"], "modeldeck: --metrics: not valid JSON"),
    (["promote", "churn", "1", "--env", "staging", "--reason", "x", "--expect", "2", "--create-env"],
     "modeldeck: staging of churn moved to unset"),
    (["promote", "churn", "1", "--env", "prod", "--reason", "x"],
     "modeldeck: unknown environment 'prod' (known: production); --create-env to create it "
     "(did you mean 'production'?)"),
])
def test_bad_requests_say_what_is_wrong_and_write_nothing(registry_path: Path, args: list[str], message: str) -> None:
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1")
        reg.register("churn", "s3://m/2")
        reg.approve("churn", 1, "ok")
        reg.promote("churn", 1, "production", "first")
        before = reg.last_audit_id()
    r = md(*args, "--registry", str(registry_path))
    assert r.returncode == 2
    assert r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with Registry(registry_path) as reg:
        assert reg.last_audit_id() == before
        assert reg.verify_audit().ok


@pytest.mark.live
def test_missing_reason_is_a_usage_error(registry_path: Path) -> None:
    r = md("approve", "churn", "1", "--registry", str(registry_path))
    assert r.returncode == 2 and "--reason" in r.stderr
    assert not registry_path.exists()


@pytest.mark.live
def test_read_commands_do_not_create_a_registry(tmp_path: Path) -> None:
    r = md("versions", "churn", "--registry", str(tmp_path / "nothing.db"))
    assert r.returncode == 2 and "no registry here" in r.stderr
    assert not (tmp_path / "nothing.db").exists()


@pytest.mark.live
def test_audit_verify_names_the_first_bad_entry(registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        for i in range(3):
            reg.register("churn", f"s3://m/{i}")
        reg.conn.execute("UPDATE audit SET actor='someone else' WHERE id=2")
    r = md("audit", "--verify", "--registry", str(registry_path))
    assert r.returncode == 1
    assert "BROKEN at entry 2" in r.stderr


@pytest.mark.live
def test_config_file_registry_and_env_discovery(tmp_path: Path) -> None:
    cfg = tmp_path / "modeldeck.toml"
    cfg.write_text('registry = "reg/registry.db"\n')
    r = md("register", "churn", "--artifact", "s3://m/1", cwd=tmp_path)  # ./modeldeck.toml
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "reg" / "registry.db").exists()
    r = md("versions", "churn", env=run_env(MODELDECK_CONFIG=str(cfg)))
    assert r.returncode == 0 and "s3://m/1" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[poll]\ninterval = 'fast'\n")
    r = md("versions", "churn", "--config", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip() == f"modeldeck: {bad}: poll.interval: must be a number, not a string"
