"""Retraining runners and job tracking.

A retraining job lives in the registry (``jobs`` table): trigger, actor, reason, status
(queued -> running -> succeeded | failed | cancelled), start and end, exit code, log path, the
process that runs it, and the version it produced (the pipeline's ``modeldeck register`` links
itself through ``$MODELDECK_JOB_ID``).

Two runners, chosen by the model's ``retrain`` hook in the config:

- **command**: a local argv (templated with ``{model}``, ``{job_id}``, ``{registry}``,
  ``{config}``, ``{python}``, ``{trigger}``, ``{log}``; never through a shell), run in its own
  process group with ``MODELDECK_JOB_ID``, ``MODELDECK_REGISTRY``, ``MODELDECK_CONFIG`` in its
  environment and the config file's folder as working directory. Its output (stdout and stderr
  together) goes line by line to ``state_dir()/jobs/<job>.log`` and to a callback.
- **webhook**: a signed JSON POST that starts a run, then a status URL polled until the run
  ends. Airflow 2's ``POST /api/v1/dags/{dag_id}/dagRuns`` and
  ``GET .../dagRuns/{dag_run_id}`` work out of the box.

Threading: :func:`start_retrain` creates the job at once (in the caller's thread) and runs it
either on a daemon thread of this process (``detach=False``: output callbacks come from that
thread) or in a detached supervisor process (``detach=True``: the job survives the caller;
``on_output`` then follows the job's log file from a thread). Every thread opens its own
registry connection. :func:`cancel` works from any process; :func:`reconcile` marks jobs
whose process is gone as failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modeldeck.core import paths
from modeldeck.core.config import ConfigError, HookConfig, Settings, WebhookConfig
from modeldeck.core.errors import ConflictError, ModeldeckError, RegistryError
from modeldeck.core.hooks import (
    ANSWER_BYTES,
    CANCEL_GRACE,
    SIGNATURE_HEADER,
    Redactor,
    clean_line,
    config_file,
    exit_words,
    group_exists,
    group_members,
    hook_cwd,
    hook_env,
    http_reason,
    json_body,
    kill_group,
    pid_alive,
    post_webhook,
    render_argv,
    render_url,
    start_command,
    stream_process,
    timed_out_words,
    webhook_client,
    webhook_headers,
)
from modeldeck.core.registry import (
    Job,
    Registry,
    current_actor,
    format_time,
    open_registry,
    stored_time,
    utcnow,
)
from modeldeck.core.textfmt import duration

ENDED = ("succeeded", "failed", "cancelled")
STALE_QUEUED = 600.0  # a queued job with no live process after this long never started

OutputCallback = Callable[[str], None]
StatusCallback = Callable[[Job], None]


# ---------------------------------------------------------------------------------------------
# job liveness
#
# A job's ``pid`` is its *runner*: the process that supervises it and records its end (the
# detached supervisor, or the process whose thread runs it). A local command's own process
# group is its ``external_id`` (``pgid:N``), the handle cancel() signals.


def job_alive(job: Job) -> bool:
    """Is the runner of this queued or running job still there?"""
    if job.pid == os.getpid():
        with _ACTIVE_LOCK:
            return job.id in _ACTIVE
    return pid_alive(job.pid, not_after=job.started_at if job.status == "running" else None)


def job_pgid(job: Job) -> int | None:
    ext = job.external_id or ""
    if job.runner == "command" and ext.startswith("pgid:") and ext[5:].isdigit():
        return int(ext[5:])
    return None


def _group_is_job(pgid: int, job_id: int) -> bool:
    """Does process group ``pgid`` still run job ``job_id`` (a member's environment carries
    its MODELDECK_JOB_ID)? Guards against signalling a recycled group id."""
    if not group_exists(pgid):
        return False
    if not Path("/proc").is_dir():
        return True
    marker = f"MODELDECK_JOB_ID={job_id}".encode()
    for pid in group_members(pgid):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return True
        except OSError:
            continue
    return False


_ACTIVE: dict[int, RetrainRun] = {}  # jobs run by a thread of this process
_ACTIVE_LOCK = threading.Lock()


def reconcile(registry: Registry, *, stale_queued: float = STALE_QUEUED) -> list[Job]:
    """Mark jobs whose runner process is gone as failed (modeldeck or the machine restarted
    while they ran), so nothing stays "running" forever. Returns the jobs it changed. Call it
    on startup and before listing; it is cheap (one query, a signal 0 per running job)."""
    changed = []
    now = datetime.now(timezone.utc)
    for job in registry.jobs(status=("queued", "running"), limit=None):
        if job_alive(job):
            continue
        if job.status == "queued" and job.pid is None:
            created = stored_time(job.created_at)
            if created and (now - created).total_seconds() < stale_queued:
                continue
            message = "never started (the process that queued it is gone)"
        elif job.status == "queued":
            message = "never started (its runner process is gone)"
        elif job.runner == "webhook":
            ext = f" (run {job.external_id})" if job.external_id else ""
            message = f"modeldeck stopped following the remote run{ext}; check it in the pipeline itself"
        else:
            message = "its runner process ended while it ran (modeldeck restarted?); exit status unknown"
        try:
            changed.append(registry.update_job(job.id, status="failed", message=message))
        except ConflictError:
            continue  # it ended meanwhile
    return changed


def list_jobs(registry: Registry, model: str | None = None, *, status: Sequence[str] | None = None,
              limit: int | None = 200) -> list[Job]:
    """Jobs, newest first, after :func:`reconcile`."""
    if not registry.readonly:
        reconcile(registry)
    return registry.jobs(model, status=status, limit=limit)


# ---------------------------------------------------------------------------------------------
# cancel


def cancel(job_id: int, *, registry: Registry | None = None, settings: Settings | None = None,
           actor: str | None = None, grace: float = CANCEL_GRACE) -> Job:
    """Cancel a queued or running local job: mark it cancelled, then terminate its process
    group (SIGTERM, SIGKILL after ``grace`` seconds). Works from any process on this machine.
    A running webhook job runs elsewhere and is refused (cancel it in its pipeline)."""
    own = registry is None
    if own:
        if settings is None:
            raise RegistryError("cancel needs a registry or settings")
        registry = Registry(settings.registry, create=False)
    try:
        job = registry.job(job_id)
        if job.status in ENDED:
            raise ConflictError(f"job #{job_id} already ended ({job.status})")
        if job.runner == "webhook" and job.status == "running":
            ext = f" (run {job.external_id})" if job.external_id else ""
            raise RegistryError(f"job #{job_id} runs remotely through a webhook{ext}; cancel it in the "
                                f"pipeline itself (modeldeck records the end when the run reports it)")
        actor = actor or current_actor()
        with _ACTIVE_LOCK:
            run = _ACTIVE.get(job_id)
        if run is not None:
            run.request_stop()
        job = registry.update_job(job_id, status="cancelled", actor=actor, message=f"cancelled by {actor}")
        pgid = job_pgid(job)
        if run is not None:
            run.terminate(grace)
        elif pgid and _group_is_job(pgid, job_id):
            kill_group(pgid, grace)
        elif job.pid and job.pid != os.getpid() and pid_alive(job.pid):
            # a detached supervisor that has not started the pipeline yet: its SIGTERM
            # handler stops whatever it started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(job.pid, signal.SIGTERM)
        return job
    finally:
        if own:
            registry.close()


# ---------------------------------------------------------------------------------------------
# starting a job


@dataclass(frozen=True)
class RetrainEvent:
    """For callers that prefer one callback: a log line (``kind="output"``) or a status
    change (``kind="status"``, with the job)."""

    job_id: int
    kind: str
    text: str = ""
    job: Job | None = None


class RetrainRun:
    """A started job. ``wait()`` blocks until it ends and returns the final Job;
    ``cancel()`` stops it. ``job_id``, ``log_path`` and ``model`` are known at once.

    The run also carries the runner: :meth:`run_in_thread` (a daemon thread of this process)
    or :meth:`follow` (a detached supervisor's job, followed through its log file and the
    registry), and :meth:`run_to_end` (the pipeline itself, in this thread). Its state (the
    pipeline's process, the cancel request, the callbacks) is reached only through methods."""

    def __init__(self, settings: Settings, job: Job, log_path: Path, *, on_output: OutputCallback | None,
                 on_status: StatusCallback | None, detached: bool) -> None:
        self.settings = settings
        self.job_id = job.id
        self.model = job.model
        self.log_path = log_path
        self.detached = detached
        self.result: Job | None = None
        self.error: BaseException | None = None
        self._on_output = on_output
        self._on_status = on_status
        self._done = threading.Event()
        self._cancel_requested = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- public -------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Job | None:
        """The final Job, or None when ``timeout`` passed first."""
        if not self._done.wait(timeout):
            return None
        return self.result

    def job(self) -> Job:
        """The job as the registry has it now (opens a short-lived connection)."""
        with Registry(self.settings.registry, create=False) as reg:
            return reg.job(self.job_id)

    def cancel(self, grace: float = CANCEL_GRACE) -> Job:
        with Registry(self.settings.registry, create=False) as reg:
            return cancel(self.job_id, registry=reg, grace=grace)

    # -- stopping (cancel(), the supervisor's SIGTERM) ----------------------------------------------
    def request_stop(self) -> None:
        """The pipeline is to stop: it is not started any more, a webhook run is no longer
        followed, and the end is recorded as cancelled."""
        self._cancel_requested.set()

    def terminate(self, grace: float = CANCEL_GRACE) -> None:
        """Stop the pipeline's process group (SIGTERM, then SIGKILL after ``grace``)."""
        with self._proc_lock:
            p = self._proc
        if p is not None and p.poll() is None:
            kill_group(p.pid, grace, is_alive=lambda: p.poll() is None)

    # -- the runners ------------------------------------------------------------------------------
    def start_in_thread(self, hook: HookConfig, actor: str | None) -> None:
        """Run the pipeline on a daemon thread of this process."""
        with _ACTIVE_LOCK:
            _ACTIVE[self.job_id] = self
        self._thread = threading.Thread(target=self._run_in_thread, args=(hook, actor),
                                        name=f"retrain-{self.job_id}", daemon=True)
        self._thread.start()

    def start_following(self) -> None:
        """Follow a job that a detached supervisor runs (its log's lines, its status changes)."""
        self._thread = threading.Thread(target=self._follow, name=f"retrain-follow-{self.job_id}", daemon=True)
        self._thread.start()

    def run_to_end(self, reg: Registry, hook: HookConfig, actor: str | None) -> Job:
        """Run the job to its end in this thread; returns the final Job. Expects it queued."""
        with _ACTIVE_LOCK:
            _ACTIVE[self.job_id] = self
        try:
            return self._execute(reg, hook, actor)
        finally:
            self._finish(None)

    def _run_in_thread(self, hook: HookConfig, actor: str | None) -> None:
        job: Job | None = None
        try:
            with Registry(self.settings.registry, create=False) as reg:
                job = self._execute(reg, hook, actor)
        except BaseException as e:  # record, never raise out of a thread
            self.error = e
            with contextlib.suppress(Exception), Registry(self.settings.registry, create=False) as reg:
                job = reg.job(self.job_id)
                if job.status not in ENDED:
                    job = reg.update_job(self.job_id, status="failed", message=f"modeldeck error: {e}")
        finally:
            self._finish(job)
            if job is not None:
                self._status(job)

    def _execute(self, reg: Registry, hook: HookConfig, actor: str | None) -> Job:
        job = reg.job(self.job_id)
        if job.status != "queued":
            return job
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as log:
            def emit(line: str) -> None:
                log.write(line + "\n")
                log.flush()
                self._output(line)

            emit(f"# modeldeck job {job.id}: retrain {job.model} (trigger {job.trigger}, by {job.actor}"
                 f"{', ' + job.reason if job.reason else ''}) at {utcnow()}")
            if hook.command:
                final = self._run_command(reg, hook, job, emit, actor)
            else:
                final = self._run_webhook(reg, hook, job, emit, actor)
            emit(f"# job {final.status}" + (f": {final.message}" if final.message else "")
                 + (f"; produced version {final.produced_version}" if final.produced_version else ""))
        return final

    def _run_command(self, reg: Registry, hook: HookConfig, job: Job, emit: Callable[[str], None],
                     actor: str | None) -> Job:
        fields = _fields(self.settings, job, self.log_path)
        assert hook.command is not None
        argv = render_argv(hook.command, fields)
        env = hook_env({"MODELDECK_JOB_ID": job.id, "MODELDECK_REGISTRY": fields["registry"],
                        "MODELDECK_CONFIG": fields["config"] or None, "MODELDECK_MODEL": job.model,
                        "MODELDECK_TRIGGER": job.trigger})
        emit("$ " + shlex.join(argv))
        if self._cancel_requested.is_set():
            return reg.job(job.id)
        with self._proc_lock:
            p = start_command(argv, env, hook_cwd(self.settings))
            if isinstance(p, str):
                return _end(reg, job.id, "failed", actor, message=p)
            self._proc = p
        started = _start_running(reg, job.id, actor, pid=os.getpid(), external_id=f"pgid:{p.pid}")
        if started is None:  # cancelled between queueing and starting
            kill_group(p.pid, CANCEL_GRACE, is_alive=lambda: p.poll() is None)
        else:
            self._status(started)
        rc, last, timed_out = stream_process(p, hook.timeout, emit, grace=CANCEL_GRACE)
        current = reg.job(job.id)
        if current.status == "cancelled" or self._cancel_requested.is_set():
            return _end(reg, job.id, "cancelled", actor, exit_code=rc)
        if timed_out:
            return _end(reg, job.id, "failed", actor, exit_code=rc, message=timed_out_words(hook.timeout))
        if rc == 0:
            produced = current.produced_version
            msg = None if produced else "finished without registering a version"
            return _end(reg, job.id, "succeeded", actor, exit_code=0, message=msg)
        why = exit_words(rc)
        return _end(reg, job.id, "failed", actor, exit_code=rc, message=f"{why}: {last[:200]}" if last else why)

    def _run_webhook(self, reg: Registry, hook: HookConfig, job: Job, emit: Callable[[str], None],
                     actor: str | None) -> Job:
        import httpx

        webhook = hook.webhook
        assert webhook is not None
        where = f"models.{job.model}.retrain.webhook"
        fields = _fields(self.settings, job, self.log_path)
        body = json_body(retrain_payload(webhook, fields, job))
        try:
            headers = webhook_headers(webhook, body, where)
        except ConfigError as e:
            return _end(reg, job.id, "failed", actor, message=str(e))
        redact = Redactor.for_webhook(webhook, headers, where)
        started = _start_running(reg, job.id, actor, pid=os.getpid())
        if started is None:
            return reg.job(job.id)
        self._status(started)
        deadline = time.monotonic() + hook.timeout
        with webhook_client(webhook) as client:
            emit(f"POST {webhook.url}")
            r = post_webhook(client, webhook.url, body, headers, redact=redact)
            if isinstance(r, str):
                return _end(reg, job.id, "failed", actor, message=r)
            if not r.ok:
                emit(f"-> HTTP {r.status}: {r.text}")
                return _end(reg, job.id, "failed", actor,
                            message=f"webhook {webhook.url} answered HTTP {r.status}: {r.text[:150]}")
            run_id = _run_id(r.json)
            state = _state(r.json)
            emit(f"-> HTTP {r.status}" + (f"; run {run_id}" if run_id else "") + (f"; state {state}" if state else ""))
            if run_id:
                reg.update_job(job.id, external_id=run_id, actor=actor)
            url = _status_url(webhook, run_id, fields)
            if url is None:
                final = _terminal(state)
                if final:
                    return _end(reg, job.id, final, actor, message=f"remote run {run_id or ''} ended {state}".strip())
                return _end(reg, job.id, "succeeded", actor,
                            message="run accepted; no status_url configured, so not followed to its end")
            status_headers = {k: v for k, v in headers.items() if k not in (SIGNATURE_HEADER, "Content-Type")}
            failures = 0
            last_state = state
            while True:
                if self._cancel_requested.wait(webhook.poll_interval):  # our runner is stopping
                    return _end(reg, job.id, "failed", actor, message=f"modeldeck stopped following the remote "
                                f"run {run_id} (its runner was stopped); check it in the pipeline itself")
                if time.monotonic() > deadline:
                    return _end(reg, job.id, "failed", actor,
                                message=f"remote run {run_id} did not end within {duration(hook.timeout)} "
                                        f"(last state {last_state or 'unknown'})")
                problem = None
                try:
                    s = client.get(url, headers=status_headers)
                    if s.is_success:
                        if len(s.content) > ANSWER_BYTES:
                            raise ValueError("too large")
                        state = _state(redact.data(s.json()))
                    else:
                        problem = f"HTTP {s.status_code}"
                except (ValueError, RecursionError):
                    problem = "the answer is not JSON"
                except (httpx.HTTPError, OSError) as e:
                    problem = redact(http_reason(e))
                if problem is not None:
                    failures += 1
                    emit(f"status {url}: {problem}")
                    if failures >= 5:
                        return _end(reg, job.id, "failed", actor,
                                    message=f"lost the remote run {run_id}: status URL failed 5 times ({problem})")
                    continue
                failures = 0
                if state != last_state:
                    emit(f"state {state}")
                    last_state = state
                final = _terminal(state)
                if final:
                    produced = reg.job(job.id).produced_version
                    msg = f"remote run {run_id} {state}"
                    if final == "succeeded" and not produced:
                        msg += "; no version registered for this job"
                    return _end(reg, job.id, final, actor, message=msg)

    def _follow(self) -> None:
        """Follow a detached job: its log file's new lines to on_output, status changes to
        on_status, until it ends."""
        pos = 0
        buf = b""
        last_status = None
        job: Job | None = None
        try:
            with Registry(self.settings.registry, create=False) as reg:
                ended_seen = 0.0
                while True:
                    try:
                        with open(self.log_path, "rb") as f:
                            f.seek(pos)
                            chunk = f.read()
                    except FileNotFoundError:
                        chunk = b""
                    if chunk:
                        pos += len(chunk)
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for raw in lines:
                            self._output(clean_line(raw))
                    job = reg.job(self.job_id)
                    if job.status != last_status:
                        last_status = job.status
                        self._status(job)
                    if job.status in ENDED:
                        # the supervisor writes its last line just after the end is recorded
                        if ended_seen and time.monotonic() - ended_seen > 0.5 and not chunk:
                            break
                        ended_seen = ended_seen or time.monotonic()
                    elif job.pid is not None and not job_alive(job):
                        reconcile(reg)
                    time.sleep(0.1)
                if buf:
                    self._output(clean_line(buf))
        except BaseException as e:
            self.error = e
        finally:
            self._finish(job)

    # -- callbacks ----------------------------------------------------------------------------------
    def _output(self, line: str) -> None:
        if self._on_output is not None:
            try:
                self._on_output(line)
            except Exception:  # a broken callback must not break the job
                self._on_output = None

    def _status(self, job: Job) -> None:
        if self._on_status is not None:
            with contextlib.suppress(Exception):
                self._on_status(job)

    def _finish(self, job: Job | None) -> None:
        self.result = job
        with _ACTIVE_LOCK:
            _ACTIVE.pop(self.job_id, None)
        self._done.set()


def start_retrain(settings: Settings, model: str, *, trigger: str = "manual", reason: str = "",
                  actor: str | None = None, registry: Registry | None = None,
                  on_output: OutputCallback | None = None, on_status: StatusCallback | None = None,
                  detach: bool = False, not_since: str | None = None) -> RetrainRun:
    """Create a job for ``model`` and start its configured retraining pipeline.

    Returns at once with a :class:`RetrainRun` (its ``job_id`` and ``log_path`` are set).
    ``detach=False`` runs the pipeline on a daemon thread of this process (the TUI; the CLI's
    ``--wait``); ``detach=True`` hands it to a detached supervisor process that outlives this
    one (the CLI without ``--wait``; ``--report --retrain-on-drift``). ``on_output(line)`` and
    ``on_status(job)`` are called from a background thread. ``not_since``: refuse with
    ConflictError when a job with this trigger was created since then (cool-down)."""
    hook = settings.model(model).retrain
    if hook is None:
        where = f" in {settings.path}" if settings.path else " (no config file)"
        raise ConfigError(f"{model} has no retraining pipeline configured{where}: add "
                          f"[models.{model}] retrain = {{ command = [...] }} or a webhook")
    runner = "command" if hook.command else "webhook"
    own = registry is None
    # through open_registry: with [mlflow] a model the ledger has not seen yet is MLflow's to vouch for
    reg = registry if registry is not None else open_registry(settings, create=False)
    try:
        job = reg.create_job(model, trigger=trigger, runner=runner, reason=reason, actor=actor,
                             not_since=not_since)
        log_path = job_log_path(job.id, settings.registry)
        job = reg.update_job(job.id, log_path=str(log_path), actor=actor)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")  # a recreated registry reuses job numbers: start afresh
    finally:
        if own:
            reg.close()
    run = RetrainRun(settings, job, log_path, on_output=on_output, on_status=on_status, detached=detach)
    if detach:
        _spawn_supervisor(settings, job, log_path)
        run.start_following()
    else:
        run.start_in_thread(hook, actor)
    return run


def job_log_path(job_id: int, registry: str | os.PathLike[str]) -> Path:
    """``state_dir()/jobs/<registry key>/<job>.log``: job numbers are per registry, so each
    registry file gets its own folder (its name plus a hash of its absolute path)."""
    reg = Path(registry).expanduser().resolve()
    stem = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in reg.stem)[:40]
    key = f"{stem}-{hashlib.sha256(str(reg).encode()).hexdigest()[:10]}"
    return paths.state_dir() / "jobs" / key / f"{job_id}.log"


