"""Registry speed at scale: 1,000 models x 100 versions with 1,000,000 audit rows.

Prints median and p95 milliseconds for listing models, listing one model's versions, one
model's alias history, promote and rollback (each through the real ``Registry`` API, each
write a full transaction with its chained audit row), and the time of ``audit --verify``.
Baselines measured in the same run on the same file: a bare indexed SELECT and a bare
one-row INSERT transaction (raw sqlite3), and a plain SHA-256 pass over the audit rows.

Targets (2 cores): reads < 20 ms p95, writes < 10 ms p95, verify of 1,000,000 rows < 10 s.
Run: .venv/bin/python benchmarks/bench_registry.py [--models 1000] [--versions 100] [--audit 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeldeck.core.registry import GENESIS, Registry, entry_hash, utcnow


def build(path: Path, n_models: int, n_versions: int, n_audit: int) -> None:
    with Registry(path):
        pass  # schema
    import sqlite3

    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("BEGIN")
    at = utcnow()
    c.executemany("INSERT INTO models(name, created_at, created_by, description) VALUES (?,?,?,?)",
                  [(f"model-{m:04d}", at, "bench", "") for m in range(n_models)])
    metrics = json.dumps({"auc": 0.9, "f1": 0.8})
    params = json.dumps({"depth": 6, "lr": 0.1})
    c.executemany(
        "INSERT INTO versions(model, version, artifact, created_at, created_by, dataset_sha256, code_version, "
        "params, metrics, tags, approval) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        ((f"model-{m:04d}", v, f"s3://bucket/model-{m:04d}/{v}", at, "bench", "ab" * 32, "deadbeef", params,
          metrics, "{}", "approved") for m in range(n_models) for v in range(1, n_versions + 1)))
    # approved means an approval decision too (the registry counts approvers in `approvals`)
    c.executemany("INSERT INTO approvals(model, version, decision, actor, at, reason) VALUES (?,?,?,?,?,?)",
                  ((f"model-{m:04d}", v, "approve", "bench", at, "bulk") for m in range(n_models)
                   for v in range(1, n_versions + 1)))
    # Each model: production promoted through versions 1..10, staging through 1..20.
    hist = []
    for m in range(n_models):
        for env, upto in (("production", 10), ("staging", 20)):
            prev = None
            for v in range(1, upto + 1):
                hist.append((f"model-{m:04d}", env, prev, v, "promote", "bench", at, "release"))
                prev = v
    c.executemany("INSERT INTO alias_history(model, environment, from_version, to_version, action, actor, at, "
                  "reason) VALUES (?,?,?,?,?,?,?,?)", hist)
    c.execute("INSERT INTO aliases(model, environment, version, updated_at, updated_by) SELECT model, environment, "
              "max(to_version), ?, 'bench' FROM alias_history GROUP BY model, environment", (at,))
    prev = GENESIS

    def audit_rows():
        nonlocal prev
        for i in range(1, n_audit + 1):
            subject = f"model-{i % n_models:04d}:{i % n_versions + 1}"
            before, after = '{"approval":"pending"}', '{"approval":"approved"}'
            h = entry_hash(prev, i, at, "bench", "approve", subject, before, after, "bulk")
            yield (i, at, "bench", "approve", subject, before, after, "bulk", prev, h)
            prev = h

    c.executemany("INSERT INTO audit(id, at, actor, action, subject, before, after, reason, prev_hash, hash) "
                  "VALUES (?,?,?,?,?,?,?,?,?,?)", audit_rows())
    c.execute("UPDATE meta SET value=? WHERE key='audit_head'", (json.dumps({"id": n_audit, "hash": prev}),))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    s = sorted(ms)
    return statistics.median(s), s[max(0, int(len(s) * 0.95) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=100)
    ap.add_argument("--audit", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "registry.db"
        t = time.perf_counter()
        build(path, a.models, a.versions, a.audit)
        print(f"built {a.models} models x {a.versions} versions, {a.audit:,} audit rows in "
              f"{time.perf_counter() - t:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        rnd = random.Random(1)
        reg = Registry(path)
        models = [f"model-{m:04d}" for m in range(a.models)]

        def promote() -> None:
            m = rnd.choice(models)
            cur = reg.alias(m, "production")
            target = rnd.randint(11, a.versions)
            if target == cur:
                target = 11 if cur != 11 else 12
            reg.promote(m, target, "production", "bench", expect=cur)

        def rollback() -> None:
            m = rnd.choice(models)
            reg.rollback(m, "production", "bench", expect=reg.alias(m, "production"))

        rows = [
            ("list models", timed(reg.models, a.runs // 4), 20),
            ("versions of one model", timed(lambda: reg.versions(rnd.choice(models)), a.runs), 20),
            ("history of one model", timed(lambda: reg.history(rnd.choice(models)), a.runs), 20),
            ("promote (CAS + history + audit)", timed(promote, a.runs), 10),
            ("rollback (CAS + history + audit)", timed(rollback, a.runs), 10),
        ]
        import sqlite3

        raw = sqlite3.connect(path, isolation_level=None)
        base_read = timed(lambda: raw.execute("SELECT * FROM versions WHERE model=?",
                                              (rnd.choice(models),)).fetchall(), a.runs)
        raw.execute("CREATE TABLE IF NOT EXISTS bench_scratch(x)")

        def bare_write() -> None:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("INSERT INTO bench_scratch VALUES (1)")
            raw.execute("COMMIT")

        base_write = timed(bare_write, a.runs)
        print(f"\n{'operation':36} {'median ms':>10} {'p95 ms':>8} {'target':>8}  vs baseline p95")
        for name, ms, target in rows:
            med, p95 = summary(ms)
            base = summary(base_write if target == 10 else base_read)[1]
            ok = "ok" if p95 < target else "MISSED"
            print(f"{name:36} {med:10.2f} {p95:8.2f} {'<' + str(target):>8}  {p95 / base:5.1f}x  {ok}")
        print(f"{'baseline: raw indexed SELECT':36} {summary(base_read)[0]:10.2f} {summary(base_read)[1]:8.2f}")
        print(f"{'baseline: raw 1-row INSERT txn':36} {summary(base_write)[0]:10.2f} {summary(base_write)[1]:8.2f}")

        t = time.perf_counter()
        result = reg.verify_audit()
        verify_s = time.perf_counter() - t
        t = time.perf_counter()
        for (h,) in raw.execute("SELECT hash FROM audit"):
            hashlib.sha256(h.encode()).hexdigest()
        base_s = time.perf_counter() - t
        print(f"\naudit --verify of {result.checked:,} rows: {verify_s:.2f} s ({'ok' if verify_s < 10 else 'MISSED'}"
              f" < 10 s; chain {'intact' if result.ok else 'BROKEN'}); baseline read+sha256 of the hash column: "
              f"{base_s:.2f} s ({verify_s / base_s:.1f}x)")
        reg.close()
        raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
