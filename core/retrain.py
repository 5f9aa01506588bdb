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
import hmac
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
from modeldeck.core.config import ConfigError, HookConfig, Settings, WebhookConfig, expand
from modeldeck.core.errors import ConflictError, ModeldeckError, RegistryError
from modeldeck.core.registry import Job, Registry, current_actor, format_time, stored_time, utcnow

ENDED = ("succeeded", "failed", "cancelled")
SIGNATURE_HEADER = "X-Modeldeck-Signature"
CANCEL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
STALE_QUEUED = 600.0  # a queued job with no live process after this long never started

OutputCallback = Callable[[str], None]
StatusCallback = Callable[[Job], None]


# ---------------------------------------------------------------------------------------------
# hook helpers shared with core.releases


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_argv(template: Sequence[str], fields: Mapping[str, Any]) -> list[str]:
    """Fill ``{name}`` placeholders in each argument. Each template element stays exactly one
    argument whatever the values hold (spaces, quotes, ``;``): no shell ever sees it. Unknown
    placeholders and other braces (JSON) are left as written."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in fields:
            return m.group(0)
        value = fields[key]
        return "" if value is None else str(value)

    return [_FIELD.sub(sub, str(arg)) for arg in template]


def render_url(template: str, fields: Mapping[str, Any]) -> str:
    """Like :func:`render_argv` for one URL, with each value percent-quoted."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in fields:
            return m.group(0)
        return quote("" if fields[key] is None else str(fields[key]), safe="")

    return _FIELD.sub(sub, template)


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-Modeldeck-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the HMAC over the raw body, compare in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(secret, body), header.strip())


def webhook_headers(hook: WebhookConfig, body: bytes, where: str) -> dict[str, str]:
    """Request headers for a webhook call: the configured ones (``${VAR}`` expanded only now)
    and the signature when a secret is set. The result must never be logged."""
    headers = {"Content-Type": "application/json", "User-Agent": "modeldeck"}
    for k, v in hook.headers.items():
        headers[k] = expand(v, f"{where}.headers.{k}")
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign_body(expand(hook.secret, f"{where}.secret"), body)
    return headers


def json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def hook_env(extra: Mapping[str, Any]) -> dict[str, str]:
    """A hook's environment: ours, with this interpreter's folder first on PATH (so
    ``python`` and ``modeldeck`` in a hook mean the ones running now) and ``extra``."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    parts = env.get("PATH", "").split(os.pathsep) if env.get("PATH") else []
    if bindir not in parts:
        env["PATH"] = os.pathsep.join([bindir, *parts])
    env.setdefault("PYTHONUNBUFFERED", "1")
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def config_file(settings: Settings) -> str:
    """The config file as an absolute path for hooks ("" without one, or when it is gone)."""
    if settings.path is not None and Path(settings.path).is_file():
        return str(Path(settings.path).resolve())
    return ""


def hook_cwd(settings: Settings) -> str:
    """Hooks run in the config file's folder (relative paths in the config mean that)."""
    if settings.path is not None:
        return str(Path(settings.path).resolve().parent)
    return os.getcwd()


