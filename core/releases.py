"""Promotion and rollback as a release engineer expects them: a plan with its gates, a
compare-and-set alias move with the gate results in the audit entry, the deploy hook, rollout
verification, a baking period, and an automatic rollback when any of it fails.

Two steps, so a screen can show the plan and ask before anything is written:

    p = plan(settings, registry, "churn", 4, "production")      # reads only
    # show p.from_version -> p.to_version, p.gates, p.confirm ... ask for a reason
    outcome = execute(p, reason="better AUC", on_event=print)   # writes, hooks, watches

:func:`execute` is synchronous and may take ``verify_timeout + bake_seconds`` (plus the hook):
run it in a worker thread. It opens its own registry connection. ``on_event`` is called from
that thread with a :class:`ReleaseEvent` for each step (forward it to the UI thread);
``stop_event`` (a ``threading.Event``) aborts a rollout that is being verified or baked and
rolls it back. Endpoint polling uses :class:`core.poller.Poller` on a private event loop; tests
inject ``poll``, ``clock`` and ``sleep``.

Rules (:func:`effective_model`): the registry's release policy for the model
(``core.policy``), made stricter by the config's ``[models.X]`` where it says so; a looser
config value raises PolicyError. Environments must be declared (:func:`resolve_environment`):
held by an alias, named by an endpoint (configured, or found by ``[[discover]]``: then
Prometheus is asked, and its being unreachable is said as such) or listed in a policy, else
``create_env``.

Gates (each a :class:`GateResult` with its numbers):

- ``approved`` (production, and any environment whose rules ask for ``approvals`` or four
  eyes): enough distinct approvers, the promoter not counted under
  ``approver_is_not_promoter`` (for a rollback: the target is not rejected). Never forceable:
  ``execute(force=True)`` still blocks on it, and the registry refuses the move itself;
- ``metric:<name>`` per gate, champion/challenger as MLflow's ``MetricThreshold``, on one
  dataset both versions were measured on (:class:`_MetricGates`: a common dataset, else the
  evaluate hook on ``eval_data``, else a failure saying why): with ``greater_is_better`` the
  candidate must reach ``threshold``, ``candidate - champion >= min_absolute_change`` and
  ``(candidate - champion) / |champion| >= min_relative_change`` (mirrored when lower is better;
  a champion of 0 falls back to "strictly better"). A missing candidate metric fails; without a
  champion the threshold alone is judged. Not applied to rollbacks;
- ``healthy``: the environment's endpoints are not DOWN and not over their critical error
  ratio / p95 thresholds (promotions only: a rollback is usually the cure for an unhealthy
  environment).

``force`` passes failed metric and health gates (recorded as forced, with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modeldeck.core import datafiles, evaluation, judge, paths, policy
from modeldeck.core.config import (
    ConfigError,
    EndpointConfig,
    EnvironmentRules,
    GateConfig,
    HookConfig,
    ModelConfig,
    Settings,
)
from modeldeck.core.errors import (
    ConflictError,
    DiscoveryUnavailableError,
    ModeldeckError,
    RegistryError,
    UnknownEnvironmentError,
)
from modeldeck.core.evaluation import DataRef
from modeldeck.core.hooks import (
    Redactor,
    config_file,
    exit_words,
    hook_cwd,
    hook_env,
    json_body,
    post_webhook,
    render_argv,
    start_command,
    stream_process,
    timed_out_words,
    webhook_client,
    webhook_headers,
)
from modeldeck.core.registry import (
    PROTECTED_ENVIRONMENTS,
    AliasChange,
    Evaluation,
    Registry,
    Version,
    current_actor,
    open_registry,
    utcnow,
)
from modeldeck.core.snapshot import DOWN, EndpointSnapshot
from modeldeck.core.textfmt import duration, finite, one_line

# ReleaseOutcome.status
RELEASED = "released"  # alias moved, hook ran, verified and baked (or verification skipped: see notes)
BLOCKED = "blocked"  # a gate failed and it was not forced: nothing was written
HOOK_FAILED = "hook_failed"  # the deploy hook failed: the alias move was undone
ROLLED_BACK = "rolled_back"  # verification or baking failed: rolled back automatically
UNVERIFIED = "unverified"  # a rollback whose endpoints did not come to the version in time
UNDO_FAILED = "undo_failed"  # something failed and the alias could not be put back

DOWN_POLLS = 2  # consecutive DOWN polls during baking that fail it


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class GateResult:
    name: str  # approved | metric:<name> | healthy
    passed: bool
    detail: str  # one line with the numbers
    data: Mapping[str, Any] = field(default_factory=dict)
    forceable: bool = True  # --force may release past it (metric and health gates); approval never

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "forceable": self.forceable,
                **dict(self.data)}


@dataclass(frozen=True)
class ReleaseEvent:
    """One step of a release, for a live view. ``stage``: plan, gates, alias, hook, verify,
    bake, rollback, done. ``level``: info, progress, output (a hook's output line), warning,
    error, success."""

    stage: str
    message: str
    level: str = "info"
    data: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "message": self.message, "level": self.level, "data": dict(self.data),
                "at": self.at}


@dataclass(frozen=True)
class ReleasePlan:
    """What a promote or rollback will do; built by :func:`plan`, which only reads."""

    settings: Settings
    model: str
    environment: str
    action: str  # promote | rollback
    from_version: int | None  # what holds the environment now (the CAS expectation)
    to_version: int
    candidate: Version
    gates: tuple[GateResult, ...]
    endpoints: tuple[str, ...]  # the environment's configured endpoints
    verify_timeout: float
    bake_seconds: float
    deploy: tuple[str, ...] = ()  # what the deploy hook will run, in words
    notes: tuple[str, ...] = ()
    expect: int | str | None = "plan"  # "plan": from_version; else an explicit --expect
    actor: str = ""  # who is releasing (the approval gate judged this person)
    policy_version: int | None = None  # the registry policy applied (None: none; the config's rules)
    creates_environment: bool = False  # --create-env: the environment is new
    baseline: Mapping[str, Any] = field(default_factory=dict)  # endpoint -> the old version's traffic (baseline_for)

    @property
    def failed_gates(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)

    @property
    def unforceable_failures(self) -> tuple[GateResult, ...]:
        """Failed gates that --force cannot pass (approval)."""
        return tuple(g for g in self.gates if not g.passed and not g.forceable)

    @property
    def forceable(self) -> bool:
        """Blocked only by gates --force may pass (metric and health)."""
        return self.blocked and not self.unforceable_failures

    @property
    def blocked(self) -> bool:
        return bool(self.failed_gates)

    @property
    def protected(self) -> bool:
        return self.environment in PROTECTED_ENVIRONMENTS

    @property
    def confirm(self) -> str | None:
        """Text the user must type to confirm (the model name) for a protected environment."""
        return self.model if self.protected else None

    @property
    def cas_expect(self) -> int | str | None:
        return self.from_version if self.expect == "plan" else self.expect

    def summary(self) -> str:
        before = "unset" if self.from_version is None else f"version {self.from_version}"
        verb = "promote" if self.action == "promote" else "roll back"
        return f"{verb} {self.model} {self.environment}: {before} -> version {self.to_version}"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "environment": self.environment, "action": self.action,
                "from_version": self.from_version, "to_version": self.to_version,
                "gates": [g.as_dict() for g in self.gates], "blocked": self.blocked,
                "confirm": self.confirm, "endpoints": list(self.endpoints),
                "verify_timeout": self.verify_timeout, "bake_seconds": self.bake_seconds,
                "deploy": list(self.deploy), "notes": list(self.notes), "actor": self.actor,
                "policy_version": self.policy_version, "creates_environment": self.creates_environment}


@dataclass(frozen=True)
class ReleaseOutcome:
    status: str  # released | blocked | hook_failed | rolled_back | unverified | undo_failed
    plan: ReleasePlan
    message: str  # one line: what happened
    change: AliasChange | None = None  # the alias move
    undo: AliasChange | None = None  # the move that undid it (hook failure, automatic rollback)
    forced: bool = False
    verified: bool | None = None  # None: not checked (no endpoints, --no-verify)
    baked: bool | None = None
    log_path: str | None = None  # the deploy hook's output
    events: tuple[ReleaseEvent, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == RELEASED

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "message": self.message,
                "plan": self.plan.as_dict(), "forced": self.forced,
                "change": self.change.as_dict() if self.change else None,
                "undo": self.undo.as_dict() if self.undo else None,
                "verified": self.verified, "baked": self.baked, "log_path": self.log_path,
                "events": [e.as_dict() for e in self.events]}


class ReleaseStopped(Exception):
    """Raised inside the watch loop when ``stop_event`` is set."""


# ---------------------------------------------------------------------------------------------
# gates


def evaluate_metric_gate(gate: GateConfig, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None,
                         champion_version: int | None = None, *, on: str | None = None,
                         extra: Mapping[str, Any] | None = None) -> GateResult:
    """One champion/challenger gate with MLflow ``MetricThreshold`` semantics, on values the
    caller has matched to one dataset (``on`` describes it: ``93ddf3b… (300 rows)``)."""
    m = gate.metric
    name = f"metric:{m}"
    better = gate.greater_is_better
    data: dict[str, Any] = {"metric": m, "greater_is_better": better, "threshold": gate.threshold,
                            "min_absolute_change": gate.min_absolute_change,
                            "min_relative_change": gate.min_relative_change,
                            "champion_version": champion_version, **dict(extra or {})}
    head = f"{m} on {on}: " if on else f"{m}: "
    cand = finite(candidate.get(m))
    data["candidate"] = cand
    if cand is None:
        return GateResult(name, False, f"{head}the candidate has no {m} metric", data)
    parts: list[str] = []
    failed: list[str] = []
    if gate.threshold is not None:
        ok = _ge(cand, gate.threshold) if better else _ge(gate.threshold, cand)
        parts.append(f"{_n(cand)} {'>=' if better else '<='} threshold {_n(gate.threshold)}"
                     if ok else f"{_n(cand)} {'<' if better else '>'} threshold {_n(gate.threshold)}")
        if not ok:
            failed.append("threshold")
    wants_compare = gate.min_absolute_change is not None or gate.min_relative_change is not None
    champ = finite(champion.get(m)) if champion is not None else None
    data["champion"] = champ
    if wants_compare:
        if champion is None:
            parts.append("no champion to compare with (passes)")
        elif champ is None:
            parts.append(f"the champion (version {champion_version}) has no {m} (comparison skipped)")
        else:
            change = cand - champ if better else champ - cand  # improvement, in the better direction
            data["absolute_change"] = cand - champ
            vs = f"vs champion {_n(champ)} (v{champion_version})"
            if gate.min_absolute_change is not None:
                ok = _ge(change, gate.min_absolute_change)
                parts.append(f"{_n(cand)} {vs}: improvement {_n(change)} "
                             f"{'>=' if ok else '<'} min {_n(gate.min_absolute_change)}")
                if not ok:
                    failed.append("min_absolute_change")
            if gate.min_relative_change is not None:
                if champ == 0:
                    ok = change > 0
                    data["relative_change"] = None
                    parts.append(f"{_n(cand)} {vs}: champion is 0, so it must simply be better "
                                 f"({'it is' if ok else 'it is not'})")
                else:
                    rel = change / abs(champ)
                    data["relative_change"] = rel
                    ok = _ge(rel, gate.min_relative_change)
                    parts.append(f"{_n(cand)} {vs}: relative improvement {rel * 100:+.2f}% "
                                 f"{'>=' if ok else '<'} min {gate.min_relative_change * 100:+.2f}%")
                if not ok:
                    failed.append("min_relative_change")
    if not wants_compare and champ is not None:
        parts.append(f"champion {_n(champ)} (v{champion_version})")
    data["failed"] = failed
    return GateResult(name, not failed, head + "; ".join(parts), data)


def _ge(a: float, b: float) -> bool:
    """a >= b, forgiving float rounding at the boundary (0.84 vs 0.8 is +5%, not +4.99999%)."""
    return a >= b - 1e-9 * max(1.0, abs(a), abs(b))


def _n(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def approval_gate(registry: Registry, model: str, version: Version, environment: str, action: str,
                  rules: EnvironmentRules, actor: str) -> GateResult | None:
    """The approval rule (``judge.approval_verdict``) with the rules that apply to the
    environment; None when the environment needs no approval (and it is not a rollback to a
    rejected version). Never forceable."""
    four_eyes = rules.approver_is_not_promoter
    needed = judge.approvals_needed(environment, rules.approvals, four_eyes, PROTECTED_ENVIRONMENTS)
    if not needed and not (action == "rollback" and environment in PROTECTED_ENVIRONMENTS):
        return None
    approvers = [a for a, _ in registry.approvers(model, version.version)]
    passed, text = judge.approval_verdict(model=model, version=version.version, environment=environment,
                                          action=action, approval=version.approval, approvers=approvers,
                                          needed=needed, four_eyes=four_eyes, promoter=actor)
    data = {"approval": version.approval, "approved_by": version.approval_by, "approvers": approvers,
            "approvals_needed": needed, "approver_is_not_promoter": four_eyes, "promoter": actor}
    return GateResult("approved", passed, text, data, forceable=False)


# -- metric gates on one dataset -----------------------------------------------------------------


class _MetricGates:
    """The metric gates of one plan: each compares the candidate with the champion on a
    dataset both were measured on; when they share none, the evaluate hook measures
    whichever lacks it on the policy's ``eval_data`` (else the candidate's own evaluation data,
    else the champion's), records it, then compares. Without a hook: a failing gate that
    says why."""

    def __init__(self, settings: Settings, registry: Registry, mc: ModelConfig, candidate: Version,
                 champion: Version | None, environment: str, *, run_hooks: bool, actor: str,
                 emit: Callable[[ReleaseEvent], None] | None, not_run: str = "a read-only plan") -> None:
        self.settings, self.reg, self.mc = settings, registry, mc
        self.cand, self.champ = candidate, champion
        self.environment, self.run_hooks, self.actor, self.emit = environment, run_hooks, actor, emit
        self._target: DataRef | None = None
        self._target_error: str | None = None
        self._failed_runs: dict[tuple[int, str], str] = {}
        self._measured: set[tuple[int, str]] = set()
        self.not_run = not_run

    def _event(self, message: str, level: str = "progress") -> None:
        if self.emit is not None:
            with contextlib.suppress(Exception):
                self.emit(ReleaseEvent("gates", message, level))

    def _evals(self, v: Version | None, m: str) -> dict[str | None, Evaluation]:
        return evaluation.by_dataset(self.reg.evaluations(v.model, v.version, metric=m)) if v is not None else {}

    @staticmethod
    def _preferred(evals: Mapping[str | None, Evaluation]) -> Evaluation | None:
        """The value a version is quoted with: its registered one on known data, else the
        newest on known data, else one registered without its data."""
        known = [e for k, e in evals.items() if k]
        registered = [e for e in known if e.source == "register"]
        if registered:
            return registered[-1]
        if known:
            return max(known, key=lambda e: e.at)
        return evals.get(None)

    def _data_for_hook(self, cand: Mapping[str | None, Evaluation],
                       champ: Mapping[str | None, Evaluation]) -> DataRef | str:
        """Where the hook evaluates: eval_data, else the candidate's data, else the champion's."""
        if self.mc.eval_data:
            if self._target is None and self._target_error is None:
                try:
                    self._target = evaluation.resolve_data(self.settings, self.mc.name, self.mc.eval_data,
                                                           environment=self.environment, rows=self.mc.eval_rows)
                except ModeldeckError as e:
                    self._target_error = f"eval_data {self.mc.eval_data!r}: {e}"
            return self._target if self._target is not None else str(self._target_error)
        for evals in (cand, champ):
            pref = self._preferred(evals)
            if pref is not None and pref.dataset_sha256:
                ref = evaluation.still_there(pref)
                if ref is not None:
                    return ref
        return ("no data to evaluate on: set eval_data in the policy (the versions' own evaluation data is not "
                "on this box)")

    def _measure(self, v: Version, data: DataRef) -> str | None:
        """Run the hook for ``v`` on ``data`` (once per plan); None when recorded, else why not."""
        key = (v.version, data.sha256)
        if key in self._failed_runs:
            return self._failed_runs[key]
        if key in self._measured:
            return None
        self._measured.add(key)
        self._event(f"evaluating v{v.version} on {data.describe()} with the evaluate hook", "progress")
        try:
            evaluation.evaluate(self.settings, self.reg, v, data, source="gate", actor=self.actor,
                                reason=f"release gate: {self.cand.model} v{self.cand.version} to {self.environment}",
                                on_output=lambda line: self._event(line, "output"))
        except ModeldeckError as e:
            self._failed_runs[key] = str(e)
            return str(e)
        self._event(f"recorded v{v.version}'s metrics on {data.describe()}", "success")
        return None

    def gate(self, g: GateConfig) -> GateResult:
        m = g.metric
        name = f"metric:{m}"
        cand, champ = self._evals(self.cand, m), self._evals(self.champ, m)
        cv, hv = self.cand.version, (self.champ.version if self.champ else None)
        compare = g.min_absolute_change is not None or g.min_relative_change is not None
        hook = self.mc.evaluate is not None and self.run_hooks

        def common() -> list[str]:
            return [k for k in cand if k and k in champ]

        if common():
            return self._result(g, cand, champ, self._pick(common(), cand))
        if self.champ is None or not compare:
            # an absolute bar, or no champion: the candidate's value decides; with a champion and
            # a hook both are measured on one dataset anyway, so the line shows both values
            if hook and (self.champ is not None or not cand):
                data = self._data_for_hook(cand, champ)
                if isinstance(data, DataRef):
                    err = self._measure_missing(data, m)
                    cand, champ = self._evals(self.cand, m), self._evals(self.champ, m)
                    if common():
                        return self._result(g, cand, champ, self._pick(common(), cand))
                    if not cand:
                        why = err or f"the evaluate hook printed no {m}"
                        return GateResult(name, False, f"{m}: v{cv} has no {m}; {why}", self._data(g))
                elif not cand:
                    return GateResult(name, False, f"{m}: v{cv} has no {m}, and {data}", self._data(g))
            pref = self._preferred(cand)
            if pref is None:
                return GateResult(name, False, f"{m}: the candidate (v{cv}) has no {m} metric", self._data(g))
            return self._result(g, cand, champ, pref.dataset_sha256, lone=True)
        # compare, and the two share no dataset
        where = self._where(m, cand, champ, cv, hv)
        if self.mc.evaluate is None:
            return GateResult(name, False, f"{where}: not comparable; set an evaluate hook", self._data(g))
        data = self._data_for_hook(cand, champ)
        if isinstance(data, str):
            return GateResult(name, False, f"{where}: not comparable; {data}", self._data(g))
        if not self.run_hooks:
            return GateResult(name, False, f"{where}: not comparable until the evaluate hook measures them on "
                              f"{data.describe()} (not run: {self.not_run})", self._data(g))
        err = self._measure_missing(data, m)
        if err:
            return GateResult(name, False, f"{where}: not comparable; {err}", self._data(g))
        cand, champ = self._evals(self.cand, m), self._evals(self.champ, m)
        if data.sha256 in cand and data.sha256 in champ:
            return self._result(g, cand, champ, data.sha256)
        lacking = [f"v{v}" for v, e in ((cv, cand), (hv, champ)) if data.sha256 not in e]
        return GateResult(name, False, f"{where}: not comparable; the evaluate hook printed no {m} for "
                          f"{' and '.join(lacking)} on {data.describe()}", self._data(g))

    def _measure_missing(self, data: DataRef, m: str) -> str | None:
        for v in (self.cand, self.champ):
            if v is not None and data.sha256 not in self._evals(v, m):
                err = self._measure(v, data)
                if err:
                    return err
        return None

    def _pick(self, common: list[str], cand: Mapping[str | None, Evaluation]) -> str:
        registered = [k for k in common if cand[k].source == "register"]
        if registered:
            return registered[-1]
        return max(common, key=lambda k: cand[k].at)

    def _where(self, m: str, cand: Mapping[str | None, Evaluation], champ: Mapping[str | None, Evaluation],
               cv: int, hv: int | None) -> str:
        pc, ph = self._preferred(cand), self._preferred(champ)
        if pc is None and ph is None:
            return f"{m}: neither v{cv} nor v{hv} has {m}"
        if pc is None:
            return f"{m} of v{hv} is on {_on(ph)}; v{cv} has no {m}"
        if ph is None:
            return f"{m} of v{cv} is on {_on(pc)}; v{hv} has no {m}"
        return f"{m} of v{cv} is on {_on(pc)}, of v{hv} on {_on(ph)}"

    def _data(self, g: GateConfig, sha: str | None = None, rows: int | None = None) -> dict[str, Any]:
        return {"metric": g.metric, "candidate_version": self.cand.version,
                "champion_version": self.champ.version if self.champ else None,
                "dataset_sha256": sha, "dataset_rows": rows, "comparable": False}

    def _result(self, g: GateConfig, cand: Mapping[str | None, Evaluation], champ: Mapping[str | None, Evaluation],
                sha: str | None, *, lone: bool = False) -> GateResult:
        c = cand[sha]
        h = champ.get(sha) if sha else None
        on = _on(c)
        extra = {"candidate_version": self.cand.version, "dataset_sha256": sha, "dataset_rows": c.dataset_rows,
                 "dataset_path": c.dataset_path, "comparable": h is not None}
        r = evaluate_metric_gate(g, {g.metric: c.value}, {g.metric: h.value} if h is not None else None,
                                 self.champ.version if self.champ else None, on=on, extra=extra)
        if lone and self.champ is not None and h is None:
            r = replace(r, detail=r.detail + f"; champion v{self.champ.version} has no {g.metric} on it")
        return r


def _on(e: Evaluation | None) -> str:
    if e is None:
        return "no data"
    return datafiles.describe(e.dataset_sha256, e.dataset_rows)


def health_gate(settings: Settings, model: str, environment: str,
                snapshots: Iterable[EndpointSnapshot] | None) -> GateResult:
    """The environment's endpoints are polled (not PENDING), not DOWN, and under their
    critical error-ratio and p95 thresholds (:func:`modeldeck.core.judge.health_verdicts`, the
    rules the report and the fleet use), judged from ``snapshots``. The detail names the
    values judged, or which are not known."""
    settings = with_discovered(settings, model, environment)
    eps = settings.endpoints_for(model, environment)
    unknown = discovery_problem(settings, model, environment)
    if unknown:  # the environment may have endpoints no one can see now: not judged, so not passed
        return GateResult("healthy", False, f"{unknown}; not judged",
                          {"endpoints": [{"endpoint": e.name, "status": None} for e in eps],
                           "discover_errors": dict(settings.discover_errors)})
    if not eps:
        where = "configured or discovered" if settings.discover else "configured"
        return GateResult("healthy", True, f"no endpoints {where} for {model} in {environment}: not "
                          f"checked", {"endpoints": []})
    by_name = {s.endpoint: s for s in (snapshots or ())}
    problems, fine = [], []
    rows = []
    for ep in eps:
        s = by_name.get(ep.name)
        if s is None:
            problems.append(f"{ep.name}: no snapshot")
            rows.append({"endpoint": ep.name, "status": None})
            continue
        rows.append({"endpoint": ep.name, "status": s.status, "served_version": s.served_version,
                     "error_ratio": s.error_ratio, "latency_p95_ms": s.latency_p95_ms,
                     "request_rate": s.request_rate, "sample_seconds": settings.report_sample})
        blocking = [v for v in judge.health_verdicts(s, ep.thresholds) if v.level in (judge.CRITICAL, judge.UNKNOWN)]
        if blocking and blocking[0].key == "down":
            problems.append(f"{ep.name} is down: {s.reason}".rstrip(": "))
        elif blocking and blocking[0].key == "pending":
            problems.append(f"{ep.name} is pending: not polled yet")
        elif blocking:
            problems.append(f"{ep.name}: " + "; ".join(v.text for v in blocking))
        else:
            fine.append(f"{ep.name} {judge.health_line(s, ep.thresholds)}")
    if problems:
        return GateResult("healthy", False, "; ".join(problems), {"endpoints": rows})
    return GateResult("healthy", True, "; ".join(fine), {"endpoints": rows})


# ---------------------------------------------------------------------------------------------
# plan


# -- environments ----------------------------------------------------------------------------------


def fixed_discover_environments(settings: Settings) -> set[str]:
    """The environments ``[[discover]]`` blocks name outright (``environment``, not a label):
    declared without asking Prometheus."""
    return {b.environment for b in settings.discover if b.environment_label is None}


def known_environments(settings: Settings, registry: Registry, model: str | None = None, *,
                       endpoints: Iterable[EndpointConfig] | None = None) -> list[str]:
    """Every declared environment: one holding an alias (of any model), named by a configured
    endpoint or by one ``[[discover]]`` found (those in ``settings.endpoints`` once resolved,
    or the live fleet's ``endpoints``), the fixed ``environment`` of a ``[[discover]]`` block,
    or listed in a policy (the registry's, or ``[models.X.environments]`` of the config);
    production first, then by name. Reads no network: see :func:`resolve_environment`."""
    eps = settings.endpoints if endpoints is None else endpoints
    names = set(registry.environments()) | {e.environment for e in eps}
    names |= fixed_discover_environments(settings)
    names |= set(registry.policy_environments())
    for mc in settings.models.values():
        names |= set(mc.environments)
    return sorted(names, key=lambda n: (n != "production", n != "staging", n))


def prometheus_display_url(settings: Settings) -> str:
    """``[prometheus] url`` as it may be shown: no credentials, query or fragment."""
    import urllib.parse

    if settings.prometheus is None:
        return "-"
    parts = urllib.parse.urlsplit(settings.prometheus.url)
    return one_line(urllib.parse.urlunsplit((parts.scheme, _host(parts.netloc), parts.path, "", "")), 120)


def _host(netloc: str) -> str:
    return netloc.rpartition("@")[2]  # without user:password@


def _discovery_unknown(settings: Settings, environment: str) -> str | None:
    """Why the ``[[discover]]`` blocks that name environments by a label could not say whether
    ``environment`` is among them (their discovery failed), or None."""
    failed = [(b.name, settings.discover_errors[b.name]) for b in settings.discover
              if b.environment_label is not None and b.name in settings.discover_errors]
    if not failed:
        return None
    name, why = failed[0]
    url = prometheus_display_url(settings)
    import urllib.parse

    netloc = _host(urllib.parse.urlsplit(settings.prometheus.url).netloc) if settings.prometheus else ""
    reached = not (why.startswith(f"prometheus: {netloc}:") or "timed out" in why)
    state = f"Prometheus at {url} failed discovery" if reached else f"Prometheus is unreachable at {url}"
    more = f" (and {len(failed) - 1} more block{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
    return one_line(f"cannot tell whether environment '{environment}' exists: {state} (discover {name}: "
                    f"{why}){more}; [[discover]] finds environments there", 300)


def resolve_environment(settings: Settings, registry: Registry, model: str, environment: str, *,
                        create: bool = False) -> tuple[Settings, bool]:
    """Refuse an undeclared environment (a typo must not create one) unless ``create``;
    returns ``settings`` with the endpoints ``[[discover]]`` finds for ``model`` in
    ``environment`` (asked only when the environment is not declared otherwise, or later by
    :func:`with_discovered`) and whether the environment is new. An environment only
    ``[[discover]]`` names (``environment_label``) counts when Prometheus says so; when it
    cannot be asked, :class:`DiscoveryUnavailableError` says Prometheus is unreachable at its
    URL rather than calling the environment unknown."""
    known = known_environments(settings, registry)
    if environment in known:
        return settings, False
    if (settings.discover and not settings.discovery_resolved and settings.prometheus is not None
            and any(b.environment_label is not None for b in settings.discover)):
        from modeldeck.core.promql import resolve_discovered

        every = resolve_discovered(settings)  # an environment any model's discovered endpoints are in is declared
        known = known_environments(settings, registry, endpoints=every.endpoints)
        # the plan keeps the configured endpoints and the discovered ones of this model and environment
        mine = tuple(e for e in every.endpoints
                     if not e.discovered or (e.model == model and e.environment == environment))
        settings = replace(every, endpoints=mine)
        if environment in known:
            return settings, False
        unknown = _discovery_unknown(settings, environment)
        if unknown and not create:
            raise DiscoveryUnavailableError(unknown)
    if create:
        return settings, True
    close = [k for k in known if k.startswith(environment) or environment.startswith(k)]
    close += [k for k in difflib.get_close_matches(environment, known, n=2, cutoff=0.5) if k not in close]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(known) if known else "none yet"
    raise UnknownEnvironmentError(f"unknown environment '{environment}' (known: {listed}); --create-env to create "
                                  f"it{hint}")


def check_environment(settings: Settings, registry: Registry, environment: str, *, create: bool = False,
                      model: str = "") -> bool:
    """:func:`resolve_environment` for callers that only need the answer: whether the
    environment is new (raises when it is undeclared and not ``create``)."""
    return resolve_environment(settings, registry, model, environment, create=create)[1]


@dataclass(frozen=True)
class EnvironmentChoice:
    """An environment as a picker shows it: what it holds, where a rollback would go."""

    name: str
    holds: int | None
    rollback_to: int | None  # what a rollback would put back (None: nothing to roll back to)
    endpoints: int
    declared_by: str  # alias | endpoint | policy

    def note(self) -> str:
        parts = [f"holds version {self.holds}" if self.holds is not None else "holds nothing yet"]
        if self.holds is not None:
            parts.append(f"rollback goes to version {self.rollback_to}" if self.rollback_to is not None
                         else "no earlier version to roll back to")
        if self.endpoints:
            parts.append(f"{self.endpoints} endpoint{'s' if self.endpoints != 1 else ''}")
        if self.holds is None and self.declared_by == "policy":
            parts.append("declared by the policy")
        return ", ".join(parts)


def no_rollback_target(registry: Registry, model: str, environment: str, current: int) -> str:
    """Why a rollback has nowhere to go, from the environment's real history, and how to name
    a version instead."""
    held = sorted({v for h in registry.history(model, environment)
                   for v in (h.from_version, h.to_version) if v is not None})
    others = [v for v in held if v != current]
    if not others:
        return f"{environment} of {model} has only ever held version {current}: there is nothing to roll back to"
    return (f"{environment} of {model} has held versions {', '.join(map(str, held))}, but each earlier one was "
            f"rolled back from, so no previous version is left; name the one to go to (--to VERSION, or "
            f"'roll back to version…' in the TUI)")


def environment_choices(settings: Settings, registry: Registry, model: str, *,
                        endpoints: Iterable[EndpointConfig] | None = None) -> list[EnvironmentChoice]:
    """The declared environments for ``model``'s pickers: those it holds first. ``endpoints``:
    the fleet watched now (the TUI's poller: configured and discovered), else
    ``settings.endpoints`` (with what ``[[discover]]`` found once resolved)."""
    eps = tuple(settings.endpoints if endpoints is None else endpoints)
    aliases = registry.aliases(model)
    held = set(registry.environments())
    configured = {e.environment for e in eps}
    configured |= fixed_discover_environments(settings)
    declared = set(registry.policy_environments()) | {n for mc in settings.models.values() for n in mc.environments}
    out = []
    for env in known_environments(settings, registry, endpoints=eps):
        holds = aliases.get(env)
        out.append(EnvironmentChoice(
            name=env, holds=holds, rollback_to=registry.rollback_target(model, env) if holds is not None else None,
            endpoints=sum(1 for e in eps if e.model == model and e.environment == env),
            declared_by=("alias" if env in held else "endpoint" if env in configured else
                         "policy" if env in declared else "alias")))
    out.sort(key=lambda c: c.holds is None)  # stable: the held ones first, each group in known order
    return out


def effective_model(settings: Settings, registry: Registry, model: str) -> tuple[ModelConfig, int | None]:
    """The rules that apply to ``model``: the registry's policy made stricter by the config's
    ``[models.X]`` (PolicyError when the config would loosen it), with the config's hooks."""
    rec = registry.policy(model)
    mc = policy.effective(settings.model(model), rec, settings.path)
    return mc, (rec.version if rec else None)


# -- plan ------------------------------------------------------------------------------------------


def plan(settings: Settings, registry: Registry, model: str, version: int | None, environment: str, *,
         action: str = "promote", to: int | None = None, snapshots: Iterable[EndpointSnapshot] | Mapping[str, EndpointSnapshot] | None = None,
         expect: int | str | None = "plan", check_health: bool = True, actor: str | None = None,
         create_env: bool = False, run_hooks: bool = True,
         on_event: Callable[[ReleaseEvent], None] | None = None) -> ReleasePlan:
    """What a promote (``version``) or rollback (``to``, default the previous holder) of
    ``environment`` will do, with its gates evaluated under the rules that apply (the
    registry's policy, made stricter by the config: :func:`effective_model`). Without
    ``snapshots`` (the caller's latest EndpointSnapshots, a list or a name->snapshot mapping)
    the environment's endpoints are polled once (with its own event loop, so only when no loop
    runs in this thread; from a Textual handler pass the poller's ``latest()``). A metric gate
    whose versions share no evaluation data runs the evaluate hook and records its metrics
    (``run_hooks=False``: it fails instead); its progress goes to ``on_event``. ``actor`` is
    who releases (default: the current actor): the approval gate judges them. Unknown
    model/version/environment and impossible rollbacks raise RegistryError subclasses with the
    registry's wording; a config looser than the policy raises PolicyError."""
    if action not in ("promote", "rollback"):
        raise RegistryError(f"unknown release action {action!r}")
    registry.model(model)  # unknown model -> NotFoundError naming it
    settings, creates = resolve_environment(settings, registry, model, environment, create=create_env)
    mc, policy_version = effective_model(settings, registry, model)
    settings = replace(settings, models={**settings.models, model: mc})
    settings = with_discovered(settings, model, environment)
    actor = actor or current_actor()
    current = registry.alias(model, environment)
    if action == "rollback":
        if current is None:
            raise RegistryError(f"{model} has nothing in {environment} to roll back")
        target = to if to is not None else version
        if target is None:
            target = registry.rollback_target(model, environment)
            if target is None:
                raise RegistryError(no_rollback_target(registry, model, environment, current))
    else:
        if version is None:
            raise RegistryError("which version? (promote MODEL VERSION)")
        target = version
    candidate = registry.version(model, int(target))
    if current == candidate.version:
        raise ConflictError(f"{environment} of {model} already holds version {candidate.version}")
    gates: list[GateResult] = []
    notes: list[str] = []
    if creates:
        notes.append(f"creates the environment {environment!r} (--create-env)")
    if policy_version is None and mc.explicit:
        notes.append(f"the registry has no release policy for {model}: the config's rules apply "
                     f"(modeldeck policy {model} --from-config --reason ... stores them)")
    approval = approval_gate(registry, model, candidate, environment, action, mc.environment(environment), actor)
    if approval is not None:
        gates.append(approval)
    if action == "promote":
        champion = registry.version(model, current) if current is not None else None
        # an approval that failed refuses the release whatever the metrics say: no hook runs for it
        hooks_ok = run_hooks and (approval is None or approval.passed)
        metric = _MetricGates(settings, registry, mc, candidate, champion, environment, run_hooks=hooks_ok,
                              actor=actor, emit=on_event,
                              not_run="approval failed first" if run_hooks else "a read-only plan")
        gates += [metric.gate(g) for g in mc.gates]
        if check_health:
            snaps = _snapshot_list(snapshots)
            eps = settings.endpoints_for(model, environment)
            if eps and (snaps is None or _missing(eps, snaps)) and not _loop_running():
                snaps = sample_endpoints(settings, [e.name for e in eps])
            gates.append(health_gate(settings, model, environment, snaps))
    elif mc.gates:
        notes.append("metric gates do not apply to a rollback")
    eps = tuple(e.name for e in settings.endpoints_for(model, environment))
    unknown = discovery_problem(settings, model, environment)
    if unknown:
        notes.append(f"{unknown}: rollout verification and baking cannot judge the endpoints it would find")
    elif not eps:
        why = "no config file" if settings.path is None else f"no endpoints for {model} in {environment}"
        notes.append(f"{why}: rollout verification and baking are skipped")
    return ReleasePlan(settings=settings, model=model, environment=environment, action=action,
                       from_version=current, to_version=candidate.version, candidate=candidate,
                       gates=tuple(gates), endpoints=eps, verify_timeout=mc.verify_timeout,
                       bake_seconds=mc.bake_seconds if action == "promote" else 0.0,
                       deploy=_describe_hook(mc.deploy), notes=tuple(notes), expect=expect, actor=actor,
                       policy_version=policy_version, creates_environment=creates)


def baseline_for(plan: ReleasePlan, registry: Registry) -> dict[str, dict[str, Any]]:
    """The old version's traffic per endpoint, what the bake compares the new version with:
    requests, errors and p95 over the bake's length just before the release, from the snapshots
    stored in the registry (the TUI's and the report's polls); else from the health gate's
    sample of the plan; else nothing (the bake then judges by the thresholds alone)."""
    out: dict[str, dict[str, Any]] = {}
    if plan.from_version is None or not plan.endpoints:
        return out
    old = str(plan.from_version)
    now = time.time()
    window = max(plan.bake_seconds, 10.0)
    since = datetime.fromtimestamp(now - window, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    gate_rows = {r.get("endpoint"): r for g in plan.gates if g.name == "healthy"
                 for r in (g.data.get("endpoints") or []) if isinstance(r, Mapping)}
    for name in plan.endpoints:
        try:
            rows = registry.snapshots(name, since=since, limit=2000)
        except ModeldeckError:
            rows = []
        req = err = 0.0
        p95s: list[float] = []
        last: float | None = None
        for d in rows:
            t, rate, er = finite(d.get("taken_at")), finite(d.get("request_rate")), finite(d.get("error_ratio"))
            if str(d.get("served_version")) != old or t is None:
                last = None
                continue
            if last is not None and rate is not None and t > last:
                n = max(0.0, rate) * (t - last)
                req += n
                err += n * max(0.0, min(1.0, er or 0.0))
            last = t
            if (p95 := finite(d.get("latency_p95_ms"))) is not None:
                p95s.append(p95)
        if req > 0:
            out[name] = {"requests": round(req, 1), "errors": round(err, 1),
                         "p95_ms": sorted(p95s)[len(p95s) // 2] if p95s else None, "source": "stored snapshots"}
            continue
        g = gate_rows.get(name) or {}
        rate, er = finite(g.get("request_rate")), finite(g.get("error_ratio"))
        seconds = finite(g.get("sample_seconds")) or plan.settings.report_sample
        if rate and er is not None and str(g.get("served_version")) == old:
            n = rate * seconds
            out[name] = {"requests": round(n, 1), "errors": round(n * er, 1),
                         "p95_ms": finite(g.get("latency_p95_ms")), "source": f"the plan's {seconds:g} s sample"}
    return out


def with_discovered(settings: Settings, model: str, environment: str) -> Settings:
    """``settings`` with the endpoints its ``[[discover]]`` blocks find now for ``model`` in
    ``environment`` (:func:`modeldeck.core.promql.resolve_discovered`, bounded by ``[prometheus]
    timeout``); itself without blocks."""
    if not settings.discover or settings.discovery_resolved:
        return settings
    from modeldeck.core.promql import resolve_discovered

    return resolve_discovered(settings, model, environment)


def discovery_problem(settings: Settings, model: str, environment: str) -> str | None:
    """One line when a ``[[discover]]`` block that could find endpoints of ``model`` in
    ``environment`` failed (Prometheus unreachable, slow, refusing), else None."""
    if not settings.discover_errors:
        return None
    from modeldeck.core.promql import might_find

    failed = [(b.name, settings.discover_errors[b.name]) for b in settings.discover
              if b.name in settings.discover_errors and might_find(b, model, environment)]
    if not failed:
        return None
    name, why = failed[0]
    more = f" (and {len(failed) - 1} more block{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
    return one_line(f"the endpoints of {model} in {environment} are not known: discover {name}: {why}{more}", 240)


def _loop_running() -> bool:
    """Inside a running event loop (a Textual handler) plan() must not run a loop of its own:
    it then judges health from the snapshots it was given (missing ones fail the gate)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _snapshot_list(snapshots: Iterable[EndpointSnapshot] | Mapping[str, EndpointSnapshot] | None
                   ) -> list[EndpointSnapshot] | None:
    if snapshots is None:
        return None
    if isinstance(snapshots, Mapping):
        return list(snapshots.values())
    return list(snapshots)


def _missing(eps: Sequence[EndpointConfig], snaps: Sequence[EndpointSnapshot]) -> bool:
    have = {s.endpoint: s.status for s in snaps}
    return any(have.get(e.name) in (None, "PENDING") for e in eps)


def _describe_hook(hook: HookConfig | None) -> tuple[str, ...]:
    if hook is None:
        return ()
    out = []
    if hook.command:
        out.append("run " + shlex.join(hook.command))
    if hook.webhook:
        out.append(f"POST {hook.webhook.url}" + (" (signed)" if hook.webhook.secret else ""))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# endpoint polling


class EndpointWatch:
    """Polls a few endpoints with :class:`modeldeck.core.poller.Poller` on a private event
    loop, from a plain thread: ``watch()`` returns the snapshots of one poll cycle; rates
    (error ratio, latency) are there from the second cycle on."""

    def __init__(self, settings: Settings, names: Sequence[str], *, rate_window: float | None = None,
                 live_windows: bool = True) -> None:
        from modeldeck.core.poller import RATE_WINDOW, Poller

        wanted = set(names)
        if settings.discover and not settings.discovery_resolved and not wanted <= {e.name for e in settings.endpoints}:
            from modeldeck.core.promql import resolve_discovered

            settings = resolve_discovered(settings)  # discovered endpoints among them
        eps = tuple(e for e in settings.endpoints if e.name in wanted)
        if not live_windows:  # health, version and metrics only: no drift or quality of the whole window
            eps = tuple(replace(e, capture=None, labels=None) for e in eps)
        # these endpoints only (what [[discover]] found is among them): no discovery of the whole fleet
        self.settings = replace(settings, endpoints=eps, discover=(), poll=replace(settings.poll, store_interval=0.0))
        self._loop = asyncio.new_event_loop()
        self._poller = Poller(self.settings, registry_path=settings.registry, source="release",
                              rate_window=rate_window or RATE_WINDOW)

    def __call__(self) -> list[EndpointSnapshot]:
        return self._loop.run_until_complete(self._poller.poll_once())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(self._poller.aclose())
        self._loop.close()


def sample_endpoints(settings: Settings, names: Sequence[str], sample: float | None = None) -> list[EndpointSnapshot]:
    """The endpoints judged as the report judges them: polled twice, ``sample`` seconds apart
    (default ``[report] sample``), so the second snapshot carries the error ratio and latency
    between the two metrics readings."""
    sample = settings.report_sample if sample is None else sample
    watch = EndpointWatch(settings, names, rate_window=max(10.0, 2 * sample + 2 * settings.poll.timeout))
    try:
        first = watch()
        if sample <= 0:
            return first
        time.sleep(sample)
        return watch()
    finally:
        watch.close()


# ---------------------------------------------------------------------------------------------
# execute


class _Run:
    """The state of one execute() (or of a rollout supervisor): events, the registry, the clock.
    ``rollout_id``: the rollout record the alias move advances; ``on_stage(stage, seconds)`` is
    called as verification (``verify``) and baking (``bake``, with its length) begin."""

    def __init__(self, plan: ReleasePlan, reg: Registry, actor: str, reason: str,
                 on_event: Callable[[ReleaseEvent], None] | None, stop_event: threading.Event | None,
                 clock: Callable[[], float], sleep: Callable[[float], bool] | None, *,
                 rollout_id: int | None = None, on_stage: Callable[[str, float], None] | None = None) -> None:
        self.plan = plan
        self.reg = reg
        self.actor = actor
        self.reason = reason
        self.on_event = on_event
        self.stop_event = stop_event or threading.Event()
        self.stop_reason: str | None = None  # why stop_event was set (an operator's abort)
        self.clock = clock
        self._sleep = sleep
        self.events: list[ReleaseEvent] = []
        self.log_path: Path | None = None
        self.rollout_id = rollout_id
        self.on_stage = on_stage

    def emit(self, stage: str, message: str, level: str = "info", **data: Any) -> None:
        ev = ReleaseEvent(stage, message, level, data)
        self.events.append(ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:
                self.on_event = None  # a broken view must not break a release

    def stage(self, stage: str, seconds: float = 0.0) -> None:
        if self.on_stage is not None:
            self.on_stage(stage, seconds)

    def sleep(self, seconds: float) -> None:
        stopped = self._sleep(seconds) if self._sleep is not None else self.stop_event.wait(seconds)
        if stopped or self.stop_event.is_set():
            raise ReleaseStopped(self.stop_reason or "stopped by the user")


def execute(plan: ReleasePlan, *, reason: str, force: bool = False, actor: str | None = None,
            on_event: Callable[[ReleaseEvent], None] | None = None, stop_event: threading.Event | None = None,
            verify: bool = True, registry: Registry | None = None,
            poll: Callable[[], Sequence[EndpointSnapshot]] | None = None, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], bool] | None = None, interval: float | None = None) -> ReleaseOutcome:
    """Carry out ``plan`` in this thread: gates -> compare-and-set alias move (gate results in
    the audit entry) -> deploy hook -> rollout verification -> baking, rolling back
    automatically when the hook, the verification or the baking fails. See the module
    docstring. (The command line and the TUI hand everything after the alias move to a
    detached supervisor instead: ``core.rollout``.)

    ``force`` releases despite failed gates (the audit entry says ``forced`` and lists them).
    ``verify=False`` skips verification and baking. Registry refusals that mean "nothing was
    written" (a conflict: someone moved the alias since the plan; a missing reason) raise.
    ``poll()`` returns the current EndpointSnapshots (default: a Poller), ``clock()`` is
    monotonic seconds, ``sleep(s)`` waits and returns True to stop; ``interval`` is the time
    between polls (default ``poll.interval``)."""
    if not reason or not reason.strip():
        raise RegistryError(f"a reason is required to {plan.action} (--reason)"
                            + (": forcing past a gate is recorded with it" if force else ""))
    actor = actor or plan.actor or current_actor()
    own = registry is None
    reg = registry if registry is not None else open_registry(plan.settings, create=False)
    if verify and plan.bake_seconds > 0 and not plan.baseline:
        plan = replace(plan, baseline=baseline_for(plan, reg))
    run = _Run(plan, reg, actor, reason, on_event, stop_event, clock, sleep)
    try:
        moved = gate_and_move(run, force=force)
        if isinstance(moved, ReleaseOutcome):
            return moved
        change, forced = moved
        return after_move(run, change, forced=forced, verify=verify, poll=poll, interval=interval)
    finally:
        if own:
            reg.close()


def gate_and_move(run: _Run, *, force: bool) -> ReleaseOutcome | tuple[AliasChange, bool]:
    """Judge the plan's gates and move the alias (compare-and-set; with ``run.rollout_id``
    the rollout becomes ``deploying`` in the same transaction). Returns the BLOCKED outcome,
    or (the change, whether it was forced)."""
    p = run.plan
    reg = run.reg
    run.emit("plan", p.summary())
    for g in p.gates:
        run.emit("gates", f"{'PASS' if g.passed else 'FAIL'} {g.name}: {g.detail}",
                 "info" if g.passed else ("warning" if force and g.forceable else "error"), gate=g.as_dict())
    failed = p.failed_gates
    unforceable = p.unforceable_failures
    if failed and (not force or unforceable):
        first = unforceable[0] if unforceable else failed[0]
        names = ", ".join(g.name for g in failed)
        why = " (approval cannot be forced)" if force and unforceable else ""
        msg = f"blocked by {len(failed)} gate(s) ({names}){why}: {first.detail}; nothing was changed"
        run.emit("done", msg, "error")
        return _outcome(run, BLOCKED, msg)
    forced = bool(failed) and force
    details: dict[str, Any] = {"gates": [g.as_dict() for g in p.gates]}
    if p.policy_version is not None:
        details["policy_version"] = p.policy_version
    if p.creates_environment:
        details["created_environment"] = True
    if run.rollout_id is not None:
        details["rollout"] = run.rollout_id
    if forced:
        details["forced_gates"] = [g.name for g in failed]
        run.emit("gates", f"forced past {len(failed)} failed gate(s): "
                 f"{', '.join(g.name for g in failed)} (recorded in the audit log)", "warning")
    if p.action == "promote":
        change = reg.promote(p.model, p.to_version, p.environment, run.reason, expect=p.cas_expect,
                             actor=run.actor, force=forced, details=details, rollout_id=run.rollout_id)
    else:
        change = reg.rollback(p.model, p.environment, run.reason, to=p.to_version, expect=p.cas_expect,
                              actor=run.actor, force=forced, details=details, rollout_id=run.rollout_id)
    before = "unset" if change.from_version is None else f"version {change.from_version}"
    verb = "promoted" if p.action == "promote" else "rolled back"
    run.emit("alias", f"{verb} {p.model} {p.environment}: {before} -> version {change.to_version}"
             + (" (forced)" if forced else ""), "success", change=change.as_dict())
    return change, forced


def after_move(run: _Run, change: AliasChange, *, forced: bool, verify: bool = True,
               poll: Callable[[], Sequence[EndpointSnapshot]] | None = None, interval: float | None = None,
               resume: str | None = None, bake_seconds: float | None = None,
               verified_since: float | None = None) -> ReleaseOutcome:
    """Everything after the alias move: deploy hook, verification, bake, and the automatic
    rollback when one fails. Any error on the way (a modeldeck bug, a full disk, a log path
    the system refuses) rolls back too, with the error as the reason: nothing ends with the
    alias moved and unwatched. ``resume`` (``verify`` or ``bake``) picks a watch up where a
    dead supervisor left it: no hook; ``bake_seconds`` is then what remains of the bake."""
    hook = run.plan.settings.model(run.plan.model).deploy
    stage = resume or "deploy"
    try:
        return _after_move(run, change, hook, forced=forced, verify=verify, poll=poll, interval=interval,
                           resume=resume, bake_seconds=bake_seconds, verified_since=verified_since)
    except (Exception, KeyboardInterrupt) as e:
        stage = getattr(e, "stage", stage)
        cause: BaseException = e.__cause__ if isinstance(e, _StageError) and e.__cause__ is not None else e
        problem = "interrupted" if isinstance(cause, KeyboardInterrupt) else (
            str(cause) if isinstance(cause, ModeldeckError) else
            f"internal error: {type(cause).__name__}: {one_line(cause, 160)}")
        run.emit("rollback", f"{problem}: the release cannot be watched to its end", "error")
        if run.plan.action == "rollback":
            msg = f"rolled back the alias, but {problem}; not undoing a rollback automatically"
            run.emit("done", msg, "error")
            out = _outcome(run, UNVERIFIED, msg, change=change, forced=forced, verified=False)
        else:
            out = _abort(run, change, stage, problem, hook, forced)
        if isinstance(e, KeyboardInterrupt):
            raise
        return out


class _StageError(Exception):
    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.stage = stage


def _after_move(run: _Run, change: AliasChange, hook: HookConfig | None, *, forced: bool, verify: bool,
                poll: Callable[[], Sequence[EndpointSnapshot]] | None, interval: float | None,
                resume: str | None, bake_seconds: float | None, verified_since: float | None) -> ReleaseOutcome:
    p = run.plan
    previous = change.from_version
    # 2. the deploy hook
    if hook is not None and resume is None:
        err = _run_deploy_hook(run, hook, p.action, change.to_version, previous, forced=forced)
        if err is not None:
            undo, why = _undo(run, change, stage="deploy", why=f"deploy hook failed: {err}")
            if undo is None:
                msg = f"deploy hook failed ({err}); {why}"
                run.emit("done", msg, "error")
                return _outcome(run, UNDO_FAILED, msg, change=change, forced=forced)
            back = "unset" if undo.to_version is None else f"version {undo.to_version}"
            msg = f"deploy hook failed ({err}); the alias was put back to {back}"
            run.emit("done", msg, "error")
            return _outcome(run, HOOK_FAILED, msg, change=change, undo=undo, forced=forced)
    # 3. verification and baking
    if not verify:
        msg = f"{change_text(change)}; verification skipped (--no-verify)"
        run.emit("done", msg, "success")
        return _outcome(run, RELEASED, msg, change=change, forced=forced)
    if not p.endpoints:
        msg = f"{change_text(change)}; {p.notes[-1] if p.notes else 'no endpoints to verify'}"
        run.emit("verify", "no endpoints to verify: skipping verification and baking", "warning")
        run.emit("done", msg, "success")
        return _outcome(run, RELEASED, msg, change=change, forced=forced)
    watch = None
    if poll is None:
        # the bake judges the new version's own records itself (_prediction_drift): the watch
        # polls health, versions and metrics only (a window's drift every few polls is most of the CPU)
        watch = EndpointWatch(p.settings, p.endpoints, live_windows=False)
        poll = watch
    every = interval if interval is not None else p.settings.poll.interval
    stage = "bake" if resume == "bake" else "verify"
    bake = p.bake_seconds if bake_seconds is None else max(0.0, bake_seconds)
    try:
        try:
            problem = None
            since = verified_since if verified_since is not None else time.time()
            if stage == "verify":
                run.stage("verify", p.verify_timeout)
                problem = _verify(run, poll, change.to_version, every)
                since = time.time()
            if problem is None:
                stage = "bake"
                if bake > 0:
                    run.stage("bake", bake)
                problem = _bake(run, poll, change.to_version, every, since=since, seconds=bake)
        except ReleaseStopped as e:
            problem = str(e)
        except Exception as e:
            raise _StageError(stage, e) from e
    finally:
        if watch is not None:
            watch.close()
    if isinstance(problem, BakeUnverified):  # too little traffic to judge: said, not guessed
        msg = f"{change_text(change)}; verified, but {problem}"
        run.emit("done", msg, "warning")
        return _outcome(run, UNVERIFIED, msg, change=change, forced=forced, verified=True, baked=None)
    if problem is None:
        msg = f"{change_text(change)}; verified" + (f" and baked {duration(bake)}" if bake else "")
        run.emit("done", msg, "success")
        return _outcome(run, RELEASED, msg, change=change, forced=forced, verified=True,
                        baked=True if bake else None)
    if p.action == "rollback":
        msg = f"rolled back the alias, but {problem}; not undoing a rollback automatically"
        run.emit("done", msg, "error")
        return _outcome(run, UNVERIFIED, msg, change=change, forced=forced, verified=False)
    return _abort(run, change, stage, problem, hook, forced)


def _abort(run: _Run, change: AliasChange, stage: str, problem: str, hook: HookConfig | None,
           forced: bool) -> ReleaseOutcome:
    """Verification or baking failed: roll back, redeploy the previous version, record why."""
    what = {"verify": "verification", "bake": "baking"}.get(stage, "the deployment")
    undo, why = _undo(run, change, stage=stage, why=f"{what} failed: {problem}")
    if undo is None:
        msg = f"{what} failed ({problem}); {why}"
        run.emit("done", msg, "error")
        return _outcome(run, UNDO_FAILED, msg, change=change, forced=forced, verified=stage != "verify",
                        baked=False if stage == "bake" else None)
    if hook is not None and undo.to_version is not None:
        try:
            err = _run_deploy_hook(run, hook, "rollback", undo.to_version, change.to_version, forced=False,
                                   automatic=True)
        except Exception as e:  # the alias is back: say that the servers may not be
            err = f"modeldeck error: {type(e).__name__}: {e}"
        if err is not None:
            run.emit("rollback", f"the deploy hook for the rollback failed too: {err}; check the endpoints",
                     "error")
    back = "no version (unset)" if undo.to_version is None else f"version {undo.to_version}"
    msg = f"{what} failed ({problem}); rolled back {change.model} {change.environment} to {back} automatically"
    run.emit("done", msg, "error", automatic=True)
    return _outcome(run, ROLLED_BACK, msg, change=change, undo=undo, forced=forced,
                    verified=stage != "verify", baked=False if stage == "bake" else None)


def change_text(change: AliasChange) -> str:
    before = "unset" if change.from_version is None else f"version {change.from_version}"
    verb = "promoted" if change.action == "promote" else "rolled back"
    return f"{verb} {change.model} {change.environment}: {before} -> version {change.to_version}"


def _outcome(run: _Run, status: str, message: str, **kw: Any) -> ReleaseOutcome:
    return ReleaseOutcome(status=status, plan=run.plan, message=message,
                          log_path=str(run.log_path) if run.log_path else None, events=tuple(run.events), **kw)


def _undo(run: _Run, change: AliasChange, *, stage: str, why: str) -> tuple[AliasChange | None, str]:
    """Put the alias back where it was before ``change``, compare-and-set (only if it still
    holds what we put there). Returns (the undoing change, "") or (None, why not)."""
    p = run.plan
    reg = run.reg
    prev = change.from_version
    details = {"automatic": True, "stage": stage, "failed": why, "undoes": change.to_version}
    reason = f"automatic: {why}"
    if prev is None:  # a first-ever release: put the environment back to holding nothing
        run.emit("rollback", f"{why}; {p.environment} of {p.model} held no version before: unsetting it",
                 "warning")
        try:
            undo = reg.unset_alias(p.model, p.environment, reason, expect=change.to_version, actor=run.actor,
                                   details=details)
        except ModeldeckError as e:
            text = f"not rolled back: {e}"
            run.emit("rollback", text, "error")
            return None, text
        run.emit("rollback", f"{p.environment} of {p.model} holds no version again", "warning",
                 change=undo.as_dict())
        return undo, ""
    run.emit("rollback", f"{why}; putting {p.environment} back to version {prev}", "warning")
    try:  # undo=True: putting back what held it a moment ago needs no approval (it may be rejected meanwhile)
        if change.action == "promote":
            undo = reg.rollback(p.model, p.environment, reason, to=prev, expect=change.to_version,
                                actor=run.actor, details=details, undo=True)
        else:
            undo = reg.promote(p.model, prev, p.environment, reason, expect=change.to_version,
                               actor=run.actor, details=details, undo=True)
    except ModeldeckError as e:
        text = f"not rolled back: {e}"
        run.emit("rollback", text, "error")
        return None, text
    run.emit("rollback", f"{p.environment} of {p.model} is back at version {undo.to_version}", "warning",
             change=undo.as_dict())
    return undo, ""


# -- deploy hook --------------------------------------------------------------------------------


def release_log_path(model: str, environment: str, version: int, registry: str | os.PathLike[str]) -> Path:
    from modeldeck.core.retrain import job_log_path

    folder = job_log_path(0, registry).parent.name
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return paths.state_dir() / "releases" / folder / f"{paths.slug(model, environment)}-v{int(version)}-{stamp}.log"


def _run_deploy_hook(run: _Run, hook: HookConfig, action: str, version: int, previous: int | None, *,
                     forced: bool, automatic: bool = False) -> str | None:
    """Run the deploy hook (command, then webhook). Returns None on success, else why not."""
    p = run.plan
    s = p.settings
    artifact = p.candidate.artifact if version == p.candidate.version else run.reg.version(p.model, version).artifact
    fields = {"model": p.model, "version": version, "environment": p.environment,
              "previous": "" if previous is None else previous, "action": action, "artifact": artifact,
              "registry": str(Path(s.registry).resolve()), "config": config_file(s),
              "python": sys.executable, "actor": run.actor}
    try:
        if run.log_path is None:
            run.log_path = release_log_path(p.model, p.environment, version, s.registry)
            run.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(run.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    except OSError as e:  # the alias already moved: the caller puts it back with this reason
        return f"cannot write the release log {run.log_path}: {e.strerror or e}"
    try:
        return _deploy_logged(run, hook, action, version, fields, log, forced=forced, automatic=automatic)
    except Exception as e:  # a failure after the alias moved must undo the move, never leave it silently
        return f"internal error in the deploy hook: {type(e).__name__}: {one_line(e, 160)}"
    finally:
        log.close()


def _deploy_logged(run: _Run, hook: HookConfig, action: str, version: int, fields: Mapping[str, Any], log: Any, *,
                   forced: bool, automatic: bool) -> str | None:
    p = run.plan

    def out(line: str) -> None:
        log.write(line + "\n")
        log.flush()
        run.emit("hook", line, "output")

    out(f"# {utcnow()} deploy {p.model} version {version} to {p.environment} ({action}"
        f"{', automatic' if automatic else ''}, by {run.actor})")
    if hook.command:
        err = _deploy_command(run, hook, fields, out)
        if err is not None:
            out(f"# failed: {err}")
            return err
    if hook.webhook:
        err = _deploy_webhook(run, hook, fields, out, forced=forced, automatic=automatic)
        if err is not None:
            out(f"# failed: {err}")
            return err
    out("# deploy hook succeeded")
    run.emit("hook", f"deploy hook succeeded (log: {run.log_path})", "success")
    return None


def _deploy_command(run: _Run, hook: HookConfig, fields: Mapping[str, Any], out: Callable[[str], None]) -> str | None:
    assert hook.command is not None
    argv = render_argv(hook.command, fields)
    env = hook_env({"MODELDECK_MODEL": fields["model"], "MODELDECK_VERSION": fields["version"],
                    "MODELDECK_ENVIRONMENT": fields["environment"], "MODELDECK_PREVIOUS": fields["previous"],
                    "MODELDECK_ACTION": fields["action"], "MODELDECK_ARTIFACT": fields["artifact"],
                    "MODELDECK_REGISTRY": fields["registry"], "MODELDECK_CONFIG": fields["config"] or None})
    run.emit("hook", "running deploy hook: " + shlex.join(argv), "progress")
    out("$ " + shlex.join(argv))
    proc = start_command(argv, env, hook_cwd(run.plan.settings))
    if isinstance(proc, str):
        return proc
    rc, last, timed_out = stream_process(proc, hook.timeout, out, grace=5.0)
    if timed_out:
        return timed_out_words(hook.timeout)
    if rc != 0:
        why = exit_words(rc)
        return f"{why}: {last[:160]}" if last else why
    return None


def _deploy_webhook(run: _Run, hook: HookConfig, fields: Mapping[str, Any], out: Callable[[str], None], *,
                    forced: bool, automatic: bool) -> str | None:
    w = hook.webhook
    assert w is not None
    payload = {"event": "deploy", "action": fields["action"], "model": fields["model"],
               "version": fields["version"], "environment": fields["environment"],
               "previous": fields["previous"] if fields["previous"] != "" else None,
               "artifact": fields["artifact"], "actor": run.actor, "reason": run.reason, "forced": forced,
               "automatic": automatic, "sent_at": utcnow()}
    body = json_body(payload)
    where = f"models.{fields['model']}.deploy.webhook"
    try:
        headers = webhook_headers(w, body, where)
    except ConfigError as e:
        return str(e)
    run.emit("hook", f"POST {w.url}", "progress")
    out(f"POST {w.url}")
    with webhook_client(w) as client:
        r = post_webhook(client, w.url, body, headers, redact=Redactor.for_webhook(w, headers, where))
    if isinstance(r, str):
        return r
    out(f"-> HTTP {r.status} {r.text}".rstrip())
    if not r.ok:
        return f"webhook {w.url} answered HTTP {r.status}" + (f": {r.text[:120]}" if r.text else "")
    return None


# -- verification and baking ---------------------------------------------------------------------


def _serves(s: EndpointSnapshot, version: str) -> bool:
    return s.served_version == version or version in s.served_versions


def _verify(run: _Run, poll: Callable[[], Sequence[EndpointSnapshot]], version: int, every: float) -> str | None:
    """Wait until every endpoint serves ``version``; None when they do, else why not."""
    p = run.plan
    want = str(version)
    deadline = run.clock() + p.verify_timeout
    run.emit("verify", f"waiting up to {duration(p.verify_timeout)} for {', '.join(p.endpoints)} to serve "
             f"version {want}", "progress")
    last: dict[str, str] = {}
    while True:
        snaps = {s.endpoint: s for s in poll()}
        waiting = []
        for name in p.endpoints:
            s = snaps.get(name)
            if s is None:
                state = "no answer"
            elif s.status == DOWN:
                state = f"down ({s.reason})"
            elif _serves(s, want):
                state = "ok"
            else:
                state = f"serves version {s.served_version}" if s.served_version else "serves an unknown version"
            if last.get(name) != state:
                last[name] = state
                if state == "ok":
                    run.emit("verify", f"{name} serves version {want}", "progress", endpoint=name)
                else:
                    run.emit("verify", f"{name}: {state}; waiting for version {want}", "progress", endpoint=name)
            if state != "ok":
                waiting.append(f"{name} {state}")
        if not waiting:
            run.emit("verify", f"all {len(p.endpoints)} endpoint(s) serve version {want}", "success")
            return None
        if run.clock() >= deadline:
            return f"after {duration(p.verify_timeout)}: " + "; ".join(waiting)
        run.sleep(max(0.0, min(every, deadline - run.clock())))


BAKE_DRIFT_MIN_ROWS = 200  # records of the new version a prediction-drift check needs
# reference rows it needs: below this the per-column tests are p-value tests whose chance rejections
# (measured: 10 of 40 same-distribution windows against a 250-row reference, 3 with PSI >= 0.1)
# would roll healthy versions back; from 1,000 rows they are distance tests (as Evidently's defaults)
BAKE_REFERENCE_MIN_ROWS = 1000


class BakeUnverified(str):
    """What _bake returns when the traffic stayed too little to judge up to bake_max_seconds."""


@dataclass
class _Served:
    """One endpoint's traffic served by the new version since the bake started: the new
    version's own request rate and error ratio where the server labels its counters by version
    (MLServer's ``version``: a server holding both versions is judged on the new one's requests),
    else the snapshots' totals (polled after verification, so only the new version's requests
    count); and its p95 readings."""

    version: str | None = None
    requests: float = 0.0
    errors: float = 0.0
    last_at: float | None = None
    p95s: list[float] = field(default_factory=list)
    per_version: bool = False  # whether the counts came from the version's own series

    def add(self, s: EndpointSnapshot) -> None:
        if s.taken_at is None:
            return
        rate, ratio = s.request_rate, s.error_ratio
        mine = next((r for r in s.version_rates if r[0] == self.version), None) if self.version else None
        if mine is not None:
            rate, ratio, self.per_version = mine[1], mine[2], True
        if self.last_at is not None and rate is not None and s.taken_at > self.last_at:
            dt = s.taken_at - self.last_at
            n = max(0.0, rate) * dt
            self.requests += n
            self.errors += n * max(0.0, min(1.0, ratio or 0.0))
        self.last_at = s.taken_at
        if s.latency_p95_ms is not None:
            self.p95s.append(s.latency_p95_ms)

    @property
    def p95(self) -> float | None:
        """The median of the p95 readings (one slow scrape does not fail a bake)."""
        if len(self.p95s) < 3:
            return None
        v = sorted(self.p95s)
        return v[len(v) // 2]


def _bake(run: _Run, poll: Callable[[], Sequence[EndpointSnapshot]], version: int, every: float,
          since: float, seconds: float | None = None) -> str | None:
    """Watch the endpoints for ``bake_seconds``, judging only what the new version served
    (:func:`modeldeck.core.judge.bake_verdict` against the old version's baseline in
    ``plan.baseline``); None when it passed, else why not. Fails on: DOWN in DOWN_POLLS polls
    running, a version other than the new one, the bake rule (error ratio, p95), or drift of
    the new version's *predictions* from its reference's (input drift alone never fails: the
    inputs do not depend on the version). With too little traffic it extends up to
    ``bake_max_seconds``, then returns a :class:`BakeUnverified`."""
    p = run.plan
    bake = p.bake_seconds if seconds is None else seconds
    if bake <= 0:
        return None
    mc = p.settings.model(p.model)
    want = str(version)
    thresholds = {e.name: e.thresholds for e in p.settings.endpoints if e.name in p.endpoints}
    start = run.clock()
    end = start + bake
    longest = max(bake, mc.bake_max_seconds or 3 * bake)
    hard_end = start + longest
    base = {k: v for k, v in (p.baseline or {}).items() if isinstance(v, Mapping)}
    run.emit("bake", f"baking for {duration(bake)}: the error ratio and p95 of what version {want} serves against "
             f"{_baseline_words(base, p.endpoints)}, and its predictions' drift", "progress")
    downs: dict[str, int] = {}
    warned: set[tuple[str, str]] = set()
    served = {n: _Served(version=want) for n in p.endpoints}
    drift_done: dict[str, str] = {}
    extended = False
    next_note = start + max(every, bake / 4)
    while True:
        run.sleep(max(0.0, min(every, (end if not extended else hard_end) - run.clock())))
        snaps = {s.endpoint: s for s in poll()}
        verdicts: dict[str, judge.BakeVerdict] = {}
        for name in p.endpoints:
            s = snaps.get(name)
            if s is None:
                continue
            th = thresholds.get(name, p.settings.thresholds)
            if s.status == DOWN:
                downs[name] = downs.get(name, 0) + 1
                if downs[name] >= DOWN_POLLS:
                    return f"{name} is down: {s.reason}".rstrip(": ")
                continue
            downs[name] = 0
            if not _serves(s, want):
                return f"{name} serves version {s.served_version}, not {want}"
            if s.request_rate is None and s.error_ratio is not None:
                # no request counts to judge with (a source without a rate): the judge's verdict on the reading
                critical = [v for v in judge.health_verdicts(s, th) if v.level == judge.CRITICAL]
                if critical:
                    return f"{name}: {critical[0].text}"
            served[name].add(s)
            sv = served[name]
            v = judge.bake_verdict(requests=sv.requests, errors=sv.errors, p95_ms=sv.p95, baseline=base.get(name),
                                   th=th, margin=mc.bake_error_margin, p95_ratio=mc.p95_ratio,
                                   min_requests=mc.bake_min_requests)
            if v.state == "fail":
                return f"{name}: {v.text}"
            verdicts[name] = v
            for hv in judge.health_verdicts(s, th):
                if hv.level == judge.WARNING and (name, hv.key) not in warned:
                    warned.add((name, hv.key))
                    run.emit("bake", f"{name}: {hv.text} (the warning level)", "warning", endpoint=name)
        now = run.clock()
        if now >= end:
            # the predictions' drift, once per endpoint, on the new version's records; too few of
            # them yet keeps the bake going (as too little traffic does) until bake_max_seconds
            drift_short: dict[str, str] = {}
            for name in p.endpoints:
                if name not in drift_done:
                    problem, note, too_few = _prediction_drift(run, name, want, since)
                    if problem:
                        return f"{name}: {problem}"
                    if too_few and now < hard_end:
                        drift_short[name] = note or ""
                        continue
                    if note is not None:
                        drift_done[name] = note
                        run.emit("bake", f"{name}: {note}", "progress", endpoint=name)
            short = [n for n in p.endpoints if verdicts.get(n) is None or verdicts[n].state == "too_little"]
            if not short and drift_short:
                if not extended:
                    extended = True
                    run.emit("bake", f"too few records to judge the predictions' drift yet "
                             f"({'; '.join(f'{n}: {w}' for n, w in drift_short.items())}); "
                             f"extending the bake up to {duration(longest)}", "warning")
            elif not short:
                lines = "; ".join(f"{n} {verdicts[n].text}" for n in p.endpoints)
                run.emit("bake", f"baked {duration(now - start)} without trouble: {lines}", "success")
                return None
            if now >= hard_end:
                why = "; ".join(f"{n}: {verdicts[n].text if n in verdicts else 'no readings'}" for n in short)
                return BakeUnverified(f"too little traffic to judge version {want} in {duration(now - start)} "
                                      f"(bake_max_seconds): {why}")
            if not extended:
                extended = True
                run.emit("bake", f"too little traffic to judge yet ({'; '.join(f'{n}: {verdicts[n].text}' if n in verdicts else f'{n}: no readings' for n in short)}); "
                         f"extending the bake up to {duration(longest)}", "warning")
        if now >= next_note:
            next_note = now + max(every, bake / 4)
            left = (end if not extended else hard_end) - now
            run.emit("bake", f"baking: {duration(max(0.0, left))} left; {_bake_line(snaps, p.endpoints)}", "progress")


def _baseline_words(base: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> str:
    parts = []
    for n in names:
        b = base.get(n)
        if not b or not b.get("requests"):
            continue
        er = float(b.get("errors") or 0) / float(b["requests"])
        lat = f", p95 {float(b['p95_ms']):.0f} ms" if b.get("p95_ms") else ""
        parts.append(f"{n} errors {er * 100:.1f}% over {float(b['requests']):.0f} requests{lat} ({b.get('source')})")
    return "the old version's " + "; ".join(parts) if parts else "the thresholds (no baseline of the old version)"


def _prediction_drift(run: _Run, name: str, version: str,
                      since: float) -> tuple[str | None, str | None, bool]:
    """(why the new version's predictions drift, or None; a note when not judged or judged fine;
    True when it was not judged for too few records of the new version yet, which more traffic mends)."""
    p = run.plan
    ep = next((e for e in p.settings.endpoints if e.name == name), None)
    if ep is None or not ep.capture:
        return None, None, False
    try:
        ref = run.reg.version(p.model, int(version)).reference_path
    except (ModeldeckError, ValueError):
        ref = None
    if not ref:
        return None, f"prediction drift not judged: version {version} has no reference data", False
    from modeldeck.core import capture, drift

    try:
        profile = drift.cached_profile(ref, timeout=p.settings.poll.timeout * 5)
        window = capture.read_window(ep.capture, p.settings.poll.drift_window, ids=True)
    except ModeldeckError as e:
        return None, f"prediction drift not judged: {one_line(e, 160)}", False
    # the version that served each record: an OIP answer's model_version in a capture, or a
    # model_version field of plain records
    col = next((c for c in (capture.VERSION, "model_version") if c in window.columns), None)
    if col is not None:
        window = window[window[col].astype(str) == version]
        which = f"records served by version {version}"
    else:
        import pandas as pd

        cutoff = pd.Timestamp(since, unit="s", tz="UTC")
        window = window[window.index >= cutoff] if isinstance(window.index, pd.DatetimeIndex) else window.iloc[0:0]
        which = "records captured after verification"
    outputs = [c for c in window.attrs.get("output_columns", []) or [] if c in profile.columns]
    if not outputs:
        outputs = [c for c in window.columns if str(c).startswith("prediction") and c in profile.columns]
    if not outputs:
        return None, "prediction drift not judged: the reference data has no prediction columns", False
    if len(window) < BAKE_DRIFT_MIN_ROWS:
        return None, f"prediction drift not judged: {len(window)} {which} (needs {BAKE_DRIFT_MIN_ROWS})", True
    if profile.n_rows < BAKE_REFERENCE_MIN_ROWS:
        return None, (f"prediction drift not judged: the reference data of version {version} has "
                      f"{profile.n_rows} rows (needs {BAKE_REFERENCE_MIN_ROWS})"), False
    try:
        result = drift.compare(profile, window, columns=outputs, current_name=f"version {version}")
    except ModeldeckError as e:
        return None, f"prediction drift not judged: {one_line(e, 160)}", False
    data = drift.result_to_json(result)
    psi_min = ep.thresholds.psi_warn
    counted = judge.prediction_drift_columns(data, psi_min)
    n_columns = int(data.get("n_columns") or len(outputs))
    if counted and len(counted) / max(1, n_columns) >= ep.thresholds.drift_share:
        return (f"the predictions of version {version} drift from its reference ({len(counted)} of "
                f"{n_columns} output columns drifted with PSI at or over {psi_min:g}: "
                f"{', '.join(one_line(c, 40) for c in counted)}; {len(window)} {which})"), None, False
    return None, f"predictions of version {version} match its reference ({len(window)} {which})", False


def _bake_line(snaps: Mapping[str, EndpointSnapshot], names: Sequence[str]) -> str:
    parts = []
    for n in names:
        s = snaps.get(n)
        if s is None:
            continue
        er, p95 = s.error_ratio, s.latency_p95_ms
        parts.append(f"{n} errors {'-' if er is None else f'{er * 100:.1f}%'}, p95 "
                     f"{'-' if p95 is None else f'{p95:.0f} ms'}")
    return "; ".join(parts) or "no readings yet"


