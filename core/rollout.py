"""Rollouts: a promote or rollback as a record in the registry, driven by a detached supervisor.

The caller (the command line, the TUI) only starts a rollout and follows it:

    started = start(plan, reason="better AUC")   # gates, alias move, supervisor spawned
    final = follow(registry_path, started.rollout.id, on_step=print)

:func:`start` judges the plan's gates and moves the alias in the caller (the rollout goes
``gating`` -> ``deploying`` in the alias move's own transaction), then hands everything after
the move to ``python -P -m modeldeck run-rollout ID --registry FILE``: a process in its own
session, so Ctrl-C, a closed SSH session or a quit TUI leave it running. The supervisor runs
the deploy hook, verification and the bake (``core.releases.after_move``), records each step
in the rollout's log and each transition with its audit entry, and heartbeats every
:data:`HEARTBEAT` seconds. An operator's abort (:func:`abort`) is a request in the registry
that the supervisor reads with its heartbeat: it rolls back and ends ``aborted``.

Nothing is silently unwatched: :func:`reconcile` (called by every modeldeck process that reads
the registry) finds active rollouts whose supervisor is gone, and either starts a new
supervisor that resumes the watch (bake time remains) or sets the rollout ``unverified``, a
CRITICAL finding until an operator confirms it (:func:`confirm`) or rolls back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from modeldeck.core import paths
from modeldeck.core.config import Settings
from modeldeck.core.errors import ConflictError, ModeldeckError, RegistryError
from modeldeck.core.hooks import hook_env, pid_alive
from modeldeck.core.registry import (
    ROLLOUT_ACTIVE,
    ROLLOUT_ENDED,
    AliasChange,
    Registry,
    Rollout,
    RolloutStep,
    current_actor,
    format_time,
    open_registry,
    stored_time,
    utcnow,
)

HEARTBEAT = float(os.environ.get("MODELDECK_ROLLOUT_HEARTBEAT", "1.0"))  # seconds between heartbeats
STALE = float(os.environ.get("MODELDECK_ROLLOUT_STALE", "20.0"))  # a heartbeat older than this: gone
MAX_RESUMES = 3  # a rollout whose supervisors keep dying is set unverified, not restarted forever

# exit codes of a followed promote / rollback
EXIT_DONE, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def exit_code(r: Rollout) -> int:
    """0 when done, 1 when rolled back, aborted, failed or unverified."""
    return EXIT_DONE if r.state == "done" else EXIT_FAILED


def describe_state(r: Rollout, now: float | None = None) -> str:
    """``BAKING 14s``, ``VERIFYING``, ``ROLLED_BACK``: the badge a fleet row shows."""
    word = r.state.upper()
    if r.state == "baking" and r.bake_ends_at:
        end = stored_time(r.bake_ends_at)
        if end is not None:
            left = max(0.0, end.timestamp() - (time.time() if now is None else now))
            return f"{word} {left:.0f}s"
    return word


# ---------------------------------------------------------------------------------------------
# liveness and reconcile


def _age(stamp: str | None) -> float | None:
    t = stored_time(stamp) if stamp else None
    return None if t is None else (datetime.now(timezone.utc) - t).total_seconds()


def supervised(r: Rollout) -> bool:
    """Is something still driving this active rollout (a live supervisor with a fresh
    heartbeat, or one just started)?"""
    if r.pid is None:  # between the alias move and the supervisor's first heartbeat
        age = _age(r.updated_at)
        return age is not None and age < STALE
    if not pid_alive(r.pid):
        return False
    age = _age(r.heartbeat_at or r.updated_at)
    return age is not None and age < STALE


def reconcile(registry: Registry, settings: Settings | None = None) -> list[Rollout]:
    """Active rollouts whose supervisor is gone: resume the watch in a new supervisor when it
    can still mean something (verification pending, or bake time left, and the endpoints are
    known), else set them ``unverified`` (or ``failed`` when nothing moved). Cheap when
    nothing is active (one query). Returns the rollouts it changed or resumed."""
    if registry.readonly:
        return []
    changed = []
    for r in registry.rollouts(states=ROLLOUT_ACTIVE, limit=None):
        if supervised(r):
            continue
        with contextlib.suppress(ConflictError):
            out = _take_over(registry, r, settings)
            if out is not None:
                changed.append(out)
    return changed


def _take_over(reg: Registry, r: Rollout, settings: Settings | None) -> Rollout | None:
    who = f"its supervisor (pid {r.pid})" if r.pid else "the process that started it"
    last = f"; last heartbeat {r.heartbeat_at[:19].replace('T', ' ')} UTC" if r.heartbeat_at else ""
    if r.change_id is None:  # it died before the alias moved
        return reg.transition_rollout(r.id, "failed", f"{who} ended before the alias moved; nothing moved",
                                      expect=(r.state,), actor="modeldeck")
    remaining = None
    if r.state == "baking" and r.bake_ends_at:
        end = stored_time(r.bake_ends_at)
        remaining = None if end is None else end.timestamp() - time.time()
    resumes = int(r.details.get("resumes", 0) or 0)
    resume = None
    if r.verify and resumes < MAX_RESUMES:
        if r.state in ("deploying", "verifying"):
            resume = "verify"
        elif r.state == "baking" and remaining is not None and remaining > 1.0:
            resume = "bake"
    s = _settings_for(r, settings, reg) if resume else None
    if s is not None:
        s = releases_with_discovered(s, r.model, r.environment)
    if resume and s is not None and s.endpoints_for(r.model, r.environment):
        details = {**dict(r.details), "resumes": resumes + 1}
        # claim it (compare-and-set on the dead pid and heartbeat), then hand it on
        if not reg.claim_rollout(r.id, os.getpid(), expect_pid=r.pid, expect_heartbeat=r.heartbeat_at):
            return None
        reg.update_rollout(r.id, details=details)
        now = reg.rollout(r.id)
        reg.add_rollout_steps(r.id, [(utcnow(), "resume", "warning",
                                      f"{who} stopped{last}; resuming the watch"
                                      + (f" ({remaining:.0f} s of the bake left)" if remaining else ""))])
        try:
            _spawn(s, now, resume=resume, expect_pid=os.getpid(), expect_heartbeat=now.heartbeat_at)
        except (OSError, ModeldeckError) as e:
            return reg.transition_rollout(r.id, "unverified", f"{who} stopped{last} and no new supervisor could "
                                          f"start ({e}); nothing watches version {r.to_version}",
                                          expect=(r.state,), actor="modeldeck")
        return reg.rollout(r.id)
    why = ("the bake had ended" if r.state == "baking" and (remaining or 0) <= 1.0 else
           "its supervisors kept stopping" if resumes >= MAX_RESUMES else
           "no config names its endpoints here")
    return reg.transition_rollout(
        r.id, "unverified", f"{who} stopped while {r.state}{last}; {why}, so nothing watched version "
        f"{r.to_version} to the end: check {r.environment}, then modeldeck rollout {r.id} --confirm --reason ... "
        f"or roll back", expect=(r.state,), actor="modeldeck")


def releases_with_discovered(settings: Settings, model: str, environment: str) -> Settings:
    from modeldeck.core import releases

    return releases.with_discovered(settings, model, environment)


def _settings_for(r: Rollout, settings: Settings | None, reg: Registry) -> Settings | None:
    """The settings to resume ``r`` with: its own config file when it is still there, else ours."""
    from modeldeck.core import config as configmod

    if r.config_path and Path(r.config_path).is_file():
        try:
            s = configmod.load(r.config_path, reg.path)
        except ModeldeckError:
            s = settings
    else:
        s = settings
    if s is None:
        return None
    return replace(s, registry=reg.path)


# ---------------------------------------------------------------------------------------------
# starting


@dataclass(frozen=True)
class Started:
    """What :func:`start` did: the rollout record, and the outcome when it ended in the caller
    (gates refused it: nothing moved)."""

    rollout: Rollout | None  # None: refused before anything was written
    refused: bool = False
    message: str = ""


class StepRecorder:
    """ReleaseEvents -> the rollout's step log (and on to ``forward``)."""

    def __init__(self, reg: Registry, rollout_id: int, forward: Callable[[Any], None] | None = None) -> None:
        self.reg, self.rollout_id, self.forward = reg, rollout_id, forward

    def __call__(self, ev: Any) -> None:
        with contextlib.suppress(ModeldeckError):
            self.reg.add_rollout_steps(self.rollout_id, [(utcnow(), ev.stage, ev.level, str(ev.message))])
        if self.forward is not None:
            with contextlib.suppress(Exception):
                self.forward(ev)