def clean_line(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.rstrip("\r\n")


def kill_group(pid: int, grace: float = CANCEL_GRACE, *, is_alive: Callable[[], bool] | None = None) -> bool:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``grace`` seconds if
    anything of it is still there. True when a signal was delivered."""
    alive = is_alive or (lambda: _group_exists(pid))
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive():
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left (not reaped yet by their parent) count as gone.
    return any(not _is_zombie(p) for p in _group_members(pgid)) if Path("/proc").is_dir() else True


def _group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            out.append(int(d.name))
    return out


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat[stat.rfind(")") + 2:].split()[0] in ("Z", "X")


# ---------------------------------------------------------------------------------------------
# job liveness
#
# A job's ``pid`` is its *runner*: the process that supervises it and records its end (the
# detached supervisor, or the process whose thread runs it). A local command's own process
# group is its ``external_id`` (``pgid:N``), the handle cancel() signals.


def pid_alive(pid: int | None, *, not_after: str | None = None) -> bool:
    """Is ``pid`` a live process (not a zombie)? With ``not_after`` (a registry time), a
    process that started later than that is a recycled pid, not the one recorded."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path(f"/proc/{pid}").is_dir():
        return True  # no /proc (macOS): trust the signal
    if _is_zombie(pid):
        return False
    if not_after:
        started = _process_start(pid)
        limit = stored_time(not_after)
        if started is not None and limit is not None and started > limit.timestamp() + 2.0:
            return False
    return True


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


def _process_start(pid: int) -> float | None:
    """When a process started (epoch seconds), from /proc; None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rfind(")") + 2:].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _group_is_job(pgid: int, job_id: int) -> bool:
    """Does process group ``pgid`` still run job ``job_id`` (a member's environment carries
    its MODELDECK_JOB_ID)? Guards against signalling a recycled group id."""
    if not _group_exists(pgid):
        return False
    if not Path("/proc").is_dir():
        return True
    marker = f"MODELDECK_JOB_ID={job_id}".encode()
    for pid in _group_members(pgid):
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
            run._cancel_requested.set()
        job = registry.update_job(job_id, status="cancelled", actor=actor, message=f"cancelled by {actor}")
        pgid = job_pgid(job)
        if run is not None:
            run._kill(grace)
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
    ``cancel()`` stops it. ``job_id``, ``log_path`` and ``model`` are known at once."""

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

    # -- internals ------------------------------------------------------------------------------
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

    def _kill(self, grace: float) -> None:
        with self._proc_lock:
            p = self._proc
        if p is not None and p.poll() is None:
            kill_group(p.pid, grace, is_alive=lambda: p.poll() is None)


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
    reg = registry if registry is not None else Registry(settings.registry, create=False)
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
        run._thread = threading.Thread(target=_follow, args=(run,), name=f"retrain-follow-{job.id}",
                                       daemon=True)
        run._thread.start()
        return run
    with _ACTIVE_LOCK:
        _ACTIVE[job.id] = run
    run._thread = threading.Thread(target=_run_in_thread, args=(run, hook, actor),
                                   name=f"retrain-{job.id}", daemon=True)
    run._thread.start()
    return run


def job_log_path(job_id: int, registry: str | os.PathLike[str]) -> Path:
    """``state_dir()/jobs/<registry key>/<job>.log``: job numbers are per registry, so each
    registry file gets its own folder (its name plus a hash of its absolute path)."""
    reg = Path(registry).expanduser().resolve()
    key = f"{reg.stem}-{hashlib.sha256(str(reg).encode()).hexdigest()[:10]}"
    return paths.state_dir() / "jobs" / key / f"{job_id}.log"


def maybe_retrain_on_drift(settings: Settings, registry: Registry, model: str, reason: str, *,
                           actor: str | None = None, detach: bool = True) -> Job | None:
    """Start retraining ``model`` with trigger ``drift`` unless one started within the model's
    ``retrain_cooldown`` (checked inside the registry's write transaction, so two cron runs
    cannot both start one) or no pipeline is configured. Returns the new job or None."""
    mc = settings.model(model)
    if mc.retrain is None:
        return None
    since = format_time(datetime.now(timezone.utc) - timedelta(seconds=mc.retrain_cooldown))
    try:
        run = start_retrain(settings, model, trigger="drift", reason=reason, actor=actor,
                            registry=registry, detach=detach, not_since=since)
    except ConflictError:
        return None
    return registry.job(run.job_id)


# ---------------------------------------------------------------------------------------------
# running a job (in a thread of this process, or in the detached supervisor)


def _run_in_thread(run: RetrainRun, hook: HookConfig, actor: str | None) -> None:
    job: Job | None = None
    try:
        with Registry(run.settings.registry, create=False) as reg:
            job = _execute(run, reg, hook, actor)
    except BaseException as e:  # record, never raise out of a thread
        run.error = e
        with contextlib.suppress(Exception), Registry(run.settings.registry, create=False) as reg:
            job = reg.job(run.job_id)
            if job.status not in ENDED:
                job = reg.update_job(run.job_id, status="failed", message=f"modeldeck error: {e}")
    finally:
        run._finish(job)
        if job is not None:
            run._status(job)


def _execute(run: RetrainRun, reg: Registry, hook: HookConfig, actor: str | None) -> Job:
    """Run the job to its end; returns the final Job. Expects the job queued."""
    job = reg.job(run.job_id)
    if job.status != "queued":
        return job
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log_path, "a", encoding="utf-8", errors="replace") as log:
        def emit(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            run._output(line)

        emit(f"# modeldeck job {job.id}: retrain {job.model} (trigger {job.trigger}, by {job.actor}"
             f"{', ' + job.reason if job.reason else ''}) at {utcnow()}")
        if hook.command:
            final = _run_command(run, reg, hook, job, emit, actor)
        else:
            final = _run_webhook(run, reg, hook, job, emit, actor)
        emit(f"# job {final.status}" + (f": {final.message}" if final.message else "")
             + (f"; produced version {final.produced_version}" if final.produced_version else ""))
    return final


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


def stream_process(proc: subprocess.Popen[bytes], timeout: float, emit: Callable[[str], None], *,
                   grace: float = CANCEL_GRACE) -> tuple[int, str, bool]:
    """Read a hook's merged output line by line into ``emit`` until it exits; past ``timeout``
    its process group is stopped (SIGTERM, then SIGKILL after ``grace``). Returns (exit code,
    last non-empty line, timed out). Used by retraining commands and deploy hooks."""
    timed_out = threading.Event()

    def on_timeout() -> None:
        if proc.poll() is None:
            timed_out.set()
            emit(f"# timed out after {timeout:g} s; stopping it")
            kill_group(proc.pid, grace, is_alive=lambda: proc.poll() is None)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    last = ""
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = clean_line(raw)
            if line.strip():
                last = line.strip()
            emit(line)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    return rc, last, timed_out.is_set()


def _run_command(run: RetrainRun, reg: Registry, hook: HookConfig, job: Job,
                 emit: Callable[[str], None], actor: str | None) -> Job:
    settings = run.settings
    fields = _fields(settings, job, run.log_path)
    assert hook.command is not None
    argv = render_argv(hook.command, fields)
    env = hook_env({"MODELDECK_JOB_ID": job.id, "MODELDECK_REGISTRY": fields["registry"],
                    "MODELDECK_CONFIG": fields["config"] or None, "MODELDECK_MODEL": job.model,
                    "MODELDECK_TRIGGER": job.trigger})
    emit("$ " + shlex.join(argv))
    if run._cancel_requested.is_set():
        return reg.job(job.id)
    try:
        with run._proc_lock:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=env, cwd=hook_cwd(settings),
                                 start_new_session=True)
            run._proc = p
    except FileNotFoundError:
        return _end(reg, job.id, "failed", actor, message=f"command not found: {argv[0]}")
    except OSError as e:
        return _end(reg, job.id, "failed", actor, message=f"cannot run {argv[0]}: {e.strerror or e}")
    started = _start_running(reg, job.id, actor, pid=os.getpid(), external_id=f"pgid:{p.pid}")
    if started is None:  # cancelled between queueing and starting
        kill_group(p.pid, CANCEL_GRACE, is_alive=lambda: p.poll() is None)
    else:
        run._status(started)
    rc, last, timed_out = stream_process(p, hook.timeout, emit, grace=CANCEL_GRACE)
    current = reg.job(job.id)
    if current.status == "cancelled" or run._cancel_requested.is_set():
        return _end(reg, job.id, "cancelled", actor, exit_code=rc)
    if timed_out:
        return _end(reg, job.id, "failed", actor, exit_code=rc, message=f"timed out after {hook.timeout:g} s")
    if rc == 0:
        produced = current.produced_version
        msg = None if produced else "finished without registering a version"
        return _end(reg, job.id, "succeeded", actor, exit_code=0, message=msg)
    why = f"exit status {rc}" if rc > 0 else f"killed by signal {-rc}"
    return _end(reg, job.id, "failed", actor, exit_code=rc,
                message=f"{why}: {last[:200]}" if last else why)


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


