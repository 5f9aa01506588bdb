"""Release rules on real parts: metric gates that compare like with like (a real evaluate hook
subprocess, the real CLI), the release policy in a real SQLite registry (versioned, audited,
applied with or without a config, never loosened by one), approval that cannot be forced, four
eyes, and declared environments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modeldeck.core import config as configmod
from modeldeck.core import datafiles, policy, releases
from modeldeck.core.errors import GateError
from modeldeck.core.registry import SCHEMA_VERSION, Registry
from tests.conftest import MODELDECK, ROOT, run_env

PY = sys.executable
# The evaluate hook: a version's "auc" on a dataset, from a table keyed by version and the data's
# row count, so the same version scores differently on different data (as real models do).
HOOK = ("import json, sys\n"
        "version, data = sys.argv[1], sys.argv[2]\n"
        "rows = sum(1 for line in open(data) if line.strip()) - 1\n"
        "print('scoring version', version, 'on', rows, 'rows', flush=True)\n"
        "table = {('1', 300): 0.80, ('2', 300): 0.95, ('1', 200): 0.90, ('2', 200): 0.84}\n"
        "print(json.dumps({'auc': table[(version, rows)], 'rows_seen': rows}))\n")


def csv_file(path: Path, rows: int, seed: int = 0) -> Path:
    path.write_text("x,label\n" + "".join(f"{(i * 7 + seed) % 13},{i % 2}\n" for i in range(rows)))
    return path


@pytest.fixture
def world(tmp_path: Path, registry_path: Path) -> dict[str, Any]:
    """churn v1 in production (auc 0.91 on its 500-row holdout), v2 approved (auc 0.95 on its
    own 300-row holdout: recent data): their registered metrics are not comparable."""
    champ_data = csv_file(tmp_path / "champion-holdout.csv", 500, seed=1)
    cand_data = csv_file(tmp_path / "candidate-holdout.csv", 300, seed=2)
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1", metrics={"auc": 0.91}, eval_dataset=str(champ_data))
        reg.approve("churn", 1, "ok", actor="alice")
        reg.promote("churn", 1, "production", "first")
        reg.register("churn", "s3://m/2", metrics={"auc": 0.95}, eval_dataset=str(cand_data))
        reg.approve("churn", 2, "ok", actor="alice")
    hook = tmp_path / "score.py"
    hook.write_text(HOOK)
    return {"champ": champ_data, "cand": cand_data, "hook": hook, "tmp": tmp_path, "registry": registry_path}


def settings(w: dict[str, Any], *, hook: bool = False, **model: Any) -> configmod.Settings:
    m = dict(model)
    if hook:
        m["evaluate"] = {"command": [PY, str(w["hook"]), "{version}", "{data}"]}
    data: dict[str, Any] = {"registry": str(w["registry"]), "models": {"churn": m}}
    return configmod.parse(data, w["tmp"] / "modeldeck.toml")


GATE = {"gates": [{"metric": "auc", "min_absolute_change": -0.01}]}


def md(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MODELDECK, *args], capture_output=True, text=True, env=run_env(**env), cwd=cwd,
                          timeout=60)


# ---------------------------------------------------------------------------------------------
# metrics carry their evaluation data


def test_register_records_the_sha256_and_rows_of_the_evaluation_data(world: dict[str, Any]) -> None:
    with Registry(world["registry"]) as reg:
        (ev,) = reg.evaluations("churn", 2, metric="auc")
        assert (ev.value, ev.dataset_rows, ev.source) == (0.95, 300, "register")
        assert ev.dataset_sha256 == datafiles.sha256_file(world["cand"])
        assert ev.dataset_path == str(world["cand"].resolve())
        entry = reg.audit(subject="churn:2", action="register")[0]
        assert entry.after["eval_sha256"] == ev.dataset_sha256 and entry.after["eval_rows"] == 300
        # per metric and per dataset: the query issue 14 reuses
        assert [e.version for e in reg.evaluations("churn", metric="auc", dataset_sha256=ev.dataset_sha256)] == [2]


def test_row_counts_of_csv_with_quoted_newlines_jsonl_and_parquet(tmp_path: Path) -> None:
    import pandas as pd

    (tmp_path / "q.csv").write_text('a,b\n1,"two\nlines"\n3,x\n')
    (tmp_path / "r.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    pd.DataFrame({"a": range(42)}).to_parquet(tmp_path / "p.parquet")
    assert [datafiles.count_rows(tmp_path / n) for n in ("q.csv", "r.jsonl", "p.parquet")] == [2, 3, 42]


# ---------------------------------------------------------------------------------------------
# a metric gate compares the two versions on one dataset


def test_incomparable_metrics_without_an_evaluate_hook_fail_and_say_why(world: dict[str, Any]) -> None:
    s = settings(world, **GATE)
    champ_sha, cand_sha = (datafiles.sha256_file(world[k]) for k in ("champ", "cand"))
    with Registry(world["registry"]) as reg:
        p = releases.plan(s, reg, "churn", 2, "production")
        before = reg.last_audit_id()
        out = releases.execute(p, reason="better auc")
        assert reg.alias("churn", "production") == 1 and reg.last_audit_id() == before
    gate = next(g for g in p.gates if g.name == "metric:auc")
    assert not gate.passed and gate.forceable
    assert gate.detail == (f"auc of v2 is on {cand_sha[:7]}… (300 rows), of v1 on {champ_sha[:7]}… (500 rows): "
                           f"not comparable; set an evaluate hook")
    assert out.status == releases.BLOCKED


@pytest.mark.live
def test_the_gate_passes_after_modeldeck_evaluate_of_the_champion_on_the_candidates_data(
        world: dict[str, Any]) -> None:
    cfg = world["tmp"] / "evaluate.toml"
    cfg.write_text(f"registry = {json.dumps(str(world['registry']))}\n[models.churn]\n"
                   f"evaluate = {{ command = {json.dumps([PY, str(world['hook']), '{version}', '{data}'])} }}\n")
    r = md("evaluate", "churn", "1", "--data", str(world["cand"]), "--config", str(cfg), "--reason", "same data")
    assert r.returncode == 0, r.stderr
    sha = datafiles.sha256_file(world["cand"])
    assert r.stdout.strip() == f"evaluated churn version 1 on {sha[:7]}… (300 rows): auc=0.8 rows_seen=300"
    assert "  | scoring version 1 on 300 rows" in r.stderr
    with Registry(world["registry"]) as reg:
        ev = {e.metric: e for e in reg.evaluations("churn", 1, dataset_sha256=sha)}
        assert ev["auc"].value == 0.80 and ev["auc"].source == "evaluate" and ev["auc"].dataset_rows == 300
        entry = reg.audit(action="evaluate", limit=1)[0]
        assert entry.subject == "churn:1" and entry.reason == "same data" and entry.after["dataset_sha256"] == sha
        # now comparable on the candidate's holdout, with no hook in the config that releases
        p = releases.plan(settings(world, **GATE), reg, "churn", 2, "production")
    gate = next(g for g in p.gates if g.name == "metric:auc")
    assert gate.passed, gate.detail
    assert gate.detail == (f"auc on {sha[:7]}… (300 rows): 0.95 vs champion 0.8 (v1): improvement 0.15 >= "
                           f"min -0.01")
    assert gate.data["dataset_sha256"] == sha and gate.data["comparable"] is True
    # the bad input paths of `modeldeck evaluate`: one line, exit 2, nothing written
    for args, words in ((["churn", "1", "--data", "missing.csv"], "missing.csv: no such file"),
                        (["churn", "9", "--data", str(world["cand"])], "has no version 9")):
        r = md("evaluate", *args, "--config", str(cfg))
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.live
def test_the_gate_runs_the_evaluate_hook_itself_and_records_it(world: dict[str, Any]) -> None:
    s = settings(world, hook=True, **GATE)
    events: list[releases.ReleaseEvent] = []
    sha = datafiles.sha256_file(world["cand"])
    with Registry(world["registry"]) as reg:
        p = releases.plan(s, reg, "churn", 2, "production", on_event=events.append)
        gate = next(g for g in p.gates if g.name == "metric:auc")
        assert gate.passed and gate.detail.startswith(f"auc on {sha[:7]}… (300 rows): 0.95 vs champion 0.8 (v1)")
        (ev,) = reg.evaluations("churn", 1, metric="auc", dataset_sha256=sha)
        assert ev.source == "gate" and ev.value == 0.80
        assert reg.audit(action="evaluate", limit=1)[0].after["source"] == "gate"
        # recorded: planning again compares without running the hook
        n = len(events)
        again = releases.plan(s, reg, "churn", 2, "production", on_event=events.append)
        assert [g.passed for g in again.gates] == [g.passed for g in p.gates] and len(events) == n
        out = releases.execute(p, reason="better on the same data")
        assert out.ok and reg.alias("churn", "production") == 2
    assert any(e.level == "output" and "scoring version 1 on 300 rows" in e.message for e in events)


@pytest.mark.live
def test_policy_eval_data_evaluates_both_versions_on_it(world: dict[str, Any]) -> None:
    shared = csv_file(world["tmp"] / "golden.csv", 200, seed=5)
    s = settings(world, hook=True, eval_data=str(shared), **GATE)
    with Registry(world["registry"]) as reg:
        p = releases.plan(s, reg, "churn", 2, "production")
    gate = next(g for g in p.gates if g.name == "metric:auc")
    # on the golden set the candidate is worse (0.84 vs 0.90): caught, where its own holdout flattered it
    assert not gate.passed and gate.detail.startswith(f"auc on {datafiles.sha256_file(shared)[:7]}… (200 rows): "
                                                      f"0.84 vs champion 0.9 (v1)")


@pytest.mark.live
def test_a_failing_evaluate_hook_fails_the_gate_with_its_words(world: dict[str, Any]) -> None:
    s = settings(world, **GATE)
    s = configmod.parse({"registry": str(world["registry"]), "models": {"churn": {
        **GATE, "evaluate": {"command": [PY, "-c", "print('loading model'); print('not json')"]}}}},
        world["tmp"] / "modeldeck.toml")
    with Registry(world["registry"]) as reg:
        p = releases.plan(s, reg, "churn", 2, "production")
    gate = next(g for g in p.gates if g.name == "metric:auc")
    assert not gate.passed
    assert "not comparable; evaluate hook for churn version 1: its last line is not a JSON object of " \
           "metrics: 'not json'" in gate.detail


# ---------------------------------------------------------------------------------------------
# the release policy lives in the registry


POLICY = """
gates = [{ metric = "auc", min_absolute_change = -0.01 }]
bake_seconds = 120
[environments.production]
approvals = 1
[environments.canary]
"""


def cli_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process (its parser, handlers and printing): exit status, stdout, stderr."""
    from modeldeck.tui import cli

    capsys.readouterr()
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.live
def test_policy_set_is_versioned_audited_and_applied_with_no_config(world: dict[str, Any], capsys,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    f = world["tmp"] / "policy.toml"
    f.write_text(POLICY)
    reg_args = ["--registry", str(world["registry"])]
    monkeypatch.chdir(world["tmp"])  # no modeldeck.toml here: registry only
    assert cli_run(capsys, "policy", "churn", "--set", str(f), *reg_args)[0] == 2  # no reason
    rc, out, err = cli_run(capsys, "policy", "churn", "--set", str(f), "--reason", "gates for everyone", *reg_args)
    assert rc == 0, err
    assert out.strip() == "set the release policy of churn: version 1"
    rc, shown, _ = cli_run(capsys, "policy", "churn", *reg_args)
    assert "# release policy of churn: version 1" in shown and "bake_seconds = 120" in shown
    body = "\n".join(line for line in shown.splitlines() if not line.startswith("#"))
    assert policy.parse_rules(__import__("tomllib").loads(body)) == policy.parse_file(f)[0]  # round trip
    data = json.loads(cli_run(capsys, "policy", "churn", "--json", *reg_args)[1])
    assert data["policy"]["version"] == 1 and data["policy"]["rules"]["environments"]["canary"] == {}
    # applied by a promote with no config at all (a real process): the gate blocks
    r = md("promote", "churn", "2", "--env", "production", "--reason", "x", *reg_args, cwd=world["tmp"])
    assert r.returncode == 2 and "FAIL metric:auc" in r.stdout and "not comparable" in r.stderr, r.stdout + r.stderr
    with Registry(world["registry"]) as reg:
        s = configmod.load(None, world["registry"])
        p = releases.plan(s, reg, "churn", 2, "canary")  # canary: declared by the policy
        assert p.policy_version == 1 and p.bake_seconds == 120 and not p.creates_environment
        entry = reg.audit(action="policy", limit=1)[0]
        assert entry.subject == "churn:policy" and entry.reason == "gates for everyone"
        assert entry.before == {"version": None, "rules": None} and entry.after["version"] == 1
        assert reg.alias("churn", "production") == 1
    # the same file again is no new version; --history lists the versions
    assert "unchanged (still version 1)" in cli_run(capsys, "policy", "churn", "--set", str(f), "--reason", "again",
                                                    *reg_args)[1]
    assert "gates for everyone" in cli_run(capsys, "policy", "churn", "--history", *reg_args)[1]


def test_a_config_may_tighten_the_policy_but_not_loosen_it(world: dict[str, Any]) -> None:
    with Registry(world["registry"]) as reg:
        reg.set_policy("churn", policy.parse_file(_write(world["tmp"] / "p.toml", POLICY))[0], "rules")
        tighter = settings(world, bake_seconds=300, gates=[{"metric": "auc", "min_absolute_change": 0.0},
                                                           {"metric": "f1", "threshold": 0.5}],
                           environments={"production": {"approvals": 2}})
        mc, version = releases.effective_model(tighter, reg, "churn")
        assert version == 1 and mc.bake_seconds == 300 and mc.environment("production").approvals == 2
        assert {(g.metric, g.min_absolute_change, g.threshold) for g in mc.gates} == {
            ("auc", -0.01, None), ("auc", 0.0, None), ("f1", None, 0.5)}
        for loose, words in (
                ({"bake_seconds": 30}, "models.churn.bake_seconds = 30 is looser than the registry policy's "
                                       "bake_seconds = 120 (policy version 1)"),
                ({"verify_timeout": 600}, "models.churn.verify_timeout = 600 is looser than the registry "
                                          "policy's verify_timeout = 60 (the default; policy version 1 does not "
                                          "set it)"),
                ({"gates": [{"metric": "auc", "min_absolute_change": -0.05}]},
                 "models.churn.gates[0].min_absolute_change = -0.05 (auc) is looser than the registry policy's "
                 "min_absolute_change = -0.01 (policy version 1)"),
                ({"environments": {"production": {"approvals": 0}}},
                 "models.churn.environments.production.approvals = 0 is looser than the registry policy's "
                 "environments.production.approvals = 1")):
            with pytest.raises(policy.PolicyError, match="^" + __import__("re").escape(
                    f"{world['tmp'] / 'modeldeck.toml'}: {words}")):
                releases.plan(settings(world, **loose), reg, "churn", 2, "production")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.live
def test_cli_refuses_a_looser_config_naming_both_values_and_imports_a_config(world: dict[str, Any]) -> None:
    cfg = _write(world["tmp"] / "modeldeck.toml", f"registry = {json.dumps(str(world['registry']))}\n"
                 "[models.churn]\nbake_seconds = 30\ngates = [{ metric = \"auc\", min_absolute_change = -0.01 }]\n")
    # no policy yet: the config's rules apply; --from-config stores them as version 1
    r = md("policy", "churn", "--from-config", "--reason", "adopt the config's rules", "--config", str(cfg))
    assert r.returncode == 0 and "version 1" in r.stdout, r.stderr
    assert md("policy", "churn", "--from-config", "--reason", "x", "--config", str(cfg)).returncode == 2
    with Registry(world["registry"]) as reg:
        assert reg.policy("churn").rules == {"bake_seconds": 30.0, "gates": [
            {"metric": "auc", "min_absolute_change": -0.01, "greater_is_better": True}]}
        reg.set_policy("churn", {**reg.policy("churn").rules, "bake_seconds": 90.0}, "longer bake")
        before = reg.last_audit_id()
    r = md("promote", "churn", "2", "--env", "production", "--reason", "x", "--config", str(cfg))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (f"modeldeck: {cfg}: models.churn.bake_seconds = 30 is looser than the registry "
                                f"policy's bake_seconds = 90 (policy version 2); a config may only make the policy "
                                f"stricter")
    with Registry(world["registry"]) as reg:
        assert reg.last_audit_id() == before and reg.alias("churn", "production") == 1


@pytest.mark.parametrize(("text", "words"), [
    ("bake_secnds = 10\n", "p.toml: bake_secnds: unknown key (did you mean 'bake_seconds'?)"),
    ("deploy = { command = ['x'] }\n", "p.toml: deploy: a hook, not a release rule"),
    ("bake_seconds = -1\n", "p.toml: bake_seconds: must be at least 0"),
    ("[environments.production]\napprovals = 'two'\n", "p.toml: environments.production.approvals: must be a whole"),
    ("gates = [{ metric = 'auc' }]\n", "p.toml: gates[0]: needs at least one of threshold"),
    ("bake_seconds = \n", "p.toml: invalid TOML"),
    ("", "p.toml: no rules in it"),
])
def test_bad_policy_files_name_the_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    f = _write(tmp_path / "p.toml", text)
    with pytest.raises(policy.PolicyError) as e:
        policy.parse_file(f)
    assert str(e.value).startswith(f"{tmp_path}/{words}"), str(e.value)


# ---------------------------------------------------------------------------------------------
# approval is not a gate you can force; four eyes; declared environments


@pytest.mark.live
def test_force_does_not_pass_an_unapproved_version(world: dict[str, Any]) -> None:
    with Registry(world["registry"]) as reg:
        reg.register("churn", "s3://m/3")
        before = reg.last_audit_id()
    r = md("promote", "churn", "3", "--env", "production", "--reason", "hotfix", "--force", "--no-verify",
           "--registry", str(world["registry"]), cwd=world["tmp"])
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ("modeldeck: churn version 3 is pending, not approved; only an approved version can "
                                "be promoted to production; nothing was changed (--force does not pass approval)")
    with Registry(world["registry"]) as reg:
        assert reg.alias("churn", "production") == 1 and reg.last_audit_id() == before
        # the core API refuses it too: execute(force=True), and the registry's own move
        p = releases.plan(configmod.load(None, world["registry"]), reg, "churn", 3, "production")
        assert p.unforceable_failures and not p.forceable
        out = releases.execute(p, reason="hotfix", force=True)
        assert out.status == releases.BLOCKED and "(approval cannot be forced)" in out.message
        with pytest.raises(GateError, match="pending, not approved"):
            reg.promote("churn", 3, "production", "hotfix", force=True)
        assert reg.alias("churn", "production") == 1


@pytest.mark.live
def test_four_eyes_refuses_a_promoter_approving_their_own_version(world: dict[str, Any]) -> None:
    with Registry(world["registry"]) as reg:
        reg.set_policy("churn", {"environments": {"production": {"approvals": 2, "approver_is_not_promoter": True}}},
                       "four eyes")
        reg.approve("churn", 2, "looks right", actor="ana")  # a second approver, who will also promote
        assert [a for a, _ in reg.approvers("churn", 2)] == ["alice", "ana"]
    base = ["promote", "churn", "2", "--env", "production", "--reason", "ship", "--no-verify",
            "--registry", str(world["registry"])]
    r = md(*base, cwd=world["tmp"], MODELDECK_ACTOR="ana")
    assert r.returncode == 2
    assert r.stderr.strip() == ("modeldeck: production needs 2 approvals by people other than the promoter: churn "
                                "version 2 is approved by alice, ana; ana is promoting; nothing was changed")
    # the registry holds the line whatever a caller does
    with Registry(world["registry"]) as reg:
        with pytest.raises(GateError, match="ana is promoting"):
            reg.promote("churn", 2, "production", "ship", actor="ana", force=True)
        with pytest.raises(Exception, match="already approved by ana"):
            reg.approve("churn", 2, "again", actor="ana")
    r = md(*base, cwd=world["tmp"], MODELDECK_ACTOR="bob")  # two others approved: bob may promote
    assert r.returncode == 0, r.stderr
    assert "PASS approved: version 2 is approved by alice, ana (2 of 2 needed; bob is promoting)" in r.stdout
    # a rejection resets the count
    with Registry(world["registry"]) as reg:
        reg.register("churn", "s3://m/3")
        for who in ("alice", "carol"):
            reg.approve("churn", 3, "ok", actor=who)
        reg.reject("churn", 3, "leaks labels", actor="dave")
        reg.approve("churn", 3, "fixed", actor="erin")
        assert [a for a, _ in reg.approvers("churn", 3)] == ["erin"]


def test_environments_are_declared_and_a_typo_is_refused(world: dict[str, Any]) -> None:
    s = configmod.parse({"registry": str(world["registry"]), "endpoints": [
        {"name": "churn-staging", "model": "churn", "environment": "staging", "url": "http://127.0.0.1:9"}]},
        world["tmp"] / "modeldeck.toml")
    with Registry(world["registry"]) as reg:
        before = reg.last_audit_id()
        with pytest.raises(releases.UnknownEnvironmentError) as e:
            releases.plan(s, reg, "churn", 2, "prod", check_health=False)
        assert str(e.value) == ("unknown environment 'prod' (known: production, staging); --create-env to create it "
                                "(did you mean 'production'?)")
        assert releases.plan(s, reg, "churn", 2, "qa", create_env=True, check_health=False).creates_environment
        assert reg.last_audit_id() == before
        reg.promote("churn", 2, "staging", "canary")
        reg.promote("churn", 1, "staging", "back")
        choices = {c.name: c for c in releases.environment_choices(s, reg, "churn")}
    assert choices["production"].note() == "holds version 1, no earlier version to roll back to"
    assert choices["staging"].note() == "holds version 1, rollback goes to version 2, 1 endpoint"


def test_schema_1_registries_are_upgraded_with_their_metrics_and_approvals(tmp_path: Path) -> None:
    import sqlite3

    from modeldeck.core import registry as registrymod

    path = tmp_path / "old.db"
    # a registry as modeldeck wrote it before schema 2
    steps, version = registrymod.MIGRATIONS, registrymod.SCHEMA_VERSION
    registrymod.MIGRATIONS, registrymod.SCHEMA_VERSION = steps[:1], 1
    try:
        with Registry(path) as reg:
            reg.conn.execute("INSERT INTO models(name, created_at, created_by) VALUES ('churn', '2026-01-01', 'a')")
            reg.conn.execute("INSERT INTO versions(model, version, artifact, created_at, created_by, metrics, "
                             "approval, approval_by, approval_at) VALUES ('churn', 1, 's3://1', '2026-01-01', 'a', "
                             "'{\"auc\": 0.9}', 'approved', 'alice', '2026-01-02')")
    finally:
        registrymod.MIGRATIONS, registrymod.SCHEMA_VERSION = steps, version
    with Registry(path) as reg:
        (ev,) = reg.evaluations("churn", 1)
        assert (ev.metric, ev.value, ev.dataset_sha256) == ("auc", 0.9, None)
        assert reg.approvers("churn", 1) == [("alice", "2026-01-02")]
    stored = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert stored == str(SCHEMA_VERSION)


def test_recent_and_glob_eval_data_are_written_once_per_content(tmp_path: Path) -> None:
    from modeldeck.core import evaluation
    from modeldeck.core.demo.recorder import capture_record, ground_truth_record

    (tmp_path / "cap").mkdir()
    (tmp_path / "gt").mkdir()
    with open(tmp_path / "cap" / "c-1.jsonl", "w") as cap, open(tmp_path / "gt" / "g-1.jsonl", "w") as gt:
        for i in range(30):
            body = json.dumps({"instances": [{"x": i, "plan": "basic"}]})
            cap.write(json.dumps(capture_record(f"e{i}", body, json.dumps({"predictions": [0]}))) + "\n")
            if i % 3:  # a third never gets a label
                gt.write(json.dumps(ground_truth_record(f"e{i}", [i % 2])) + "\n")
        gt.write(json.dumps(ground_truth_record("e29", [0])) + "\n")  # a corrected label: the newest wins
    s = configmod.parse({"registry": "r.db", "models": {"churn": {"eval_rows": 5}}, "endpoints": [
        {"name": "churn-prod", "model": "churn", "url": "http://127.0.0.1:9", "capture": "cap/*.jsonl",
         "labels": "gt/*.jsonl"}]}, tmp_path / "modeldeck.toml")
    ref = evaluation.resolve_data(s, "churn", "recent", environment="production")
    import pandas as pd

    frame = pd.read_csv(ref.path)
    assert ref.rows == 5 and list(frame.columns) == ["x", "plan", "label"]
    assert frame["x"].tolist() == [22, 23, 25, 26, 28, 29][-5:] and frame["label"].tolist() == [1, 1, 0, 0, 0]
    assert evaluation.resolve_data(s, "churn", "recent", environment="production") == ref  # same rows, same file
    with pytest.raises(Exception, match="no endpoint of churn in staging has both capture and labels"):
        evaluation.resolve_data(s, "churn", "recent", environment="staging")
    # a glob of several files: combined into one CSV, named by its content
    csv_file(tmp_path / "a.csv", 3)
    csv_file(tmp_path / "b.csv", 4, seed=1)
    combined = evaluation.resolve_data(s, "churn", "*.csv")
    assert combined.rows == 7 and combined.sha256 == datafiles.sha256_file(combined.path)
    single = evaluation.resolve_data(s, "churn", "a.csv")  # relative to the config's folder
    assert single.path == str((tmp_path / "a.csv").resolve()) and single.rows == 3