def start(plan: Any, *, reason: str, force: bool = False, verify: bool = True, actor: str | None = None,
          registry: Registry | None = None, on_event: Callable[[Any], None] | None = None) -> Started:
    """Create the rollout, judge the gates and move the alias here, then start the detached
    supervisor for the rest. Refusals by the registry (a conflict, approval) raise after the
    rollout is recorded ``failed``; failed gates (not forced) end it ``failed`` with
    ``Started.refused``. Returns once the supervisor is started."""
    from modeldeck.core import releases

    if not reason or not reason.strip():
        raise RegistryError(f"a reason is required to {plan.action} (--reason)")
    actor = actor or plan.actor or current_actor()
    own = registry is None
    reg = registry if registry is not None else open_registry(plan.settings, create=False)
    try:
        s: Settings = plan.settings
        # refusals known before anything is written leave nothing behind (no record, no audit
        # entry): failed gates that are not forced, an alias that moved since the plan
        if plan.failed_gates and (not force or plan.unforceable_failures):
            run = releases._Run(plan, reg, actor, reason, on_event, None, time.monotonic, None)
            out = releases.gate_and_move(run, force=force)
            assert isinstance(out, releases.ReleaseOutcome)
            return Started(None, refused=True, message=out.message)
        now = reg.alias(plan.model, plan.environment)
        if plan.cas_expect != now:
            seen = "unset" if plan.cas_expect is None else f"version {plan.cas_expect}"
            holds = "unset" if now is None else f"version {now}"
            raise ConflictError(f"{plan.environment} of {plan.model} moved to {holds} since you saw it at {seen}; "
                                f"nothing was changed; look again and retry")
        baseline = releases.baseline_for(plan, reg) if verify and plan.bake_seconds > 0 else {}
        r = reg.create_rollout(plan.model, plan.environment, plan.action, plan.to_version, reason,
                               from_version=plan.from_version, actor=actor, verify=verify,
                               bake_seconds=plan.bake_seconds if verify else 0.0,
                               config_path=str(Path(s.path).resolve()) if s.path else None,
                               details={"baseline": baseline} if baseline else None)
        run = releases._Run(plan, reg, actor, reason, StepRecorder(reg, r.id, on_event), None, time.monotonic, None,
                            rollout_id=r.id)
        try:
            moved = releases.gate_and_move(run, force=force)
        except ModeldeckError as e:
            reg.transition_rollout(r.id, "failed", f"refused: {e}", expect=("gating",), actor=actor)
            raise
        except BaseException as e:
            with contextlib.suppress(ModeldeckError):
                cur = reg.rollout(r.id)
                if cur.state == "gating":
                    reg.transition_rollout(r.id, "failed", f"stopped before the alias moved: {type(e).__name__}",
                                           expect=("gating",), actor=actor)
                elif cur.active:
                    _compensate(reg, cur, f"modeldeck error: {type(e).__name__}: {e}", actor)
            raise
        if isinstance(moved, releases.ReleaseOutcome):
            done = reg.transition_rollout(r.id, "failed", moved.message, expect=("gating",), actor=actor)
            return Started(done, refused=True, message=moved.message)
        r = reg.rollout(r.id)
        try:
            _spawn(s, r, resume=None, force=force)
        except Exception as e:  # the alias moved: put it back, with the reason
            return Started(_compensate(reg, r, f"could not start the rollout supervisor: {e}", actor))
        return Started(reg.rollout(r.id))
    finally:
        if own:
            reg.close()


