"""The registry on real SQLite files: lineage, approvals, aliases, history, audit chain,
schema guards, and four real writer processes at once."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modeldeck.core.errors import ConflictError, GateError, NotFoundError, RegistryError
from modeldeck.core.registry import SCHEMA_VERSION, Registry, current_actor, format_time
from tests.conftest import ROOT, run_env


@pytest.fixture
def reg(registry_path: Path):
    with Registry(registry_path) as r:
        yield r


def _approved(reg: Registry, n: int, model: str = "churn") -> None:
    for i in range(n):
        v = reg.register(model, f"s3://models/{model}/{i + 1}", metrics={"auc": 0.8 + i / 100})
        reg.approve(model, v.version, "evaluated")


def test_register_records_lineage_and_numbers_versions(reg: Registry, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    ref = tmp_path / "ref.csv"
    ref.write_text("a,b\n1,2\n")
    v1 = reg.register("churn", "s3://m/1", dataset=str(data), reference=str(ref), code_version="abc123",
                      params={"depth": 3}, metrics={"auc": 0.91}, tags={"team": "growth"})
    v2 = reg.register("churn", "s3://m/2")
    other = reg.register("fraud", "s3://f/1")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    got = reg.version("churn", 1)
    assert got.dataset_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert got.reference_path == str(ref.resolve())
    assert got.params == {"depth": 3} and got.metrics == {"auc": 0.91} and got.tags == {"team": "growth"}
    assert got.code_version == "abc123" and got.approval == "pending" and got.created_by == "tester"
    assert [m.name for m in reg.models()] == ["churn", "fraud"]
    assert reg.model("churn").latest_version == 2


def test_bad_register_input_writes_nothing(reg: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no such file"):
        reg.register("churn", "s3://m/1", dataset=str(tmp_path / "missing.csv"))
    with pytest.raises(RegistryError, match="metric 'auc' must be a number"):
        reg.register("churn", "s3://m/1", metrics={"auc": "high"})
    with pytest.raises(RegistryError, match="artifact"):
        reg.register("churn", " ")
    assert reg.models() == []
    assert reg.verify_audit().checked == 0


def test_approve_reject_need_a_reason_and_a_real_version(reg: Registry) -> None:
    reg.register("churn", "s3://m/1")
    with pytest.raises(RegistryError, match="reason is required"):
        reg.approve("churn", 1, "")
    with pytest.raises(NotFoundError, match=r"model churn has no version 7 \(latest is 1\)"):
        reg.approve("churn", 7, "ok")
    with pytest.raises(NotFoundError, match="no model named 'chrun'.*did you mean 'churn'"):
        reg.approve("chrun", 1, "ok")
    assert reg.approve("churn", 1, "offline eval ok").approval == "approved"
    assert reg.reject("churn", 1, "bias found").approval == "rejected"
    v = reg.version("churn", 1)
    assert (v.approval_reason, v.approval_by) == ("bias found", "tester")


def test_production_needs_an_approved_version(reg: Registry) -> None:
    reg.register("churn", "s3://m/1")
    with pytest.raises(GateError, match="pending, not approved"):
        reg.promote("churn", 1, "production", "ship it")
    assert reg.alias("churn", "production") is None
    # staging takes anything; approval is never forced (force only marks metric/health gates forced)
    reg.promote("churn", 1, "staging", "try it")
    with pytest.raises(GateError, match="pending, not approved"):
        reg.promote("churn", 1, "production", "incident override", force=True)
    assert reg.alias("churn", "production") is None
    reg.approve("churn", 1, "ok")
    reg.promote("churn", 1, "production", "gates forced by the caller", force=True)
    entry = reg.audit(action="promote")[0]
    assert entry.after == {"version": 1, "forced": True}


def test_promote_is_compare_and_set(reg: Registry) -> None:
    _approved(reg, 3)
    reg.promote("churn", 1, "production", "first", expect=None)
    reg.promote("churn", 2, "production", "second", expect=1)
    with pytest.raises(ConflictError, match="moved to version 2 by tester .* since you saw it at version 1"):
        reg.promote("churn", 3, "production", "stale view", expect=1)
    assert reg.alias("churn", "production") == 2
    assert len(reg.history("churn", "production")) == 2


def test_rollback_walks_back_through_promotions(reg: Registry) -> None:
    _approved(reg, 4)
    for n in (1, 2, 3):
        reg.promote("churn", n, "production", f"release {n}")
    assert reg.rollback_target("churn", "production") == 2
    assert reg.rollback("churn", "production", "v3 bad").to_version == 2
    assert reg.rollback("churn", "production", "v2 bad too").to_version == 1
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("churn", "production", "again")
    assert reg.rollback("churn", "production", "pin", to=4).to_version == 4
    assert reg.rollback("churn", "production", "undo pin").to_version == 1
    with pytest.raises(RegistryError, match="nothing in staging"):
        reg.rollback("churn", "staging", "x")


def test_rollback_to_a_rejected_version_is_refused_even_forced(reg: Registry) -> None:
    _approved(reg, 2)
    reg.promote("churn", 1, "production", "a")
    reg.promote("churn", 2, "production", "b")
    reg.reject("churn", 1, "leaks labels")
    for force in (False, True):
        with pytest.raises(GateError, match="rejected; production cannot be rolled back to it"):
            reg.rollback("churn", "production", "back", force=force)
    assert reg.alias("churn", "production") == 2
    # only undoing a failed release puts back what was there, rejected or not
    assert reg.rollback("churn", "production", "automatic: bake failed", undo=True).to_version == 1


def test_what_served_production_at_a_time(reg: Registry) -> None:
    _approved(reg, 3)
    reg.promote("churn", 1, "production", "a")
    reg.promote("churn", 2, "production", "b")
    reg.promote("churn", 3, "production", "c")
    # Rewrite the times so the history spans yesterday: 1 at 09:00, 2 at 14:00, 3 at 16:00.
    day = (datetime.now(timezone.utc) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    for hid, hour in ((1, 9), (2, 14), (3, 16)):
        reg.conn.execute("UPDATE alias_history SET at=? WHERE id=?", (format_time(day.replace(hour=hour)), hid))
    assert reg.alias_at("churn", "production", day.replace(hour=14, minute=5)).to_version == 2
    assert reg.alias_at("churn", "production", day.replace(hour=8)) is None
    assert reg.alias_at("churn", "production", day.replace(hour=23)).to_version == 3
    plan = reg.conn.execute("EXPLAIN QUERY PLAN SELECT * FROM alias_history WHERE model=? AND environment=? "
                            "AND at <= ? ORDER BY at DESC, id DESC LIMIT 1", ("churn", "production", "x")).fetchall()
    assert any("USING INDEX" in str(tuple(r)) for r in plan)


def test_audit_chain_detects_edits_and_deletions(registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        _approved(reg, 3)
        reg.promote("churn", 1, "production", "a")
        reg.tag("churn", 1, "owner", "ana")
        result = reg.verify_audit()
        assert result.ok and result.checked == 8
        entry = reg.audit(action="tag")[0]
        assert (entry.actor, entry.subject, entry.after) == ("tester", "churn:1", {"owner": "ana"})

    def tamper(sql: str) -> str:
        copy = registry_path.with_suffix(".copy.db")
        src = sqlite3.connect(registry_path)
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.execute(sql)
        dst.commit()
        dst.close()
        with Registry(copy) as r:
            out = r.verify_audit()
        copy.unlink()
        return f"{out.ok} {out.first_bad} {out.problem}"

    assert tamper("UPDATE audit SET reason='nothing to see' WHERE id=4").startswith("False 4 its contents")
    assert tamper("DELETE FROM audit WHERE id=5").startswith("False 5 entry 5 is missing")
    assert tamper("DELETE FROM audit WHERE id=8").startswith("False 8 the log ends at entry 7")
    # Rewriting an entry and its hash breaks the link from the next one.
    assert tamper("UPDATE audit SET actor='mallory', hash='ab' WHERE id=3").startswith("False 3")


def test_every_mutation_is_audited_with_before_and_after(reg: Registry) -> None:
    _approved(reg, 2)
    reg.promote("churn", 1, "production", "first")
    reg.promote("churn", 2, "production", "better auc")
    reg.rollback("churn", "production", "latency")
    actions = [e.action for e in reversed(reg.audit())]
    assert actions == ["register", "approve", "register", "approve", "promote", "promote", "rollback"]
    last = reg.audit(limit=1)[0]
    assert (last.before, last.after, last.reason, last.subject) == (
        {"version": 2}, {"version": 1}, "latency", "churn@production")


@pytest.mark.live
def test_actor_from_env_or_login_and_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    assert current_actor() == "tester"
    monkeypatch.delenv("MODELDECK_ACTOR")
    monkeypatch.setenv("SSH_CLIENT", "10.1.2.3 52311 22")
    monkeypatch.setenv("USER", "ana")
    monkeypatch.setenv("LOGNAME", "ana")
    assert current_actor() == "ana@10.1.2.3"


def test_not_sqlite_file_is_left_untouched(tmp_path: Path) -> None:
    p = tmp_path / "registry.db"
    p.write_text("this is my thesis, not a database\n")
    before = p.read_bytes()
    with pytest.raises(RegistryError, match="not a modeldeck registry"):
        Registry(p)
    assert p.read_bytes() == before
    assert not (tmp_path / "registry.db-wal").exists()


def test_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    p = tmp_path / "other.db"
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE notes(x)")
    c.commit()
    c.close()
    before = p.read_bytes()
    with pytest.raises(RegistryError, match="not a modeldeck registry"):
        Registry(p)
    assert p.read_bytes() == before


def test_newer_schema_is_refused_untouched(registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1")
        reg.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
        reg.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = registry_path.read_bytes()
    with pytest.raises(RegistryError, match="newer modeldeck"):
        Registry(registry_path)
    assert registry_path.read_bytes() == before


def test_unreadable_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="is a folder"):
        Registry(tmp_path)
    with pytest.raises(RegistryError, match="no registry here"):
        Registry(tmp_path / "none.db", create=False)
    p = tmp_path / "locked.db"
    Registry(p).close()
    p.chmod(0)
    try:
        if not __import__("os").access(p, __import__("os").R_OK):  # root reads anything
            with pytest.raises(RegistryError, match="permission denied"):
                Registry(p)
    finally:
        p.chmod(0o644)


def test_read_only_connection_refuses_writes(registry_path: Path) -> None:
    Registry(registry_path).close()
    with Registry(registry_path, readonly=True) as ro:
        assert ro.models() == []
        with pytest.raises(RegistryError, match="read-only"):
            ro.register("churn", "s3://m/1")


def test_jobs_and_cooldown(reg: Registry) -> None:
    reg.register("churn", "s3://m/1")
    job = reg.create_job("churn", trigger="drift", runner="command", reason="psi 0.4")
    assert job.status == "queued"
    with pytest.raises(ConflictError, match="cooling down"):
        reg.create_job("churn", trigger="drift", runner="command", not_since=job.created_at)
    reg.update_job(job.id, status="running", pid=123)
    v = reg.register("churn", "s3://m/2", job_id=job.id)
    done = reg.update_job(job.id, status="succeeded", exit_code=0)
    assert (done.produced_version, done.exit_code, done.status) == (v.version, 0, "succeeded")
    assert done.started_at and done.ended_at
    with pytest.raises(ConflictError, match="already ended"):
        reg.update_job(job.id, status="failed")
    assert [e.action for e in reg.audit(action="retrain")] == ["retrain.succeeded", "retrain.start"]


def test_snapshots_are_stored_and_pruned(reg: Registry) -> None:
    old = format_time(datetime.now(timezone.utc) - timedelta(hours=5))
    now = format_time(datetime.now(timezone.utc))
    reg.store_snapshots([("churn-prod", old, {"status": "UP"}), ("churn-prod", now, {"status": "DOWN"})],
                        source="report")
    assert [s["status"] for s in reg.snapshots("churn-prod")] == ["UP", "DOWN"]
    assert reg.latest_snapshots()["churn-prod"]["status"] == "DOWN"
    reg.store_snapshots([], retention_hours=1)
    assert [s["status"] for s in reg.snapshots("churn-prod")] == ["DOWN"]


@pytest.mark.live
def test_four_writer_processes_lose_nothing(registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        _approved(reg, 3)
        reg.promote("churn", 1, "production", "seed")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "registry_worker.py"), str(registry_path),
                               str(seed), "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=run_env(), cwd=ROOT) for seed in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert all(r["unexpected"] == [] for r in results), [r["unexpected"] for r in results]
    assert sum(r["register"] + r["promote"] + r["rollback"] + r["conflict"] + r["refused"] for r in results) > 300

    with Registry(registry_path) as reg:
        # every version registered, numbered without gaps
        versions = [v.version for v in reg.versions("churn")]
        assert versions == list(range(1, 4 + sum(r["register"] for r in results)))
        # every successful move is in the history, and the history is a chain
        moved = sum(r["promote"] + r["rollback"] for r in results)
        for env in ("production", "staging"):
            hist = list(reversed(reg.history("churn", env)))
            for prev, nxt in itertools.pairwise(hist):
                assert nxt.from_version == prev.to_version, (env, prev, nxt)
            if hist:
                assert reg.alias("churn", env) == hist[-1].to_version
        total_history = len(reg.history("churn"))
        assert total_history == moved + 1  # plus the seed promotion
        verify = reg.verify_audit()
        assert verify.ok, verify.describe()
        assert verify.checked == 7 + 2 * sum(r["register"] for r in results) + moved


def test_unset_undoes_a_first_release(reg: Registry) -> None:
    _approved(reg, 2)
    reg.promote("churn", 1, "staging", "first ever")
    with pytest.raises(ConflictError):
        reg.unset_alias("churn", "staging", "undo", expect=2)
    change = reg.unset_alias("churn", "staging", "verification failed", expect=1)
    assert (change.from_version, change.to_version, change.action) == (1, None, "unset")
    assert reg.alias("churn", "staging") is None
    assert reg.rollback_target("churn", "staging") is None
    with pytest.raises(RegistryError, match="nothing in staging"):
        reg.unset_alias("churn", "staging", "again")
    reg.promote("churn", 2, "staging", "second try", expect=None)
    assert [h.action for h in reg.history("churn", "staging")] == ["promote", "unset", "promote"]
    assert reg.audit(limit=2)[1].after == {"version": None}
    assert reg.verify_audit().ok


@pytest.mark.live
def test_two_connections_in_one_process_lose_no_commits(registry_path: Path) -> None:
    """Opening a second Registry in a process must not drop the first one's file locks (a
    plain open()/close() of the database file does), or another process's checkpoint can
    delete the WAL under it and later commits vanish."""
    def other_process(n: int) -> None:
        code = (f"from modeldeck.core.registry import Registry\nr = Registry({str(registry_path)!r})\n"
                f"r.store_snapshots([('e', '2026-01-01T00:00:0{n}.000000Z', {{'by': 'other'}})])\nr.close()\n")
        subprocess.run([sys.executable, "-c", code], check=True, env=run_env(), cwd=ROOT, timeout=60)

    Registry(registry_path).close()
    first = Registry(registry_path)
    first.latest_snapshots()
    second = Registry(registry_path)  # e.g. the poller's reader thread beside the UI's connection
    second.latest_snapshots()
    other_process(1)
    first.store_snapshots([("e", "2026-01-01T00:00:05.000000Z", {"by": "first"})])
    other_process(2)
    second.close()
    first.close()
    conn = sqlite3.connect(registry_path)
    assert conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 3
    conn.close()


def test_stored_json_reads_what_json_dumps_wrote() -> None:
    """Snapshot rows are parsed with orjson; the NaN an old row may hold (json.dumps wrote it)
    is still read, and text that is no JSON at all is the default. Other rows keep json.loads,
    which keeps an integer past 64 bits exact (orjson makes it a float)."""
    import math

    from modeldeck.core.registry import _loads, _loads_fast

    assert _loads_fast('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert math.isnan(_loads_fast('{"a": NaN}')["a"]) and _loads_fast('[Infinity]') == [math.inf]
    assert _loads_fast("not json", 5) == 5 and _loads_fast("", 7) == 7 and _loads_fast(None) is None
    assert _loads('{"a": 123456789012345678901234567890}') == {"a": 123456789012345678901234567890}
