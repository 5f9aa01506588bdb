"""Rollouts on the headless demo fleet: healthy and faulty candidates promoted one after the other.

Each candidate is a copy of the version production of ``churn`` holds (same artifact, reference
and metrics on the same holdout, so the gates pass), healthy or tagged ``demo_fault=errors`` /
``demo_fault=slow``; it is approved, promoted (gates and the alias move here, the rest in its
detached rollout supervisor) and followed to its end. Prints:

- rollouts done / rolled back (want: every healthy one done, every faulty one rolled back);
- the median time from the alias move to ``done`` for the healthy ones, with its ratio to the
  configured bake (the baseline measured in the same run: what the bake itself must take);
- the supervisor's CPU while baking (utime + stime of its process over the bake, from /proc),
  as a share of one core (want under 5 %).

Bake durations are small so it runs in a few minutes:

    python benchmarks/bench_rollout.py [--healthy 10] [--faulty 10] [--bake 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modeldeck.core import releases, rollout  # noqa: E402
from modeldeck.core.config import parse_file  # noqa: E402
from modeldeck.core.demo.fleet import FleetSettings, start_subprocess  # noqa: E402
from modeldeck.core.demo.seed import register_candidate  # noqa: E402
from modeldeck.core.registry import Registry, stored_time  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def fast(settings, bake: float):
    rules = {"bake_seconds": bake, "verify_timeout": 20.0, "bake_min_requests": 30, "bake_max_seconds": 3 * bake}
    with Registry(settings.registry) as reg:
        rec = reg.policy("churn")
        reg.set_policy("churn", {**(rec.rules if rec else {}), **rules}, "benchmark: a short bake")
    models = {n: dataclasses.replace(m, **rules) for n, m in settings.models.items()}
    return dataclasses.replace(settings, models=models, report_sample=2.0)


def one(settings, fault: str | None) -> dict:
    with Registry(settings.registry) as reg:
        version = register_candidate(reg, "churn", fault=fault)
        reg.approve("churn", version, "benchmark candidate", actor="approver")
        plan = releases.plan(settings, reg, "churn", version, "production")
        if plan.blocked:
            return {"fault": fault, "state": "blocked", "message": "; ".join(g.detail for g in plan.failed_gates)}
        started = rollout.start(plan, reason=f"benchmark {fault or 'healthy'}", registry=reg)
        r = started.rollout
        assert r is not None
        cpu0 = wall0 = cpu1 = wall1 = None
        deadline = time.monotonic() + 180
        while r.active and time.monotonic() < deadline:
            time.sleep(0.2)
            r = reg.rollout(r.id)
            if r.state == "baking" and r.pid:
                c = cpu_seconds(r.pid)
                if c is not None:
                    if cpu0 is None:
                        cpu0, wall0 = c, time.monotonic()
                    cpu1, wall1 = c, time.monotonic()
        if r.active:
            rollout.reconcile(reg, settings)
            r = reg.rollout(r.id)
        moved = next((c.at for c in reg.history("churn", "production") if c.id == r.change_id), None)
    t_move, t_end = stored_time(moved) if moved else None, stored_time(r.ended_at) if r.ended_at else None
    took = (t_end - t_move).total_seconds() if t_move and t_end else None
    share = None
    if cpu0 is not None and wall1 and wall0 and wall1 - wall0 >= 1.0:
        share = (cpu1 - cpu0) / (wall1 - wall0)
    return {"fault": fault, "state": r.state, "message": r.message, "took": took, "cpu": share, "id": r.id}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--healthy", type=int, default=10)
    ap.add_argument("--faulty", type=int, default=10)
    ap.add_argument("--bake", type=float, default=6.0, help="bake seconds of each rollout (default 6)")
    args = ap.parse_args()
    wd = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    quiet = FleetSettings(drift_at=-1.0, errors_at=-1.0, seed=3, poll_interval=1.0)
    t0 = time.monotonic()
    fleet = start_subprocess(wd, ready_timeout=120, settings=quiet)
    print(f"demo fleet ready in {time.monotonic() - t0:.1f} s ({wd})")
    results = []
    try:
        settings = fast(parse_file(fleet.config_path), args.bake)
        order: list[str | None] = []
        faults = ["errors", "slow"]
        for i in range(max(args.healthy, args.faulty)):
            if i < args.healthy:
                order.append(None)
            if i < args.faulty:
                order.append(faults[i % 2])
        for fault in order:
            res = one(settings, fault)
            results.append(res)
            took = "-" if res.get("took") is None else f"{res['took']:.1f} s"
            cpu = "-" if res.get("cpu") is None else f"{res['cpu'] * 100:.2f} %"
            print(f"  rollout {res.get('id', '-'):>3} {fault or 'healthy':8} {res['state']:12} move->end {took:>7}  "
                  f"cpu {cpu:>7}  {res['message'][:110]}", flush=True)
    finally:
        fleet.stop()
    healthy = [r for r in results if r["fault"] is None]
    faulty = [r for r in results if r["fault"] is not None]
    done = sum(r["state"] == "done" for r in healthy)
    rolled = sum(r["state"] == "rolled_back" for r in faulty)
    print(f"healthy candidates done: {done} / {len(healthy)}; faulty candidates rolled back: {rolled} / {len(faulty)}")
    times = [r["took"] for r in healthy if r["state"] == "done" and r.get("took") is not None]
    if times:
        med = statistics.median(times)
        print(f"median alias move -> done: {med:.1f} s; baseline (the configured bake) {args.bake:g} s; "
              f"ratio {med / args.bake:.2f}")
    cpus = [r["cpu"] for r in results if r.get("cpu") is not None]
    if cpus:
        print(f"supervisor CPU while baking: median {statistics.median(cpus) * 100:.2f} %, max {max(cpus) * 100:.2f} % "
              f"of one core (baseline: one core = 100 %; want under 5 %)")
    ok = done == len(healthy) and rolled == len(faulty)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