def _compensate(reg: Registry, r: Rollout, why: str, actor: str | None = None, *,
                state: str = "rolled_back") -> Rollout:
    """Put the alias back where the rollout found it (compare-and-set, ``undo=True``) and end
    the rollout ``rolled_back``; when that is impossible, ``failed`` (CRITICAL) with both
    reasons. Used where no supervisor can do it."""
    actor = actor or "modeldeck"
    reason = f"automatic: {why}"
    details = {"automatic": True, "failed": why, "undoes": r.to_version, "rollout": r.id}
    try:
        if r.action == "rollback":
            raise RegistryError("not undoing a rollback automatically")
        if r.from_version is None:
            reg.unset_alias(r.model, r.environment, reason, expect=r.to_version, actor=actor, details=details)
        else:
            reg.rollback(r.model, r.environment, reason, to=r.from_version, expect=r.to_version, actor=actor,
                         details=details, undo=True)
    except ModeldeckError as e:
        return reg.transition_rollout(r.id, "failed", f"{why}; and not rolled back: {e}", actor=actor)
    back = "unset" if r.from_version is None else f"version {r.from_version}"
    reg.add_rollout_steps(r.id, [(utcnow(), "rollback", "error", f"{why}; {r.environment} of {r.model} is back at "
                                  f"{back}")])
    return reg.transition_rollout(r.id, state, f"{why}; rolled back {r.model} {r.environment} to {back} "
                                  f"automatically", actor=actor)