def _run_webhook(run: RetrainRun, reg: Registry, hook: HookConfig, job: Job,
                 emit: Callable[[str], None], actor: str | None) -> Job:
    import httpx

    webhook = hook.webhook
    assert webhook is not None
    where = f"models.{job.model}.retrain.webhook"
    fields = _fields(run.settings, job, run.log_path)
    payload = retrain_payload(webhook, fields, job)
    body = json_body(payload)
    try:
        headers = webhook_headers(webhook, body, where)
    except ConfigError as e:
        return _end(reg, job.id, "failed", actor, message=str(e))
    started = _start_running(reg, job.id, actor, pid=os.getpid())
    if started is None:
        return reg.job(job.id)
    run._status(started)
    deadline = time.monotonic() + hook.timeout
    with httpx.Client(timeout=webhook.timeout, follow_redirects=False) as client:
        emit(f"POST {webhook.url}")
        try:
            r = client.post(webhook.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return _end(reg, job.id, "failed", actor, message=f"webhook {webhook.url}: {_http_reason(e)}")
        text = r.text[:300]
        if not r.is_success:
            emit(f"-> HTTP {r.status_code}: {text}")
            return _end(reg, job.id, "failed", actor,
                        message=f"webhook {webhook.url} answered HTTP {r.status_code}: {' '.join(text.split())[:150]}")
        try:
            answer = r.json()
        except ValueError:
            answer = None
        run_id = _run_id(answer)
        state = _state(answer)
        emit(f"-> HTTP {r.status_code}" + (f"; run {run_id}" if run_id else "") + (f"; state {state}" if state else ""))
        if run_id:
            reg.update_job(job.id, external_id=run_id, actor=actor)
        url = _status_url(webhook, run_id, fields)
        if url is None:
            final = _terminal(state)
            if final:
                return _end(reg, job.id, final, actor, message=f"remote run {run_id or ''} ended {state}".strip())
            return _end(reg, job.id, "succeeded", actor,
                        message="run accepted; no status_url configured, so not followed to its end")
        failures = 0
        last_state = state
        while True:
            if run._cancel_requested.wait(webhook.poll_interval):  # our runner is stopping
                return _end(reg, job.id, "failed", actor, message=f"modeldeck stopped following the remote "
                            f"run {run_id} (its runner was stopped); check it in the pipeline itself")
            if time.monotonic() > deadline:
                return _end(reg, job.id, "failed", actor,
                            message=f"remote run {run_id} did not end within {hook.timeout:g} s (last state "
                                    f"{last_state or 'unknown'})")
            try:
                s = client.get(url, headers={k: v for k, v in headers.items()
                                             if k not in (SIGNATURE_HEADER, "Content-Type")})
                if not s.is_success:
                    raise _StatusError(f"HTTP {s.status_code}")
                state = _state(s.json())
                failures = 0
            except (httpx.HTTPError, ValueError, _StatusError) as e:
                failures += 1
                emit(f"status {url}: {_http_reason(e) if isinstance(e, httpx.HTTPError) else e}")
                if failures >= 5:
                    return _end(reg, job.id, "failed", actor,
                                message=f"lost the remote run {run_id}: status URL failed 5 times ({e})")
                continue
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


class _StatusError(Exception):
    pass


def _terminal(state: str | None) -> str | None:
    if state in SUCCESS_STATES:
        return "succeeded"
    if state in FAILED_STATES:
        return "failed"
    if state in CANCELLED_STATES:
        return "cancelled"
    return None


def _http_reason(e: BaseException) -> str:
    import httpx

    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.ConnectError):
        return "cannot connect"
    return type(e).__name__ + (f": {e}" if str(e) else "")


