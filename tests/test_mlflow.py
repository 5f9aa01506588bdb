"""MLflow's Model Registry as the registry of record, the ledger on top (issue 16), against a
real ``mlflow server`` (tests marked live; the config tests are not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.errors import ConfigError, ConflictError
from modeldeck.core.mlflow import MlflowRegistry
from modeldeck.core.registry import Registry, open_registry
from modeldeck.tui import cli
from tests.mlflow_helpers import Notebook, unique, write_config

live = [pytest.mark.live, pytest.mark.xdist_group("mlflow")]


# -- config (no server) ------------------------------------------------------------------------


def test_mlflow_config(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[mlflow]\nurl = "http://127.0.0.1:5000/"\nheaders = { Authorization = "Bearer ${MLFLOW_TOKEN}" }\n'
                 'models = ["churn", "fraud"]\naliases = { production = "champion" }\ntag_prefix = "md."\n')
    ml = config.parse_file(p).mlflow
    assert ml is not None and ml.url == "http://127.0.0.1:5000" and ml.models == ("churn", "fraud")
    assert ml.alias_for("production") == "champion" and ml.alias_for("staging") == "staging"
    assert ml.environment_for("champion") == "production" and ml.environment_for("qa") == "qa"
    assert ml.tag_prefix == "md." and ml.wants("churn") and not ml.wants("other")
    assert config.parse_file(tmp_path / "c.toml").mlflow.headers["Authorization"] == "Bearer ${MLFLOW_TOKEN}"
    p.write_text("")
    assert config.parse_file(p).mlflow is None


@pytest.mark.parametrize(("body", "says"), [
    ('[mlflow]\nmodels = ["a"]\n', "missing required key 'url'"),
    ('[mlflow]\nurl = "ftp://x"\n', "mlflow.url: must be an http"),
    ('[mlflow]\nurl = "http://x"\naliases = { production = "latest" }\n', "reserves the alias name 'latest'"),
    ('[mlflow]\nurl = "http://x"\naliases = { a = "v3" }\n', "reserves the alias name 'v3'"),
    ('[mlflow]\nurl = "http://x"\naliases = { a = "c", b = "c" }\n', "already the alias of environment 'a'"),
    ('[mlflow]\nurl = "http://x"\nurll = 1\n', "mlflow.urll: unknown key (did you mean 'url'?)"),
    ('[mlflow]\nurl = "http://x"\ntimeout = 0\n', "mlflow.timeout: must be greater than 0"),
])
def test_mlflow_config_errors(tmp_path: Path, body: str, says: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(body)
    with pytest.raises(ConfigError, match="c.toml") as e:
        config.parse_file(p)
    assert says in str(e.value)


def test_without_mlflow_nothing_changes(tmp_path: Path) -> None:
    s = config.Settings(path=None, registry=tmp_path / "r.db")
    with open_registry(s) as reg:
        assert type(reg) is Registry


# -- the read side -------------------------------------------------------------------------------


@pytest.fixture
def nb(mlflow_server):
    n = Notebook(mlflow_server.url)
    yield n
    n.close()


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_versions_and_lineage_come_from_mlflow(mlflow_server, nb: Notebook, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("churn")
    nb.model(name)
    r1 = nb.run(params={"depth": 6}, metrics={"auc": 0.91}, datasets=[("train", "d1g35t", "training")],
                commit="abc1234")
    r2 = nb.run(params={"depth": 8}, metrics={"auc": 0.93})
    assert nb.version(name, "s3://bucket/churn/1", r1, tags={"team": "growth"}) == 1
    assert nb.version(name, "s3://bucket/churn/2", r2) == 2
    nb.set_alias(name, "champion", 1)
    cfg = write_config(tmp_path, mlflow_server.url, aliases={"production": "champion"})

    code, out, err = _main(capsys, "--config", str(cfg), "versions", name, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["version"] for r in rows] == [2, 1]  # newest first
    v1 = rows[1]
    assert v1["artifact"] == "s3://bucket/churn/1" and v1["run_id"] == r1
    assert v1["params"] == {"depth": "6"} and v1["metrics"] == {"auc": 0.91}
    assert v1["code_version"] == "abc1234" and v1["tags"] == {"team": "growth"}
    assert v1["datasets"] == [{"name": "train", "digest": "d1g35t", "context": "training", "source": "/data/train.csv"}]
    assert v1["environments"] == ["production"] and v1["approval"] == "pending"
    assert rows[0]["environments"] == [] and rows[0]["metrics"] == {"auc": 0.93}

    code, out, _ = _main(capsys, "--config", str(cfg), "versions", name)
    assert code == 0 and "production" in out and "abc1234" in out

    # the ledger kept its copy: a second read asks no run again
    settings = config.load(cfg)
    with open_registry(settings) as reg:
        assert isinstance(reg, MlflowRegistry)
        before = reg.client.calls
        assert [v.version for v in reg.versions(name)] == [1, 2]
        assert reg.client.calls - before == 1  # one version search
        assert reg.aliases(name) == {"production": 1}
        assert reg.alias(name, "production") == 1 and reg.alias(name, "staging") is None
        assert reg.version(name, 2).metrics == {"auc": 0.93}
        assert (name, "production") in reg.all_aliases()

    code, _, err = _main(capsys, "--config", str(cfg), "versions", unique("nope"))
    assert code == 2 and "no model named" in err and mlflow_server.url in err


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_history_records_moves_made_outside_modeldeck(mlflow_server, nb: Notebook, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("fraud")
    nb.model(name)
    for i in (1, 2, 3):
        nb.version(name, f"s3://b/fraud/{i}")
    nb.set_alias(name, "production", 1)
    cfg = write_config(tmp_path, mlflow_server.url)
    code, out, err = _main(capsys, "--config", str(cfg), "history", name, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert [(c["environment"], c["from_version"], c["to_version"], c["action"], c["actor"]) for c in first] == \
        [("production", None, 1, "external", "unknown")]
    assert "first looked" in first[0]["reason"]

    nb.set_alias(name, "production", 3)  # the MLflow UI, a notebook
    nb.set_alias(name, "staging", 2)
    code, out, _ = _main(capsys, "--config", str(cfg), "history", name, "--json")
    changes = json.loads(out)
    assert [(c["environment"], c["from_version"], c["to_version"], c["action"]) for c in changes][:2] == \
        [("staging", None, 2, "external"), ("production", 1, 3, "external")]
    assert "outside modeldeck" in changes[1]["reason"]
    code, out, _ = _main(capsys, "--config", str(cfg), "history", name, "--json")
    assert len(json.loads(out)) == 3  # nothing new: nothing recorded twice

    nb.delete_alias(name, "staging")
    code, out, _ = _main(capsys, "--config", str(cfg), "history", name, "--env", "staging", "--json")
    assert [(c["from_version"], c["to_version"]) for c in json.loads(out)] == [(2, None), (None, 2)]

    code, out, _ = _main(capsys, "--config", str(cfg), "audit", "--action", "external", "--json")
    entries = [e for e in json.loads(out) if e["subject"].startswith(name)]
    assert len(entries) == 4 and {e["actor"] for e in entries} == {"unknown"}
    code, out, _ = _main(capsys, "--config", str(cfg), "audit", "--verify")
    assert code == 0 and "intact" in out
    with Registry(tmp_path / "ledger.db") as ledger:  # the ledger's own view agrees with MLflow
        assert ledger.alias(name, "production") == 3 and ledger.alias(name, "staging") is None


# -- register and approvals ------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_register_creates_the_mlflow_version_and_approvals_are_tags(mlflow_server, nb: Notebook, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("reg")
    cfg = write_config(tmp_path, mlflow_server.url)
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    code, out, err = _main(capsys, "--config", str(cfg), "register", name, "--artifact", "s3://b/reg/1.pkl",
                           "--dataset", str(data), "--code-version", "f00d", "--metrics", '{"auc": 0.8}',
                           "--tag", "team=risk", "--reason", "first")
    assert code == 0, err
    assert f"registered {name} version 1 in MLflow" in out
    tags = nb.version_tags(name, 1)
    assert tags["team"] == "risk" and tags["modeldeck.registered_by"] == "tester"
    assert tags["modeldeck.code_version"] == "f00d" and len(tags["modeldeck.dataset_sha256"]) == 64

    rid = nb.run(params={"depth": 3}, metrics={"auc": 0.85, "loss": 0.2}, commit="beef")
    code, out, err = _main(capsys, "--config", str(cfg), "register", name, "--run-id", rid, "--json")
    assert code == 0, err
    v2 = json.loads(out)
    assert v2["version"] == 2 and v2["artifact"] == f"runs:/{rid}/model" and v2["run_id"] == rid
    assert v2["params"] == {"depth": "3"} and v2["metrics"] == {"auc": 0.85, "loss": 0.2}
    assert v2["code_version"] == "beef"
    assert {e["metric"] for e in v2["evaluations"]} == {"auc", "loss"}

    nb.version(name, "s3://b/reg/3.pkl")  # registered outside modeldeck: numbering is MLflow's
    code, out, err = _main(capsys, "--config", str(cfg), "register", name, "--artifact", "s3://b/reg/4.pkl")
    assert code == 0 and "version 4" in out, err

    code, out, err = _main(capsys, "--config", str(cfg), "approve", name, "2", "--reason", "offline eval ok")
    assert code == 0, err
    tags = nb.version_tags(name, 2)
    assert tags["modeldeck.approval"] == "approved" and tags["modeldeck.approved_by"] == "tester"
    assert tags["modeldeck.approval_reason"] == "offline eval ok"
    code, out, err = _main(capsys, "--config", str(cfg), "reject", name, "3", "--reason", "leaky features")
    assert code == 0, err
    tags = nb.version_tags(name, 3)
    assert tags["modeldeck.approval"] == "rejected" and tags["modeldeck.rejected_by"] == "tester"
    code, out, _ = _main(capsys, "--config", str(cfg), "versions", name, "--json")
    rows = {r["version"]: r for r in json.loads(out)}
    assert rows[2]["approval"] == "approved" and rows[3]["approval"] == "rejected" and rows[1]["approval"] == "pending"
    assert "modeldeck.approval" not in rows[2]["tags"]  # modeldeck's own tags are shown as what they mean

    code, out, err = _main(capsys, "--config", str(cfg), "tag", name, "1", "stage=canary")
    assert code == 0, err
    assert nb.version_tags(name, 1)["stage"] == "canary"
    code, _, err = _main(capsys, "--config", str(cfg), "tag", name, "1", "modeldeck.approval=approved")
    assert code == 2 and "modeldeck's own" in err

    code, _, err = _main(capsys, "--config", str(cfg), "register", name, "--run-id", "0" * 32)
    assert code == 2 and "no run" in err
    code, _, err = _main(capsys, "--config", str(cfg), "register", name, "--artifact", "/not/there/model.pkl")
    assert code == 2 and "/not/there/model.pkl: no such artifact file" in err
    code, _, err = _main(capsys, "--config", str(cfg), "register", name, "--artifact", "ftp://x/model.pkl",
                         "--run-id", rid)
    assert code == 2 and "HTTP 400 INVALID_PARAMETER_VALUE" in err and err.count("\n") == 1  # MLflow's own reason
    code, out, _ = _main(capsys, "--config", str(cfg), "versions", name, "--json")
    assert sorted(r["version"] for r in json.loads(out)) == [1, 2, 3, 4]  # the refusals made nothing

    # a local file: MLflow takes it only inside a run, so modeldeck logs one with the lineage
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(b"\x80\x04weights")
    code, out, err = _main(capsys, "--config", str(cfg), "register", name, "--artifact", str(pkl), "--dataset",
                           str(data), "--metrics", '{"auc": 0.9}', "--params", '{"depth": 4}',
                           "--code-version", "c0ffee", "--json")
    assert code == 0, err
    v5 = json.loads(out)
    assert v5["version"] == 5 and v5["run_id"] and v5["artifact"].endswith("/model/model.pkl")
    assert Path(v5["artifact"]).read_bytes() == b"\x80\x04weights" and v5["artifact"] != str(pkl)
    assert v5["params"] == {"depth": 4} and v5["metrics"] == {"auc": 0.9} and v5["code_version"] == "c0ffee"
    assert [(d["name"], d["context"]) for d in v5["datasets"]] == [("train.csv", "training")]


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_an_approval_mlflow_refuses_is_not_in_the_ledger(mlflow_server, nb: Notebook, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.mlflow_helpers import FaultProxy

    name = unique("appr")
    nb.model(name)
    nb.version(name, "s3://b/a/1")
    with FaultProxy(mlflow_server.url) as proxy:
        cfg = write_config(tmp_path, proxy.url)
        proxy.fail["set-tag"] = (503, '{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "db is busy"}')
        code, _, err = _main(capsys, "--config", str(cfg), "approve", name, "1", "--reason", "ok")
        assert code == 2 and "HTTP 503" in err and "db is busy" in err and len(err.strip().splitlines()) == 1
        with Registry(tmp_path / "ledger.db") as ledger:
            assert ledger.version(name, 1).approval == "pending"
            assert ledger.approvers(name, 1) == [] and not ledger.audit(action="approve")
        del proxy.fail["set-tag"]
        code, _, err = _main(capsys, "--config", str(cfg), "approve", name, "1", "--reason", "ok")
        assert code == 0, err
    assert nb.version_tags(name, 1)["modeldeck.approval"] == "approved"


# -- releases move MLflow aliases ------------------------------------------------------------------


def _approved_model(nb: Notebook, name: str, n: int = 3) -> None:
    nb.model(name)
    for i in range(1, n + 1):
        nb.version(name, f"s3://b/{name}/{i}")


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_promote_and_rollback_move_the_mlflow_alias(mlflow_server, nb: Notebook, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("rel")
    _approved_model(nb, name)
    cfg = write_config(tmp_path, mlflow_server.url, aliases={"production": "champion"})
    for v in ("1", "2", "3"):
        assert _main(capsys, "--config", str(cfg), "approve", name, v, "--reason", "eval ok")[0] == 0
    code, out, err = _main(capsys, "--config", str(cfg), "promote", name, "1", "--env", "production",
                           "--reason", "first", "--no-verify", "--create-env")
    assert code == 0, err + out
    assert nb.alias(name, "champion") == 1
    code, out, err = _main(capsys, "--config", str(cfg), "promote", name, "2", "--env", "production",
                           "--reason", "weekly", "--no-verify")
    assert code == 0, err + out
    assert nb.alias(name, "champion") == 2
    code, out, err = _main(capsys, "--config", str(cfg), "rollback", name, "--env", "production",
                           "--reason", "p95 doubled", "--no-verify")
    assert code == 0, err + out
    assert nb.alias(name, "champion") == 1
    code, out, _ = _main(capsys, "--config", str(cfg), "history", name, "--json")
    assert [(c["action"], c["from_version"], c["to_version"], c["actor"]) for c in json.loads(out)] == [
        ("rollback", 2, 1, "tester"), ("promote", 1, 2, "tester"), ("promote", None, 1, "tester")]

    # a move in MLflow since modeldeck looked: recorded as external, and the stale expectation refused
    nb.set_alias(name, "champion", 3)
    settings = config.load(cfg)
    with open_registry(settings) as reg:
        with pytest.raises(ConflictError, match="moved to version 3 by unknown"):
            reg.promote(name, 2, "production", "stale view", expect=1)
        assert nb.alias(name, "champion") == 3
        assert [(c.action, c.to_version) for c in reg.history(name)][:1] == [("external", 3)]
        change = reg.promote(name, 2, "production", "fresh view", expect=3)
        assert (change.from_version, change.to_version) == (3, 2) and nb.alias(name, "champion") == 2
        assert reg.rollback_target(name, "production") == 3  # an outside move is part of the stack
        assert reg.unset_alias(name, "production", "retire", expect=2).to_version is None
        assert nb.alias(name, "champion") is None
        assert reg.verify_audit().ok


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_a_move_mlflow_refuses_writes_no_ledger_entry(mlflow_server, nb: Notebook, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from tests.mlflow_helpers import FaultProxy

    name = unique("refuse")
    _approved_model(nb, name, 2)
    nb.set_alias(name, "staging", 1)
    with FaultProxy(mlflow_server.url) as proxy:
        cfg = write_config(tmp_path, proxy.url)
        proxy.fail["POST /api/2.0/mlflow/registered-models/alias"] = (
            403, '{"error_code": "PERMISSION_DENIED", "message": "no EDIT on this model"}')
        code, _out, err = _main(capsys, "--config", str(cfg), "promote", name, "2", "--env", "staging",
                               "--reason", "try", "--no-verify")
        assert code == 2 and "HTTP 403" in err and len(err.strip().splitlines()) == 1, err
        assert nb.alias(name, "staging") == 1
        with Registry(tmp_path / "ledger.db") as ledger:
            assert [c.action for c in ledger.history(name)] == ["external"]  # only the first look
            assert ledger.alias(name, "staging") == 1 and not ledger.audit(action="promote")


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_mlflow_moved_but_the_ledger_failed_is_critical(mlflow_server, nb: Notebook, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    name = unique("crit")
    _approved_model(nb, name, 2)
    nb.set_alias(name, "staging", 1)
    cfg = write_config(tmp_path, mlflow_server.url)
    assert _main(capsys, "--config", str(cfg), "history", name)[0] == 0  # the ledger has seen staging=1
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.execute("CREATE TRIGGER full_disk BEFORE INSERT ON alias_history WHEN NEW.action = 'promote' "
               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    db.commit()
    code, out, err = _main(capsys, "--config", str(cfg), "promote", name, "2", "--env", "staging",
                           "--reason", "go", "--no-verify")
    assert code == 2 and err.count("\n") == 1, err
    assert "CRITICAL" in err and "points at version 2" in err and "4 tries" in err and "disk is full" in err
    assert nb.alias(name, "staging") == 2  # MLflow moved
    db.execute("DROP TRIGGER full_disk")
    db.commit()
    db.close()
    code, out, _ = _main(capsys, "--config", str(cfg), "history", name, "--json")
    assert next((c["action"], c["from_version"], c["to_version"]) for c in json.loads(out)) == ("external", 1, 2)


# -- moves made outside modeldeck, found every poll interval ---------------------------------------


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_the_poller_records_outside_moves_every_interval(mlflow_server, nb: Notebook, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from modeldeck.core.poller import Poller
    from tests.mlflow_helpers import FaultProxy

    name = unique("poll")
    _approved_model(nb, name, 3)
    nb.set_alias(name, "champion", 1)
    monkeypatch.setenv("MLFLOW_TOKEN", "s3cr3t-t0ken")
    with FaultProxy(mlflow_server.url) as proxy:
        cfg = write_config(tmp_path, proxy.url, models=[name], aliases={"production": "champion"},
                           headers={"Authorization": "Bearer ${MLFLOW_TOKEN}"}, extra=f"""
            [[endpoints]]
            name = "{name}-prod"
            model = "{name}"
            url = "http://127.0.0.1:9"
            """)
        settings = config.load(cfg)

        async def cycles() -> tuple[dict, str | None, dict, str | None]:
            poller = Poller(settings)
            try:
                await poller.poll_once()
                first = dict(poller._aliases)
                nb.set_alias(name, "champion", 3)
                proxy.fail["registered-models/search"] = (401, '{"error_code": "UNAUTHENTICATED"}')
                await poller._refresh_aliases(force=True)
                fault = poller.registry_fault
                del proxy.fail["registered-models/search"]
                await poller._refresh_aliases(force=True)
                return first, fault, dict(poller._aliases), poller.registry_fault
            finally:
                await poller.aclose()

        first, fault, after, cleared = asyncio.run(cycles())
        assert any(h.get("Authorization") == "Bearer s3cr3t-t0ken" for h in proxy.headers_seen)
    assert first == {(name, "production"): 1} and after == {(name, "production"): 3} and cleared is None
    assert fault is not None and "HTTP 401" in fault and "s3cr3t" not in fault and "headers" in fault
    with Registry(tmp_path / "ledger.db") as ledger:
        changes = ledger.history(name, "production")
        assert [(c.action, c.from_version, c.to_version, c.actor) for c in changes] == [
            ("external", 1, 3, "unknown"), ("external", None, 1, "unknown")]
        at = changes[0].at
        assert ledger.alias_at(name, "production", at).to_version == 3
        assert ledger.verify_audit().ok


# -- faults: one line on the command line, a status in the TUI, a WARNING in the report -------------


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_mlflow_faults_are_one_line_and_name_the_server(mlflow_server, nb: Notebook, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.core.demo.mlflowserver import free_port
    from tests.mlflow_helpers import FaultProxy

    name = unique("fault")
    _approved_model(nb, name, 2)
    monkeypatch.setenv("MLFLOW_TOKEN", "s3cr3t-t0ken")
    headers = {"Authorization": "Bearer ${MLFLOW_TOKEN}"}
    with FaultProxy(mlflow_server.url) as proxy:
        cfg = write_config(tmp_path, proxy.url, headers=headers)
        cases = {
            "401": ((401, "{}"), "refused modeldeck (HTTP 401 unauthorized): check the credentials in [mlflow] headers"),
            "403": ((403, '{"error_code": "PERMISSION_DENIED", "message": "no READ"}'), "HTTP 403 forbidden"),
            "500": ((500, "<html>oops\x1b[31m</html>"), "failed (HTTP 500): no JSON error"),
            "503": ((503, '{"error_code": "X", "message": "maintenance\\nwindow"}'), "HTTP 503 X): maintenance window"),
        }
        for status, (reply, says) in cases.items():
            proxy.fail["model-versions/search"] = reply
            code, out, err = _main(capsys, "--config", str(cfg), "versions", name)
            assert code == 2 and out == "", status
            assert err.count("\n") == 1 and says in err and proxy.url in err, (status, err)
            assert "s3cr3t" not in err and "\x1b" not in err
        proxy.fail["model-versions/search"] = (200, '{"model_versions": [' + '{"name": "x"},' * 400 + ']}')
        (tmp_path / "small").mkdir()
        cfg_small = write_config(tmp_path / "small", proxy.url, headers=headers)
        cfg_small.write_text(cfg_small.read_text() + "max_body_bytes = 4096\n")
        code, _, err = _main(capsys, "--config", str(cfg_small), "versions", name)
        assert code == 2 and "answered more than 4096 bytes" in err and "max_body_bytes" in err
        proxy.fail.clear()
        proxy.delay["model-versions/search"] = 3.0
        (tmp_path / "slow").mkdir()
        cfg_slow = write_config(tmp_path / "slow", proxy.url, headers=headers)
        cfg_slow.write_text(cfg_slow.read_text().replace("timeout = 10", "timeout = 0.5"))
        code, _, err = _main(capsys, "--config", str(cfg_slow), "versions", name)
        assert code == 2 and "did not answer" in err and "within 0.5 s" in err
        proxy.delay.clear()
    (tmp_path / "dead").mkdir()
    dead = write_config(tmp_path / "dead", f"http://127.0.0.1:{free_port()}")
    code, _, err = _main(capsys, "--config", str(dead), "versions", name)
    assert code == 2 and "cannot be reached: connection refused" in err

    monkeypatch.delenv("MLFLOW_TOKEN")
    code, _, err = _main(capsys, "--config", str(cfg), "versions", name)
    assert code == 2 and "environment variable MLFLOW_TOKEN is not set" in err

    (tmp_path / "direct").mkdir()
    cfg = write_config(tmp_path / "direct", mlflow_server.url)
    assert _main(capsys, "--config", str(cfg), "versions", name)[0] == 0  # the ledger has seen it
    nb.delete_model(name)
    code, _, err = _main(capsys, "--config", str(cfg), "versions", name)
    assert code == 2 and f"no model named '{name}'" in err and "deleted there?" in err
    code, _, err = _main(capsys, "--config", str(cfg), "promote", name, "1", "--env", "staging", "--reason", "x",
                         "--no-verify", "--create-env")
    assert code == 2 and "no model named" in err


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
def test_report_warns_and_uses_the_ledger_when_mlflow_is_down(mlflow_server, nb: Notebook, tmp_path: Path) -> None:
    import io

    from tests.mlflow_helpers import FaultProxy

    name = unique("rep")
    _approved_model(nb, name, 2)
    nb.set_alias(name, "production", 2)
    with FaultProxy(mlflow_server.url) as proxy:
        cfg = write_config(tmp_path, proxy.url, models=[name])
        settings = config.load(cfg)
        out, err = io.StringIO(), io.StringIO()
        assert cli.run_report(settings, fmt="json", stdout=out, stderr=err) == 0, err.getvalue()
        ok = json.loads(out.getvalue())
        assert [m["environments"] for m in ok["models"]] == [{"production": 2}]
        proxy.fail["registered-models/search"] = (503, '{"message": "down for upgrade"}')
        out, err = io.StringIO(), io.StringIO()
        assert cli.run_report(settings, fmt="json", stdout=out, stderr=err) == 1, err.getvalue()
    rep = json.loads(out.getvalue())
    warnings = [f for f in rep["findings"] if f["subject"] == "registry"]
    assert len(warnings) == 1 and warnings[0]["severity"] == "WARNING"
    assert "HTTP 503" in warnings[0]["message"] and "ledger's last known" in warnings[0]["message"]
    assert [m["environments"] for m in rep["models"]] == [{"production": 2}]  # the ledger's copy


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
async def test_tui_shows_mlflow_faults_and_keeps_running(mlflow_server, nb: Notebook, tmp_path: Path) -> None:
    from textual.widgets import DataTable, Static

    from modeldeck.tui.app import ModeldeckApp
    from modeldeck.tui.source import FixedSource
    from tests.mlflow_helpers import FaultProxy

    name = unique("tui")
    _approved_model(nb, name, 2)
    nb.set_alias(name, "production", 1)
    with FaultProxy(mlflow_server.url) as proxy:
        cfg = write_config(tmp_path, proxy.url, models=[name], extra=f"""
            [[endpoints]]
            name = "{name}-prod"
            model = "{name}"
            url = "http://127.0.0.1:9"
            """)
        settings = config.load(cfg)
        with open_registry(settings) as reg:
            reg.versions(name)  # the ledger's copy
        source = FixedSource()
        app = ModeldeckApp(settings, source=source)
        async with app.run_test(size=(140, 35)) as pilot:
            source.registry_error = "MLflow at http://x refused modeldeck (HTTP 401 unauthorized)"
            await pilot.press("enter")
            for _ in range(50):
                await pilot.pause(0.1)
                if type(app.screen).__name__ == "ModelScreen" and \
                        app.screen.query_one("#versions-table", DataTable).row_count == 2:
                    break
            screen = app.screen
            assert not screen.query_one("#registry-status", Static).display
            proxy.down = True
            screen.load_versions()
            for _ in range(100):
                await pilot.pause(0.1)
                if screen.query_one("#registry-status", Static).display:
                    break
            status = str(screen.query_one("#registry-status", Static).render())
            assert "cannot be reached" in status and "ledger's last known" in status
            assert screen.query_one("#versions-table", DataTable).row_count == 2  # still shown
            proxy.down = False
            screen.load_versions()
            for _ in range(100):
                await pilot.pause(0.1)
                if not screen.query_one("#registry-status", Static).display:
                    break
            assert not screen.query_one("#registry-status", Static).display
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert "registry: MLflow at http://x refused" in str(app.screen.query_one("#fleet-header", Static).render())


# -- the demo on MLflow ------------------------------------------------------------------------------


def test_demo_mlflow_without_the_virtualenv_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELDECK_MLFLOW_VENV", str(tmp_path / "no-venv"))
    code, _, err = _main(capsys, "--demo", "--mlflow")
    assert code == 2 and "--demo --mlflow: no MLflow virtualenv at" in err and "make test" in err
    for argv in (["--mlflow"], ["--report", "--mlflow"], ["--mlflow", "versions", "churn"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2 and "--mlflow" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.live
@pytest.mark.xdist_group("mlflow")
async def test_demo_on_mlflow_registers_runs_and_follows_its_aliases(mlflow_server, tmp_path: Path) -> None:
    """``modeldeck --demo --mlflow``: a local mlflow server of its own, the demo versions
    registered there with runs, and the same story: a promotion moves the MLflow alias and the
    demo server follows it."""
    import asyncio
    import subprocess
    import time

    from modeldeck.tui.app import ModeldeckApp
    from tests.conftest import MODELDECK, run_env

    app = ModeldeckApp(None, demo=True, demo_mlflow=True, demo_workdir=tmp_path / "demo")
    async with app.run_test(size=(120, 35)) as pilot:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not (
                app.source is not None and getattr(app.source.latest().get("churn-prod"), "served_version", None)):
            await pilot.pause(0.25)
        assert app.settings is not None and app.settings.mlflow is not None, app.status_line
        server = app.mlflow_server
        assert server is not None and app.settings.mlflow.url == server.url and server.url != mlflow_server.url
        assert app.source.latest()["churn-prod"].served_version == "2"
        nb = Notebook(server.url)
        try:
            v3 = nb.http.get("model-versions/get", params={"name": "churn", "version": "3"}).json()["model_version"]
            run = nb.http.get("runs/get", params={"run_id": v3["run_id"]}).json()["run"]
            assert {m["key"] for m in run["data"]["metrics"]} >= {"auc", "accuracy"}
            assert run["data"]["params"]
            contexts = {d["tags"][0]["value"] for d in run["inputs"]["dataset_inputs"]}
            assert contexts == {"training", "evaluation"}
            assert any(t["key"] == "mlflow.source.git.commit" for t in run["data"]["tags"])
            assert nb.alias("churn", "production") == 2 and nb.alias("churn", "staging") == 3
            cfg = str(app.demo_fleet.config_path)
            r = await asyncio.to_thread(subprocess.run, [*MODELDECK, "--config", cfg, "promote", "churn", "3", "--env",
                                                         "production", "--reason", "the candidate", "--no-verify"],
                                        capture_output=True, text=True, env=run_env(), timeout=120)
            assert r.returncode == 0, r.stderr + r.stdout
            assert nb.alias("churn", "production") == 3
        finally:
            nb.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and app.source.latest()["churn-prod"].served_version != "3":
            await pilot.pause(0.25)
        assert app.source.latest()["churn-prod"].served_version == "3"  # the demo server followed MLflow
    app.shutdown()
    assert not server.alive()