def supervisor_log(rollout_id: int, registry: str | os.PathLike[str]) -> Path:
    """``state_dir()/rollouts/<registry key>/<id>.log``: what a supervisor printed (its stderr)."""
    reg = Path(registry).expanduser().resolve()
    key = f"{reg.stem}-{hashlib.sha256(str(reg).encode()).hexdigest()[:10]}"
    return paths.state_dir() / "rollouts" / key / f"{rollout_id}.log"


def _spawn(settings: Settings, r: Rollout, *, resume: str | None, force: bool = False,
           expect_pid: int | None = None, expect_heartbeat: str | None = None) -> int:
    """Start ``python -P -m modeldeck run-rollout ID --registry FILE`` in its own session. Its
    settings go on stdin (pickled: the same modeldeck, a pipe, never the command line or the
    registry; ``${VAR}`` references stay unexpanded)."""
    registry = str(Path(settings.registry).resolve())
    argv = [*paths.python_argv(), "-m", "modeldeck", "run-rollout", str(r.id), "--registry", registry]
    spec = pickle.dumps({"settings": replace(settings, registry=Path(registry)), "resume": resume, "force": force,
                         "expect_pid": expect_pid, "expect_heartbeat": expect_heartbeat})
    err: Any = subprocess.DEVNULL
    with contextlib.suppress(OSError):
        log = supervisor_log(r.id, registry)
        log.parent.mkdir(parents=True, exist_ok=True)
        err = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        cwd = settings.path.parent if settings.path else None
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                             env=hook_env({"MODELDECK_ROLLOUT_ID": r.id}), cwd=cwd, start_new_session=True,
                             close_fds=True)
    finally:
        if err is not subprocess.DEVNULL:
            err.close()
    assert p.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        p.stdin.write(spec)
    with contextlib.suppress(BrokenPipeError):
        p.stdin.close()
    threading.Thread(target=p.wait, daemon=True).start()  # reap it if we outlive it
    return p.pid


# ---------------------------------------------------------------------------------------------
# the supervisor (modeldeck run-rollout ID)