def maybe_retrain_on_drift(settings: Settings, registry: Registry, model: str, reason: str, *,
                           actor: str | None = None, detach: bool = True, trigger: str = "drift") -> Job | None:
    """Start retraining ``model`` with ``trigger`` (``drift`` or ``quality``) unless an
    automatic one (either trigger) started within the model's ``retrain_cooldown`` (checked
    inside the registry's write transaction, so two cron runs cannot both start one) or no
    pipeline is configured. Returns the new job or None."""
    mc = settings.model(model)
    if mc.retrain is None:
        return None
    since = format_time(datetime.now(timezone.utc) - timedelta(seconds=mc.retrain_cooldown))
    try:
        run = start_retrain(settings, model, trigger=trigger, reason=reason, actor=actor,
                            registry=registry, detach=detach, not_since=since)
    except ConflictError:
        return None
    return registry.job(run.job_id)


# ---------------------------------------------------------------------------------------------
# running a job (in a thread of this process, or in the detached supervisor)


def _fields(settings: Settings, job: Job, log_path: Path) -> dict[str, Any]:
    return {"model": job.model, "job_id": job.id, "registry": str(Path(settings.registry).resolve()),
            "config": config_file(settings),
            "python": sys.executable, "trigger": job.trigger, "log": str(log_path)}