# ---------------------------------------------------------------------------------------------
# the detached supervisor (python -m modeldeck.core.retrain JOB)


def _spawn_supervisor(settings: Settings, job: Job, log_path: Path) -> None:
    """Start ``python -m modeldeck.core.retrain JOB`` detached (its own session; it outlives us). The
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


def _follow(run: RetrainRun) -> None:
    """Follow a detached job: its log file's new lines to on_output, status changes to
    on_status, until it ends."""
    pos = 0
    buf = b""
    last_status = None
    job: Job | None = None
    try:
        with Registry(run.settings.registry, create=False) as reg:
            ended_seen = 0.0
            while True:
                try:
                    with open(run.log_path, "rb") as f:
                        f.seek(pos)
                        chunk = f.read()
                except FileNotFoundError:
                    chunk = b""
                if chunk:
                    pos += len(chunk)
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        run._output(clean_line(raw))
                job = reg.job(run.job_id)
                if job.status != last_status:
                    last_status = job.status
                    run._status(job)
                if job.status in ENDED:
                    # the supervisor writes its last line just after the end is recorded
                    if ended_seen and time.monotonic() - ended_seen > 0.5 and not chunk:
                        break
                    ended_seen = ended_seen or time.monotonic()
                elif job.pid is not None and not job_alive(job):
                    reconcile(reg)
                time.sleep(0.1)
            if buf:
                run._output(clean_line(buf))
    except BaseException as e:
        run.error = e
    finally:
        run._finish(job)


def run_job(settings: Settings, job_id: int) -> Job:
    """Run a queued job to its end in this process (the detached supervisor's body)."""
    with Registry(settings.registry, create=False) as reg:
        job = reg.job(job_id)
        hook = settings.model(job.model).retrain
        if hook is None:
            return _end(reg, job_id, "failed", None, message=f"{job.model} has no retraining pipeline configured")
        run = RetrainRun(settings, job, Path(job.log_path) if job.log_path else job_log_path(job_id, settings.registry),
                         on_output=None, on_status=None, detached=False)
        with _ACTIVE_LOCK:
            _ACTIVE[job_id] = run
        # A SIGTERM to the supervisor (cancel of a job not started yet, or a shutdown) stops
        # its pipeline too; the normal flow then records the end.
        def on_term(*_: object) -> None:
            run._cancel_requested.set()
            threading.Thread(target=run._kill, args=(CANCEL_GRACE,), daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
        try:
            return _execute(run, reg, hook, job.actor)
        finally:
            run._finish(None)


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