def supervise(rollout_id: int, registry: str, spec_bytes: bytes) -> Rollout:
    """The detached supervisor's body: claim the rollout, run the rest of the release with a
    heartbeat, record the end. Returns the final rollout."""
    try:
        spec = pickle.loads(spec_bytes)
        settings: Settings = spec["settings"]
    except Exception as e:
        raise RegistryError(f"rollout {rollout_id}: unreadable supervisor spec on stdin ({type(e).__name__})") from None
    me = os.getpid()
    settings = replace(settings, registry=Path(registry))
    with open_registry(settings, create=False) as reg:
        r = reg.rollout(rollout_id)
        if not r.active:
            return r
        if not reg.claim_rollout(rollout_id, me, expect_pid=spec.get("expect_pid"),
                                 expect_heartbeat=spec.get("expect_heartbeat")):
            return reg.rollout(rollout_id)  # someone else drives it
        try:
            return _supervise(reg, reg.rollout(rollout_id), settings, spec.get("resume"), me)
        except BaseException as e:
            # a modeldeck error before or around the watch: the alias moved, so undo it with the reason
            with contextlib.suppress(Exception):
                cur = reg.rollout(rollout_id)
                if cur.active:
                    _compensate(reg, cur, f"modeldeck error in the rollout supervisor: {type(e).__name__}: {e}")
            raise


def _plan_for(settings: Settings, reg: Registry, r: Rollout) -> Any:
    from modeldeck.core import releases

    mc = settings.model(r.model)
    with contextlib.suppress(ModeldeckError):
        mc, _ = releases.effective_model(settings, reg, r.model)
    settings = replace(settings, models={**settings.models, r.model: mc})
    settings = releases.with_discovered(settings, r.model, r.environment)
    eps = tuple(e.name for e in settings.endpoints_for(r.model, r.environment))
    return releases.ReleasePlan(settings=settings, model=r.model, environment=r.environment, action=r.action,
                                from_version=r.from_version, to_version=r.to_version,
                                candidate=reg.version(r.model, r.to_version), gates=(), endpoints=eps,
                                verify_timeout=mc.verify_timeout, bake_seconds=r.bake_seconds, actor=r.actor,
                                baseline=dict(r.details.get("baseline") or {}),
                                notes=() if eps else (f"no endpoints for {r.model} in {r.environment}: rollout "
                                                      f"verification and baking are skipped",))


def _supervise(reg: Registry, r: Rollout, settings: Settings, resume: str | None, me: int) -> Rollout:
    from modeldeck.core import releases

    plan = _plan_for(settings, reg, r)
    if r.verify and r.bake_seconds > 0 and plan.endpoints:
        # what the bake's judgement needs (the significance test, the prediction-drift check) is
        # imported now, during the deploy, not in the middle of the watch (about a second of CPU)
        import scipy.stats  # noqa: F401

        from modeldeck.core import capture, drift  # noqa: F401
    stop = threading.Event()
    lost = threading.Event()

    def on_stage(stage: str, seconds: float) -> None:
        now = datetime.now(timezone.utc)
        if stage == "verify":
            reg.transition_rollout(r.id, "verifying", f"waiting up to {seconds:g} s for the endpoints to serve "
                                   f"version {r.to_version}", actor=r.actor, expect=("deploying", "verifying",
                                                                                     "baking"))
        elif stage == "bake":
            fields: dict[str, Any] = {"bake_ends_at": format_time(now + timedelta(seconds=seconds))}
            cur = reg.rollout(r.id)
            if cur.state != "baking":
                fields.update(bake_started_at=format_time(now), verified_at=format_time(now))
            reg.transition_rollout(r.id, "baking", f"baking {seconds:g} s on version {r.to_version}", actor=r.actor,
                                   expect=("deploying", "verifying", "baking"), **fields)

    run = releases._Run(plan, reg, r.actor, r.reason, StepRecorder(reg, r.id), stop, time.monotonic, None,
                        rollout_id=r.id, on_stage=on_stage)

    def beat() -> None:
        with Registry(reg.path, create=False) as hb:
            while not stop.is_set() and not lost.is_set():
                try:
                    cur = hb.heartbeat(r.id, me)
                except ModeldeckError:  # locked a while: try again
                    time.sleep(HEARTBEAT)
                    continue
                if cur is None:
                    lost.set()
                    run.stop_reason = "another process took the watch over"
                    stop.set()
                    return
                if cur.abort_reason and not stop.is_set():
                    run.stop_reason = f"aborted by {cur.abort_by}: {cur.abort_reason}"
                    stop.set()
                    return
                time.sleep(HEARTBEAT)

    hb = threading.Thread(target=beat, name=f"rollout-{r.id}-heartbeat", daemon=True)
    hb.start()
    change = AliasChange(id=r.change_id or 0, model=r.model, environment=r.environment,
                         from_version=r.from_version, to_version=r.to_version, action=r.action, actor=r.actor,
                         at=r.started_at, reason=r.reason)
    remaining = None
    verified_since = None
    if resume == "bake" and r.bake_ends_at:
        end = stored_time(r.bake_ends_at)
        remaining = None if end is None else max(0.0, end.timestamp() - time.time())
        v = stored_time(r.verified_at) if r.verified_at else None
        verified_since = v.timestamp() if v is not None else None
    try:
        out = releases.after_move(run, change, forced=r.forced, verify=r.verify, resume=resume,
                                  bake_seconds=remaining, verified_since=verified_since)
    finally:
        aborted = stop.is_set() and not lost.is_set() and (run.stop_reason or "").startswith("aborted")
        stop.set()
    if lost.is_set():
        return reg.rollout(r.id)
    state = {releases.RELEASED: "done", releases.HOOK_FAILED: "rolled_back", releases.ROLLED_BACK: "rolled_back",
             releases.UNVERIFIED: "unverified", releases.UNDO_FAILED: "failed"}.get(out.status, "failed")
    if state == "rolled_back" and aborted:
        state = "aborted"
    try:
        return reg.transition_rollout(r.id, state, out.message, actor=r.actor, expect=ROLLOUT_ACTIVE)
    except ConflictError:
        return reg.rollout(r.id)