def _start_running(reg: Registry, job_id: int, actor: str | None, **changes: Any) -> Job | None:
    """queued -> running; None when it was cancelled meanwhile."""
    try:
        return reg.update_job(job_id, status="running", actor=actor, **changes)
    except ConflictError:
        return None


def _end(reg: Registry, job_id: int, status: str, actor: str | None, **changes: Any) -> Job:
    """Record the end unless someone (cancel) already did; then keep their status and add the
    facts we know (exit code)."""
    try:
        return reg.update_job(job_id, status=status, actor=actor, **changes)
    except ConflictError:
        facts = {k: v for k, v in changes.items() if k == "exit_code" and v is not None}
        if facts:
            return reg.update_job(job_id, actor=actor, **facts)
        return reg.job(job_id)


# -- webhook runner ---------------------------------------------------------------------------

SUCCESS_STATES = {"success", "succeeded", "successful", "completed", "complete", "done", "finished", "ok"}
FAILED_STATES = {"failed", "failure", "error", "errored", "upstream_failed", "timeout", "timed_out"}
CANCELLED_STATES = {"cancelled", "canceled", "killed", "aborted", "stopped"}


def is_airflow(url: str) -> bool:
    return bool(re.search(r"/dagRuns/?$", url))


def retrain_payload(webhook: WebhookConfig, fields: Mapping[str, Any], job: Job) -> dict[str, Any]:
    """The JSON that starts a run. For an Airflow ``.../dagRuns`` URL, Airflow's own shape
    (``dag_run_id`` and ``conf``; Airflow refuses unknown fields); otherwise flat fields."""
    info = {"event": "retrain", "model": job.model, "job_id": job.id, "trigger": job.trigger,
            "reason": job.reason, "actor": job.actor, "registry": fields["registry"],
            "sent_at": utcnow()}
    if is_airflow(webhook.url):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        return {"dag_run_id": f"modeldeck_{job.model}_job{job.id}_{stamp}", "conf": info}
    return info