# ---------------------------------------------------------------------------------------------
# following, aborting, confirming


def follow(reg: Registry, rollout_id: int, *, on_step: Callable[[RolloutStep], None] | None = None,
           on_state: Callable[[Rollout], None] | None = None, stop: threading.Event | None = None,
           settings: Settings | None = None, interval: float = 0.2, after: int = 0,
           timeout: float | None = None) -> Rollout:
    """Report a rollout's new steps and state changes until it ends (or ``stop`` is set, or
    ``timeout`` passes); returns the rollout as last read. A supervisor found dead on the way
    is reconciled (resumed or set unverified)."""
    last_state = None
    last_id = after
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        for st in reg.rollout_steps(rollout_id, after=last_id):
            last_id = st.id
            if on_step is not None:
                on_step(st)
        r = reg.rollout(rollout_id)
        if r.state != last_state:
            last_state = r.state
            if on_state is not None:
                on_state(r)
        if r.state in ROLLOUT_ENDED:
            for st in reg.rollout_steps(rollout_id, after=last_id):  # the last lines
                last_id = st.id
                if on_step is not None:
                    on_step(st)
            return r
        if not supervised(r):
            reconcile(reg, settings)
        if deadline is not None and time.monotonic() >= deadline:
            return r
        if stop is not None:
            if stop.wait(interval):
                return r
        else:
            time.sleep(interval)


def abort(reg: Registry, rollout_id: int, reason: str, *, actor: str | None = None) -> Rollout:
    """Ask the rollout's supervisor to stop and roll back; when no supervisor drives it, roll
    back here. Returns the rollout (its supervisor may still be rolling back: follow it)."""
    actor = actor or current_actor()
    r = reg.request_abort(rollout_id, reason, actor=actor)
    if supervised(r) and r.pid is not None:
        return r
    if r.change_id is None:
        return reg.transition_rollout(r.id, "failed", f"aborted by {actor} before the alias moved: {reason}",
                                      actor=actor, expect=ROLLOUT_ACTIVE)
    return _compensate(reg, r, f"aborted by {actor}: {reason}", actor, state="aborted")


def confirm(reg: Registry, rollout_id: int, reason: str, *, actor: str | None = None) -> Rollout:
    return reg.confirm_rollout(rollout_id, reason, actor=actor)


def unverified(reg: Registry) -> list[Rollout]:
    """The rollouts needing an operator: the newest rollout of an environment when it is
    ``unverified`` or ``failed`` after its alias moved (a later rollout supersedes)."""
    return sorted((r for r in reg.latest_rollouts().values() if r.critical), key=lambda r: r.id)