def _run_id(answer: Any) -> str | None:
    if isinstance(answer, Mapping):
        for key in ("dag_run_id", "run_id", "id", "job_id", "execution_id", "name"):
            v = answer.get(key)
            if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
                return str(v)
    return None


def _state(answer: Any) -> str | None:
    if isinstance(answer, Mapping):
        for key in ("state", "status", "result"):
            v = answer.get(key)
            if isinstance(v, str) and v:
                return v.lower()
    return None


def _status_url(webhook: WebhookConfig, run_id: str | None, fields: Mapping[str, Any]) -> str | None:
    if webhook.status_url:
        return render_url(webhook.status_url, {**fields, "run_id": run_id or ""})
    if is_airflow(webhook.url) and run_id:
        return webhook.url.rstrip("/") + "/" + quote(run_id, safe="")
    return None


def _terminal(state: str | None) -> str | None:
    if state in SUCCESS_STATES:
        return "succeeded"
    if state in FAILED_STATES:
        return "failed"
    if state in CANCELLED_STATES:
        return "cancelled"
    return None


# ---------------------------------------------------------------------------------------------
# the detached supervisor (modeldeck run-job JOB)


def _spawn_supervisor(settings: Settings, job: Job, log_path: Path) -> None:
    """Start ``python -P -m modeldeck run-job JOB`` detached (its own session; it outlives us). The
    model's retrain hook goes to it on stdin as JSON, as configured (``${VAR}`` references
    unexpanded), so it needs no config file and nothing secret shows in ``ps``."""
    registry = str(Path(settings.registry).resolve())
    argv = [*paths.python_argv(), "-m", "modeldeck", "run-job", str(job.id), "--registry", registry]
    hook = settings.model(job.model).retrain
    assert hook is not None
    spec = {"job": job.id, "model": job.model, "registry": registry,
            "config": str(Path(settings.path).resolve()) if settings.path is not None else None,
            "hook": _hook_to_dict(hook)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = hook_env({"MODELDECK_JOB_ID": job.id})
    with open(log_path, "ab") as err:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                             env=env, cwd=hook_cwd(settings), start_new_session=True, close_fds=True)
    assert p.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        p.stdin.write(json.dumps(spec).encode())
    with contextlib.suppress(BrokenPipeError):
        p.stdin.close()
    with Registry(settings.registry, create=False) as reg, contextlib.suppress(ConflictError):
        reg.update_job(job.id, pid=p.pid)
    threading.Thread(target=p.wait, daemon=True).start()  # reap it if we outlive it


def _hook_to_dict(hook: HookConfig) -> dict[str, Any]:
    w = hook.webhook
    return {"command": list(hook.command) if hook.command else None, "timeout": hook.timeout,
            "webhook": None if w is None else {
                "url": w.url, "secret": w.secret, "headers": dict(w.headers), "status_url": w.status_url,
                "poll_interval": w.poll_interval, "timeout": w.timeout}}


def _hook_from_dict(d: Mapping[str, Any]) -> HookConfig:
    w = d.get("webhook")
    return HookConfig(command=tuple(d["command"]) if d.get("command") else None, timeout=float(d["timeout"]),
                      webhook=None if not w else WebhookConfig(
                          url=w["url"], secret=w.get("secret"), headers=dict(w.get("headers") or {}),
                          status_url=w.get("status_url"), poll_interval=float(w["poll_interval"]),
                          timeout=float(w["timeout"])))


def run_job(settings: Settings, job_id: int) -> Job:
    """Run a queued job to its end in this process (the detached supervisor's body)."""
    with Registry(settings.registry, create=False) as reg:
        job = reg.job(job_id)
        hook = settings.model(job.model).retrain
        if hook is None:
            return _end(reg, job_id, "failed", None, message=f"{job.model} has no retraining pipeline configured")
        run = RetrainRun(settings, job, Path(job.log_path) if job.log_path else job_log_path(job_id, settings.registry),
                         on_output=None, on_status=None, detached=False)

        # A SIGTERM to the supervisor (cancel of a job not started yet, or a shutdown) stops
        # its pipeline too; the normal flow then records the end.
        def on_term(*_: object) -> None:
            run.request_stop()
            threading.Thread(target=run.terminate, args=(CANCEL_GRACE,), daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
        return run.run_to_end(reg, hook, job.actor)


def run_job_spec(job_id: int, registry: str, spec_text: str) -> Job:
    """The detached supervisor's body: ``modeldeck run-job JOB --registry FILE`` (a hidden
    command) with the job's spec (model, config path, retrain hook) as JSON on stdin, as
    ``_spawn_supervisor`` writes it. Runs the job to its end and returns it. On a
    ModeldeckError the job is marked failed and the error raised (the command line prints it
    and exits 2)."""
    from modeldeck.core.config import ModelConfig

    try:
        try:
            spec = json.loads(spec_text)
            hook = _hook_from_dict(spec["hook"])
        except (ValueError, KeyError, TypeError) as e:
            raise RegistryError(f"job {job_id}: unreadable job spec on stdin ({e})") from None
        settings = Settings(path=Path(spec["config"]) if spec.get("config") else None, registry=Path(registry),
                            models={spec["model"]: ModelConfig(name=spec["model"], retrain=hook)})
        return run_job(settings, job_id)
    except ModeldeckError as e:
        with contextlib.suppress(Exception), Registry(registry, create=False) as reg:
            reg.update_job(job_id, status="failed", message=str(e))
        raise
