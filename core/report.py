"""The headless report (``modeldeck --report``): one collection with the same ``core`` code the
TUI uses, rendered as text, Markdown, JSON or Prometheus text, and a monitoring-plugin exit
code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: the report could not run).

What one run does, in this order:

1. opens the registry (unreadable or missing: UNKNOWN, before any waiting) and reads the
   models, every environment's version and the versions' reference data;
2. polls every configured endpoint with a :class:`core.poller.Poller` twice, ``sample``
   seconds apart (rates need two scrapes), each poll bounded by ``poll.timeout`` (endpoints
   read through Prometheus, ``[[discover]]`` ones included, once: its rates cover its window;
   each query bounded by ``prometheus.timeout``, a failure a WARNING finding naming it); after the
   first poll it starts, in daemon worker threads, the drift comparison of each endpoint's
   capture window against the reference data of the version it serves (``core.capture`` and
   ``core.drift``, as the poller does), and waits for them only until the run's deadline
   (``sample + 2 x timeout + 2 s``), so neither a hanging endpoint nor a slow reference ever
   stalls the run;
3. stores the snapshots in the registry (source ``report``, so the TUI shows what cron saw);
4. reads, for every model in the registry, the candidates pending approval and the retraining
   jobs running or failed in the last day, and verifies the audit chain;
5. with ``retrain_on_drift``, starts retraining (trigger ``drift``, detached, at most once per
   model per ``retrain_cooldown``) for models whose production endpoint shows dataset drift;
6. judges everything into findings (a :class:`Report`).

The command line (``tui/cli.py``) renders it (:func:`render`) and writes standard output or
``--output`` atomically (:func:`write_atomic`); when the report cannot run at all it prints one
line and, for a Prometheus textfile, writes ``render_prometheus(None)`` (status 3, UNKNOWN) so a
collector never keeps serving an old OK.

Nothing here imports Textual; httpx is imported only when endpoints are configured and pandas
only when one has a capture, so a cron line starts fast.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeck.core import judge
from modeldeck.core.config import EndpointConfig, Settings
from modeldeck.core.errors import ModeldeckError, RegistryError
from modeldeck.core.snapshot import DOWN, EndpointSnapshot
from modeldeck.core.textfmt import duration, finite, num, one_line, pct, short_time, table, utc_iso

if TYPE_CHECKING:  # asyncio, queue, tempfile and concurrent.futures load only when used (start-up)
    import asyncio
    import queue
    from concurrent.futures import Future

SCHEMA = "modeldeck.report/v1"
FORMATS = ("text", "markdown", "json", "prometheus")

OK, WARNING, CRITICAL, UNKNOWN = judge.OK, judge.WARNING, judge.CRITICAL, judge.UNKNOWN
SEVERITIES = (OK, WARNING, CRITICAL, UNKNOWN)
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}

DRIFT_SLACK = 2.0  # seconds past sample + 2 x timeout that drift comparisons may still finish in
DRIFT_WORKERS = 2
JOB_WINDOW = timedelta(days=1)  # failed retraining jobs this recent are listed (and a finding)
PROGRAM = "modeldeck"


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Finding:
    severity: str  # OK | WARNING | CRITICAL | UNKNOWN
    subject: str  # an endpoint, a model, or "registry"
    message: str  # one sentence, starting with the subject

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "subject": self.subject, "message": self.message}


@dataclass(frozen=True)
class EndpointReport:
    config: EndpointConfig
    snapshot: EndpointSnapshot  # the second poll's
    drift: dict[str, Any] | None = None  # core.drift.result_to_json(...), or None
    drift_error: str | None = None  # why there is no drift result (None: no capture configured)


@dataclass(frozen=True)
class JobInfo:
    id: int
    trigger: str
    status: str
    created_at: str
    ended_at: str | None
    exit_code: int | None
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelReport:
    name: str
    latest_version: int | None
    environments: Mapping[str, int]
    pending_approval: tuple[int, ...] = ()
    jobs: tuple[JobInfo, ...] = ()  # running or queued, and failed in the last day; newest first
    retrain: Mapping[str, Any] | None = None  # what --retrain-on-drift did for this model

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "latest_version": self.latest_version,
                "environments": dict(self.environments), "pending_approval": list(self.pending_approval),
                "jobs": [j.as_dict() for j in self.jobs],
                "retrain": dict(self.retrain) if self.retrain is not None else None}


@dataclass
class Report:
    generated_at: float  # epoch seconds
    sample: float
    endpoints: list[EndpointReport] = field(default_factory=list)
    models: list[ModelReport] = field(default_factory=list)
    audit_ok: bool | None = None
    audit_text: str = ""
    findings: list[Finding] = field(default_factory=list)
    duration: float = 0.0
    stored: int = 0

    @property
    def status(self) -> str:
        return worst(f.severity for f in self.findings)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``modeldeck.report/v1`` document (see the README's "Headless report")."""
        return {
            "schema": SCHEMA,
            "generated_at": utc_iso(self.generated_at),
            "status": self.status,
            "exit_code": self.exit_code,
            "endpoints": [_endpoint_json(e) for e in self.endpoints],
            "models": [m.as_dict() for m in self.models],
            "findings": [f.as_dict() for f in self.findings],
        }


def worst(severities: Iterable[str]) -> str:
    """The worst severity by exit code (OK without any)."""
    return judge.worst(severities, EXIT_CODES)


def _endpoint_json(e: EndpointReport) -> dict[str, Any]:
    s = e.snapshot
    return {
        "name": e.config.name, "model": e.config.model, "environment": e.config.environment,
        "status": s.status, "reason": s.reason, "served_version": s.served_version,
        "registry_version": s.registry_version, "request_rate": finite(s.request_rate),
        "error_ratio": finite(s.error_ratio), "latency_p50_ms": finite(s.latency_p50_ms),
        "latency_p95_ms": finite(s.latency_p95_ms), "latency_p99_ms": finite(s.latency_p99_ms),
        "drift": e.drift,
        "quality": _quality_json(s),
    }


def _quality_json(s: EndpointSnapshot) -> dict[str, Any] | None:
    if s.quality is None:
        return None
    if s.quality.result:
        return dict(s.quality.result)
    return {"status": "error", "error": s.quality.error, "verdicts": [], "level": WARNING}


# ---------------------------------------------------------------------------------------------
# collection


RETRAIN_TRIGGERS = ("drift", "quality")


def retrain_triggers(text: str | None, *, drift_flag: bool = False) -> tuple[str, ...]:
    """``--retrain-on drift,quality`` (and the older ``--retrain-on-drift``) -> the triggers."""
    out: list[str] = ["drift"] if drift_flag else []
    for part in (text or "").split(","):
        p = part.strip().lower()
        if not p:
            continue
        if p not in RETRAIN_TRIGGERS:
            raise ModeldeckError(f"--retrain-on: {one_line(part, 40)!r} is not a trigger (drift, quality)")
        if p not in out:
            out.append(p)
    return tuple(out)


def collect(settings: Settings, *, sample: float | None = None, retrain_on_drift: bool = False,
            retrain_on: Sequence[str] = (), clock: Callable[[], float] = time.time) -> Report:
    """One collection (see the module docstring). Raises ModeldeckError when the report
    cannot run at all (registry missing or unreadable, a negative sample).

    The process keeps exactly one registry connection, opened before anything else touches
    the file, and writes (snapshots, job reconciling) before retraining starts (which opens
    connections of its own): opening a second connection in a process that holds one makes
    core.registry read the file's header with a plain open()/close(), and closing any file
    descriptor of a file drops every POSIX lock the process holds on it. SQLite then believes
    it holds a SHARED lock it does not, another process closing its last connection deletes
    the WAL, and a commit that follows goes to the deleted file (seen as lost snapshot rows
    with two reports running at once). So the poller gets no registry of its own here."""
    from modeldeck.core.mlflow import MlflowError
    from modeldeck.core.registry import open_registry

    sample = settings.report_sample if sample is None else float(sample)
    if not sample >= 0 or math.isinf(sample):
        raise ModeldeckError(f"--sample must be a number of seconds >= 0, not {sample}")
    started = time.monotonic()
    generated_at = clock()
    path = Path(settings.registry)
    readonly = path.exists() and not os.access(path, os.W_OK)
    findings: list[Finding] = []
    with open_registry(settings, create=False, readonly=readonly) as reg:
        def registry_view() -> tuple[dict[str, Any], dict[tuple[str, str], int], dict[tuple[str, str], Any]]:
            known = {m.name: m for m in reg.models()}
            refs = {(m, str(v.version)): v.reference_path
                    for m in {e.model for e in settings.endpoints if e.capture and e.model in known}
                    for v in reg.versions(m)}
            return known, reg.all_aliases(), refs

        mlflow_problem: BaseException | None = None
        try:
            known_models, aliases, references = registry_view()
        except MlflowError as e:  # MLflow down, refusing, slow: the ledger's last known view, said so
            mlflow_problem, reg.offline = e, True
            known_models, aliases, references = registry_view()
        try:
            judged = _quality_bases(settings, reg, known_models)
        except MlflowError as e:
            mlflow_problem, reg.offline = e, True
            judged = _quality_bases(settings, reg, known_models)
        endpoints: list[EndpointReport] = []
        discover_errors: dict[str, str] = {}
        if settings.endpoints or settings.discover:
            import asyncio

            endpoints = asyncio.run(_collect_endpoints(settings, sample, aliases, references, known_models, judged,
                                                       discover_errors))
        for block, why in discover_errors.items():  # its endpoints are not known: not OK either
            findings.append(Finding(WARNING, "prometheus", f"discover {one_line(block, 40)}: {one_line(why, 200)}"))
        stored = 0
        if endpoints:
            try:
                stored = _store(settings, reg, endpoints)
            except (RegistryError, OSError) as e:
                findings.append(Finding(WARNING, "registry",
                                        f"registry: this run's snapshots were not stored: {one_line(e, 160)}"))
        try:
            models = _collect_models(reg, known_models)
        except MlflowError as e:
            mlflow_problem, reg.offline = e, True
            models = _collect_models(reg, known_models)
        if mlflow_problem is not None:
            findings.append(Finding(WARNING, "registry", f"registry: {one_line(mlflow_problem, 300)}; models, versions "
                                                         f"and aliases are the ledger's last known"))
        findings += rollout_findings(settings, reg)
        verify, audit_note = _verify_and_checkpoint(reg, findings)
        triggers = tuple(dict.fromkeys([*(["drift"] if retrain_on_drift else []), *retrain_on]))
        if triggers:
            retrains = _retrain_on(settings, reg, endpoints, triggers)
            models = [replace(m, retrain=retrains.get(m.name)) for m in models]
    findings += endpoint_findings(endpoints, known_models)
    findings += model_findings(models)
    if not verify.ok:
        findings.append(Finding(CRITICAL, "registry", f"registry: {verify.describe()}"))
    return Report(generated_at=generated_at, sample=sample, endpoints=endpoints, models=models,
                  audit_ok=verify.ok, audit_text=verify.describe() + audit_note, findings=sort_findings(findings),
                  duration=time.monotonic() - started, stored=stored)


def _quality_bases(settings: Settings, reg: Any, known_models: Mapping[str, Any]) -> dict[str, Any]:
    """For each model with an endpoint that has capture and labels: its rules (the policy
    applied) and every version's registered metrics, read here (the quality jobs run in
    worker threads, which may not use this process's one registry connection)."""
    models = {e.model for e in settings.endpoints if e.capture and e.labels and e.model in known_models}
    if not models:
        return {}
    from modeldeck.core import quality

    out: dict[str, Any] = {}
    for m in models:
        try:
            mc = quality.rules_for(reg, settings, m)
        except ModeldeckError as e:
            out[m] = one_line(e, 200)
            continue
        out[m] = (mc, {str(v.version): quality.registered(reg, m, v.version) for v in reg.versions(m)})
    return out


def _quality_job(settings: Settings, cfg: EndpointConfig, base: Any, version: str | None) -> Callable[[], Any]:
    def job() -> Any:
        from modeldeck.core import quality
        from modeldeck.core.snapshot import QualitySummary

        if isinstance(base, str):
            return QualitySummary(computed_at=time.time(), version=version, error=base)
        mc, registered = base
        return quality.endpoint_quality(cfg, mc, registered.get(str(version)) if version else None, version,
                                        scan=settings.poll.quality_scan, timeout=max(1.0, settings.poll.timeout))

    return job


def _verify_and_checkpoint(reg: Any, findings: list[Finding]) -> tuple[Any, str]:
    """The audit chain verified against this registry's newest signed checkpoint, and one
    more checkpoint of it signed and appended (``core.checkpoints``): every run leaves a
    checkpoint, so a rewrite of what one run saw shows in every later run. A checkpoint that
    cannot be written is a WARNING (the chain is still verified)."""
    from modeldeck.core import checkpoints

    if reg.readonly and reg.registry_id(create=False) is None:
        return reg.verify_audit(), "; no checkpoint (read-only registry, never checkpointed)"
    try:
        cp, verify = checkpoints.checkpoint(reg)
    except (checkpoints.CheckpointError, RegistryError) as e:
        findings.append(Finding(WARNING, "registry", f"registry: audit checkpoint not written: {one_line(e, 200)}"))
        return reg.verify_audit(), ""
    if cp is None:
        return verify, ""
    return verify, f"; checkpoint {cp.entries} signed ({checkpoints.default_file(reg.path)})"


# reasons an endpoint is down that a second look a few seconds later would not change
DEFINITELY_DOWN = frozenset({"connection refused", "cannot resolve the host name"})


async def _collect_endpoints(settings: Settings, sample: float, aliases: Mapping[tuple[str, str], int],
                             references: Mapping[tuple[str, str], str | None],
                             known_models: Mapping[str, Any],
                             judged: Mapping[str, Any] | None = None,
                             discover_errors: dict[str, str] | None = None) -> list[EndpointReport]:
    import asyncio
    import tempfile

    from modeldeck.core.poller import Poller

    timeout = settings.poll.timeout
    # Metrics on every poll (rates need both scrapes), no drift or storing by the poller itself
    # (done here, once, with a deadline), and no stored history beyond one row to seed.
    psettings = replace(settings, poll=replace(settings.poll, metrics_interval=1e-3, drift_every=0, quality_every=0,
                                               store_interval=0.0, history=1))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    deadline = t0 + sample + 2 * timeout + DRIFT_SLACK
    # A registry path that does not exist: the poller then never opens the registry (see collect()).
    nowhere = Path(tempfile.gettempdir()) / f"modeldeck-report-{os.getpid()}-no-registry" / "none.db"
    # The aliases read above go to the poller, so it can confirm versions (servers whose metadata
    # lists none are asked /versions/{alias}/ready) without a registry connection of its own.
    poller = Poller(psettings, registry_path=nowhere, source="report", aliases=aliases,
                    rate_window=max(10.0, 2 * sample + 2 * timeout))
    workers = _DaemonWorkers(DRIFT_WORKERS)
    drift_futures: dict[str, asyncio.Future[Any]] = {}
    quality_futures: dict[str, asyncio.Future[Any]] = {}
    drift_errors: dict[str, str] = {}
    judged = judged or {}
    if any(cfg.capture for cfg in settings.endpoints):
        workers.submit(_import_drift)  # pandas and scipy load (about 1 s of CPU) while the first poll runs
    try:
        first = await poller.poll_once()
        for cfg, snap in zip(poller.configs(), first):
            if not cfg.capture or cfg.model not in known_models:  # the latter is a finding of its own
                continue
            job = _drift_job(references, settings, cfg, judge.drift_version(snap))
            if isinstance(job, str):
                drift_errors[cfg.name] = job
            else:
                drift_futures[cfg.name] = asyncio.wrap_future(workers.submit(job))
        for cfg, snap in zip(poller.configs(), first):
            if cfg.capture and cfg.labels and cfg.model in judged:
                qjob = _quality_job(settings, cfg, judged[cfg.model], judge.drift_version(snap))
                quality_futures[cfg.name] = asyncio.wrap_future(workers.submit(qjob))
        # Endpoints read through Prometheus have their rates at once (its window): without any
        # scraped directly there is nothing to sample.
        if sample > 0 and any(not c.via_prometheus for c in poller.configs()):
            await asyncio.sleep(max(0.0, t0 + sample - loop.time()))
            # an endpoint that refused the connection (or whose name does not resolve) is down
            # without a second look: at 10,000 of them the second look was seconds of CPU
            gone = {s.endpoint for s in first if s.status == DOWN and s.reason in DEFINITELY_DOWN}
            second = await poller.poll_once(skip=gone)
        else:
            second = first
        pending = [f for f in [*drift_futures.values(), *quality_futures.values()] if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
    finally:
        if discover_errors is not None:
            discover_errors.update(poller.discover_errors)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(poller.aclose(), 5.0)
        workers.shutdown()
    out = []
    for cfg, snap in zip(poller.configs(), second):
        data, error = None, drift_errors.get(cfg.name)
        fut = drift_futures.get(cfg.name)
        if fut is not None:
            if not fut.done():
                fut.cancel()
                error = (f"the drift comparison did not finish within the report's "
                         f"{sample + 2 * timeout + DRIFT_SLACK:g} s (a large reference is profiled once, "
                         f"then cached: run `modeldeck drift REFERENCE CURRENT` once to warm it)")
            elif fut.exception() is not None:
                error = one_line(fut.exception(), 200)
            else:
                summary = fut.result()
                snap = replace(snap, drift=summary)
                data, error = (None, summary.error) if summary.error else (summary.result, None)
        qfut = quality_futures.get(cfg.name)
        if qfut is not None:
            from modeldeck.core.snapshot import QualitySummary

            version = judge.drift_version(snap)
            if not qfut.done():
                qfut.cancel()
                qs = QualitySummary(computed_at=time.time(), version=version,
                                    error=f"the quality measurement did not finish within the report's "
                                          f"{sample + 2 * timeout + DRIFT_SLACK:g} s")
            elif qfut.exception() is not None:
                qs = QualitySummary(computed_at=time.time(), version=version, error=one_line(qfut.exception(), 200))
            else:
                qs = qfut.result()
            snap = replace(snap, quality=qs)
        out.append(EndpointReport(cfg, snap, data, error))
    return out


def _drift_job(references: Mapping[tuple[str, str], str | None], settings: Settings, cfg: EndpointConfig,
               version: str | None) -> Callable[[], Any] | str:
    """A function computing the endpoint's DriftSummary in a worker thread, or why it cannot be
    (the version is not in the registry)."""
    if version is not None and version.isdigit() and (cfg.model, str(int(version))) not in references:
        return f"{one_line(cfg.model, 60)} has no version {int(version)} in the registry"
    ref = references.get((cfg.model, str(int(version)))) if version is not None and version.isdigit() else None
    capture, last_n = cfg.capture or "", settings.poll.drift_window
    share, timeout = cfg.thresholds.drift_share, max(1.0, settings.poll.timeout)
    cap = settings.poll.max_capture_bytes

    def job() -> Any:
        from modeldeck.core import drift

        return drift.window_drift(version, ref, capture, last_n, drift_share=share, timeout=timeout,
                                  current_name=f"capture of {cfg.name}", max_bytes=cap)

    return job


def _import_drift() -> None:
    from modeldeck.core import capture, drift  # noqa: F401


class _DaemonWorkers:
    """A tiny pool of daemon threads: a comparison still running at the deadline is
    abandoned, and never keeps the process from exiting (ThreadPoolExecutor's threads are
    joined at exit)."""

    def __init__(self, n: int) -> None:
        import queue

        self._q: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._n = n
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        from concurrent.futures import Future

        fut: Future[Any] = Future()
        self._q.put((fn, fut))
        if len(self._threads) < self._n:
            t = threading.Thread(target=self._work, name=f"report-drift-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()
        return fut

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._q.put(None)


def _retrain_on(settings: Settings, reg: Any, endpoints: Sequence[EndpointReport],
                triggers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Start retraining for each model whose production endpoint shows dataset drift
    (trigger ``drift``) or a quality drop the judge warns about (trigger ``quality``); one
    automatic job per model per ``retrain_cooldown``, whichever trigger started it."""
    from modeldeck.core import retrain

    found: dict[str, tuple[str, list[str]]] = {}
    for e in endpoints:
        if e.config.environment != "production":
            continue
        if "drift" in triggers and e.drift and e.drift.get("dataset_drift"):
            trig, why = found.setdefault(e.config.model, ("drift", []))
            if trig == "drift":
                why.append(f"dataset drift on {e.config.name} ({e.drift.get('n_drifted')} of "
                           f"{e.drift.get('n_columns')} columns)")
        if "quality" in triggers and e.config.model not in found:
            dropped = [v for v in judge.snapshot_quality_verdicts(e.snapshot.quality) if v.key == "quality"]
            if dropped:
                found[e.config.model] = ("quality", [f"quality drop on {e.config.name}: {dropped[0].text}"])
    out: dict[str, dict[str, Any]] = {}
    for model, (trigger, why) in found.items():
        reason = f"modeldeck --report: {'; '.join(why)}"
        cooldown = settings.model(model).retrain_cooldown
        if settings.model(model).retrain is None:
            out[model] = {"action": "not_configured", "job": None, "trigger": trigger,
                          "message": f"{model} has no retraining pipeline configured"}
            continue
        try:
            job = retrain.maybe_retrain_on_drift(settings, reg, model, reason, trigger=trigger)
        except ModeldeckError as e:
            out[model] = {"action": "failed", "job": None, "trigger": trigger, "message": one_line(e, 200)}
            continue
        except OSError as e:
            out[model] = {"action": "failed", "job": None, "trigger": trigger,
                          "message": one_line(f"{e.strerror or e}", 200)}
            continue
        if job is None:
            out[model] = {"action": "cooling_down", "job": None, "trigger": trigger,
                          "message": f"an automatic retraining started within the last {duration(cooldown)}"}
        else:
            out[model] = {"action": "started", "job": job.id, "trigger": trigger,
                          "message": f"started job {job.id}: {reason}"}
    return out


def rollout_findings(settings: Settings, reg: Any) -> list[Finding]:
    """Rollouts nothing watches to their end: resumed or set unverified first (a dead
    supervisor), then every environment whose newest rollout is unverified or failed after
    its alias moved is CRITICAL until an operator confirms it or rolls back."""
    from modeldeck.core import rollout

    out: list[Finding] = []
    if not reg.readonly:
        with contextlib.suppress(RegistryError, OSError):
            rollout.reconcile(reg, settings)
    for r in rollout.unverified(reg):
        how = (f"modeldeck rollout {r.id} --confirm --reason ... once checked, or roll back" if r.state == "unverified"
               else f"check {r.environment} (modeldeck rollout {r.id})")
        out.append(Finding(CRITICAL, r.model, f"{r.model} {r.environment}: rollout {r.id} to version {r.to_version} "
                           f"is {r.state}: {one_line(r.message, 240)}; {how}"))
    return out


def _collect_models(reg: Any, known: Mapping[str, Any]) -> list[ModelReport]:
    from modeldeck.core import retrain
    from modeldeck.core.registry import stored_time

    if not reg.readonly:
        with contextlib.suppress(RegistryError, OSError):
            retrain.reconcile(reg)  # a job whose runner is gone is failed, not running forever
    cutoff = datetime.now(timezone.utc) - JOB_WINDOW
    active = reg.jobs(status=("queued", "running"), limit=None)
    failed = [j for j in reg.jobs(status=("failed",), limit=500)
              if (stored_time(j.ended_at or j.created_at) or cutoff) >= cutoff]
    by_model: dict[str, list[Any]] = {}
    for j in sorted([*active, *failed], key=lambda j: -j.id):
        by_model.setdefault(j.model, []).append(j)
    out = []
    for name, m in known.items():
        pending = tuple(v.version for v in reg.versions(name) if v.approval == "pending")
        jobs = tuple(JobInfo(id=j.id, trigger=j.trigger, status=j.status, created_at=j.created_at,
                             ended_at=j.ended_at, exit_code=j.exit_code,
                             message=one_line(j.message, 200) if j.message else None)
                     for j in by_model.get(name, []))
        out.append(ModelReport(name=name, latest_version=m.latest_version, environments=dict(m.aliases),
                               pending_approval=pending, jobs=jobs))
    return out


def _store(settings: Settings, reg: Any, endpoints: Sequence[EndpointReport]) -> int:
    """Store this run's snapshots (source "report") so the TUI shows what cron saw."""
    if reg.readonly:
        raise RegistryError(f"{reg.path}: the registry file is read-only for this user")
    rows = [(e.config.name, utc_iso(e.snapshot.taken_at), e.snapshot.to_dict(drift_result=False))
            for e in endpoints]
    return int(reg.store_snapshots(rows, source="report",
                                   retention_hours=settings.poll.retention_hours or None))


# ---------------------------------------------------------------------------------------------
# findings


def endpoint_findings(endpoints: Sequence[EndpointReport], known_models: Mapping[str, Any] | None = None
                      ) -> list[Finding]:
    """Judge each endpoint with its thresholds (see the README for the rules)."""
    out: list[Finding] = []
    for e in endpoints:
        out += _judge_endpoint(e, known_models)
    return out


def _judge_endpoint(e: EndpointReport, known_models: Mapping[str, Any] | None) -> list[Finding]:
    """The judge's verdicts on the endpoint (modeldeck.core.judge: the same rules as the fleet
    screen and the release gates), and what the registry lacks for it."""
    cfg, s = e.config, e.snapshot
    name = cfg.name
    found = judge.verdicts(s, cfg.thresholds, drift_result=e.drift, drift_error=e.drift_error)
    registry: list[judge.Verdict] = []
    if known_models is not None and cfg.model not in known_models:
        registry.append(judge.Verdict("registry", WARNING, f"model {one_line(cfg.model, 60)} is not in the registry"))
    elif s.registry_version is None and known_models is not None:
        registry.append(judge.Verdict("registry", WARNING, f"the registry has no {one_line(cfg.environment, 40)} "
                                                           f"version of {one_line(cfg.model, 60)}"))
    first = [v for v in found if v.key in ("down", "pending")]
    rest = [v for v in found if v.key not in ("down", "pending")]
    return [Finding(v.level, name, f"{name}: {v.text}") for v in [*first, *registry, *rest] if v.level != judge.NOTICE]


def model_findings(models: Sequence[ModelReport]) -> list[Finding]:
    out = []
    for m in models:
        for j in m.jobs:
            if j.status == "failed":
                why = f": {j.message}" if j.message else ""
                out.append(Finding(WARNING, m.name, f"{m.name}: retraining job {j.id} ({j.trigger}) failed "
                                                    f"at {short_time(j.ended_at or j.created_at)}{why}"))
        r = m.retrain
        if r is not None and r.get("action") in ("failed", "not_configured"):
            out.append(Finding(WARNING, m.name, f"{m.name}: retraining on {r.get('trigger') or 'drift'} not started: "
                                                f"{r.get('message')}"))
    return out


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first; within a severity, in the order found (config order, then models)."""
    return sorted(findings, key=lambda f: -EXIT_CODES[f.severity])


# ---------------------------------------------------------------------------------------------
# rendering


def render(report: Report, fmt: str, *, color: bool = False) -> str:
    if fmt == "text":
        return render_text(report, color=color)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "json":
        return json_text(report.to_json()) + "\n"
    if fmt == "prometheus":
        return render_prometheus(report)
    raise ValueError(f"unknown report format {fmt!r}")


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _u_escape(m: re.Match[str]) -> str:
    n = ord(m.group())
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def json_text(doc: Any) -> str:
    """What ``json.dumps(doc, indent=2)`` writes (ASCII only: a name's bidi or C1 control
    character is an escape, never raw on a terminal; an exponent may be shorter, 1e-7), written
    by orjson: Python's indented encoder is pure Python, 0.3 s for a report of 5,000 endpoints.
    NaN has no JSON form; the report's values are finite or null already."""
    import orjson

    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    return text if text.isascii() else _NON_ASCII.sub(_u_escape, text)


_COLORS = {OK: "32", WARNING: "33", CRITICAL: "1;31", UNKNOWN: "35"}


def _paint(text: str, severity: str, color: bool) -> str:
    return f"\x1b[{_COLORS[severity]}m{text}\x1b[0m" if color else text


def _summary(report: Report) -> str:
    c = report.counts()
    parts = [f"{c[s]} {s.lower()}" for s in (CRITICAL, WARNING, UNKNOWN) if c[s]]
    n = len(report.endpoints)
    up = sum(1 for e in report.endpoints if e.snapshot.status == "UP")
    down = sum(1 for e in report.endpoints if e.snapshot.status == "DOWN")
    ep = f"{n} endpoint{'s' if n != 1 else ''}"
    if n:
        ep += f" ({up} up" + (f", {down} down" if down else "") + ")"
    m = len(report.models)
    return (", ".join(parts) or "no findings") + f"; {ep}, {m} model{'s' if m != 1 else ''}"


def _drift_cell(e: EndpointReport) -> str:
    if e.drift is None:
        return "error" if e.drift_error else "-"
    d = e.drift
    text = f"{'DRIFT' if d.get('dataset_drift') else 'ok'} {d.get('n_drifted')}/{d.get('n_columns')}"
    psi = e.snapshot.drift.worst_psi if e.snapshot.drift is not None else None
    if psi is not None:
        text += f" psi {psi:.2f}"
    return text


def quality_focus(summary: Any) -> tuple[str, float | None, float | None, str]:
    """(metric, live value, registered value, level) an endpoint's quality is shown by: the
    judged metric that dropped the most (``judge.quality_level``), else the headline (ROC AUC
    when measured, else accuracy; R² for regression)."""
    doc = summary.result or {}
    registered = ((doc.get("registered") or {}).get("metrics")) or {}
    drop = finite(doc.get("quality_drop"))
    drop = 0.05 if drop is None else drop
    worst_name, worst_level = None, judge.OK
    if doc.get("status") == "measured":
        for name in judge.QUALITY_JUDGED.get(str(doc.get("problem_type")), ()):
            m = (doc.get("metrics") or {}).get(name) or {}
            lv = judge.quality_level(name, m, registered.get(name), drop, min_rows=int(doc.get("min_rows") or 0),
                                     registered_rows=(doc.get("registered") or {}).get("dataset_rows"),
                                     live_rows=doc.get("rows"))
            if judge.RANK[lv] > judge.RANK[worst_level]:
                worst_name, worst_level = name, lv
    if worst_name is None:
        name, value, reg = summary.headline()
        return name, value, reg, judge.OK
    m = (doc.get("metrics") or {}).get(worst_name) or {}
    return worst_name, finite(m.get("value")), finite(registered.get(worst_name)), worst_level


def quality_cell(summary: Any) -> str:
    """The QUALITY cell of the fleet and the report: ``auc .912 ▼`` (the metric that dropped
    the most, else the headline; ▼ when the judge warns about it, ▽ worse than the registered
    value within the rule, ▲ better, = equal; MAE and RMSE are better lower), ``n=42/200`` while there are not enough labels, ``error``
    when it could not be measured, ``-`` without."""
    if summary is None:
        return "-"
    doc = summary.result or {}
    if summary.error or doc.get("status") == "error":
        return "error"
    if doc.get("status") == "not_enough_labels":
        return f"n={doc.get('rows')}/{doc.get('min_rows')}"
    name, value, reg, lv = quality_focus(summary)
    short = {"roc_auc": "auc", "accuracy": "acc", "r2": "r2"}.get(name, name)
    if value is None:
        return f"{short} -"
    text = f"{short} {value:.3f}".replace(" 0.", " .") if value >= 0 else f"{short} {value:.3f}"
    if reg is not None:  # the arrows say better or worse, whichever way the metric is better
        short = judge.quality_shortfall(name, value, reg)
        text += " ▼" if lv in (WARNING, CRITICAL) else (" =" if not short else " ▲" if short < 0 else " ▽")
    return text


def _endpoint_row(e: EndpointReport) -> list[str]:
    s = e.snapshot
    served = ",".join(s.served_versions) if s.served_versions else (s.served_version or "-")
    return [e.config.name, e.config.model, e.config.environment, s.status, served, s.registry_version or "-",
            num(finite(s.request_rate)), pct(finite(s.error_ratio)), num(finite(s.latency_p50_ms)),
            num(finite(s.latency_p95_ms)), num(finite(s.latency_p99_ms)), _drift_cell(e), quality_cell(s.quality)]


ENDPOINT_HEADERS = ["ENDPOINT", "MODEL", "ENV", "STATUS", "SERVED", "REGISTRY", "REQ/S", "ERRORS",
                    "P50 MS", "P95 MS", "P99 MS", "DRIFT", "QUALITY"]
MODEL_HEADERS = ["MODEL", "LATEST", "ENVIRONMENTS", "PENDING APPROVAL", "JOBS (RUNNING, FAILED 24H)"]


def _model_row(m: ModelReport) -> list[str]:
    envs = " ".join(f"{k}={v}" for k, v in sorted(m.environments.items())) or "-"
    pending = ",".join(str(v) for v in m.pending_approval) or "-"
    jobs = " ".join(f"#{j.id} {j.status} ({j.trigger})" for j in m.jobs[:4]) or "-"
    if len(m.jobs) > 4:
        jobs += f" +{len(m.jobs) - 4}"
    if m.retrain is not None and m.retrain.get("action") == "started":
        jobs = f"started #{m.retrain.get('job')} ({m.retrain.get('trigger') or 'drift'}) " + (jobs if jobs != "-" else "")
    elif m.retrain is not None and m.retrain.get("action") == "cooling_down":
        jobs = "retrain cooling down " + (jobs if jobs != "-" else "")
    return [m.name, str(m.latest_version or "-"), envs, pending, jobs.strip()]


def render_text(report: Report, *, color: bool = False) -> str:
    """A compact summary for a cron mail: the status line first, then the findings, then one
    table of endpoints and one of models."""
    status = report.status
    lines = [f"{PROGRAM} {_paint(status, status, color)}: {_summary(report)}"]
    for f in report.findings:
        lines.append(f"{_paint(f.severity.ljust(8), f.severity, color)}  {one_line(f.message, 400)}")
    if report.endpoints:
        lines += ["", table(ENDPOINT_HEADERS, [_endpoint_row(e) for e in report.endpoints],
                            right=[6, 7, 8, 9, 10])]
    if report.models:
        lines += ["", table(MODEL_HEADERS, [_model_row(m) for m in report.models], right=[1])]
    lines += ["", f"{report.audit_text}; {utc_iso(report.generated_at)[:19]}Z, sample {report.sample:g} s, "
                  f"took {report.duration:.1f} s"]
    return "\n".join(lines) + "\n"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def md(text: Any) -> str:
    """Untrusted text for a Markdown table cell: one line, special characters escaped."""
    return one_line("" if text is None else text, 300).translate(_MD_SPECIAL)


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(md(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(md(c) if c not in (None, "") else "-" for c in r) + " |")
    return out


def render_markdown(report: Report) -> str:
    """The same as tables, for a chat message or an issue (GitHub-flavoured Markdown)."""
    status = report.status
    lines = [f"## {PROGRAM} report: {status}", "",
             f"{md(_summary(report))}. Generated {utc_iso(report.generated_at)[:19]}Z, sample {report.sample:g} s.", ""]
    lines.append("### Findings")
    lines.append("")
    if report.findings:
        lines += _md_table(["Severity", "Subject", "Finding"],
                           [[f.severity, f.subject, f.message] for f in report.findings])
    else:
        lines.append("No findings.")
    if report.endpoints:
        lines += ["", "### Endpoints", ""]
        heads = ["Endpoint", "Model", "Environment", "Status", "Served", "Registry", "Req/s", "Errors",
                 "p50 ms", "p95 ms", "p99 ms", "Drift", "Quality"]
        lines += _md_table(heads, [_endpoint_row(e) for e in report.endpoints])
    if report.models:
        lines += ["", "### Models", ""]
        lines += _md_table(["Model", "Latest", "Environments", "Pending approval", "Jobs (running, failed 24 h)"],
                           [_model_row(m) for m in report.models])
    lines += ["", md(report.audit_text) + "."]
    return "\n".join(lines) + "\n"


# -- Prometheus text (node_exporter textfile collector) ------------------------------------------


def _label_value(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, Any]]) -> str:
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in pairs) + "}"


def _value(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class _Families:
    def __init__(self) -> None:
        self._order: list[str] = []
        self._meta: dict[str, tuple[str, str]] = {}
        self._samples: dict[str, list[str]] = {}

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._order.append(name)
        self._meta[name] = (kind, help_text)
        self._samples[name] = []

    def add(self, name: str, labels: Sequence[tuple[str, Any]], value: float | None) -> None:
        v = finite(value) if not isinstance(value, (bool, int)) else value
        if v is None:
            return
        self._samples[name].append(f"{name}{_labels(labels) if labels else ''} {_value(v)}")

    def text(self) -> str:
        out = []
        for name in self._order:
            kind, help_text = self._meta[name]
            out.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2)}")
            out.append(f"# TYPE {name} {kind}")
            out += self._samples[name]
        return "\n".join(out) + "\n"


def render_prometheus(report: Report | None, *, generated_at: float | None = None) -> str:
    """Metrics for node_exporter's textfile collector (``promtool check metrics`` clean).
    ``report=None``: the report could not run (status 3, no endpoint metrics)."""
    f = _Families()
    f.family("modeldeck_report_status", "gauge",
             "Overall status of the last modeldeck report: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
    f.family("modeldeck_report_timestamp_seconds", "gauge", "When the last modeldeck report ran (Unix time).")
    f.add("modeldeck_report_status", (), EXIT_CODES[UNKNOWN] if report is None else report.exit_code)
    f.add("modeldeck_report_timestamp_seconds", (),
          round(report.generated_at if report is not None else (generated_at or time.time()), 3))
    if report is None:
        return f.text()
    f.family("modeldeck_report_findings", "gauge", "Findings of the last modeldeck report, by severity.")
    counts = report.counts()
    for s in (WARNING, CRITICAL, UNKNOWN):
        f.add("modeldeck_report_findings", [("severity", s.lower())], counts[s])
    f.family("modeldeck_endpoint_up", "gauge",
             "1 when the endpoint answered and its model is ready (UP or DEGRADED), else 0.")
    f.family("modeldeck_version_mismatch", "gauge",
             "1 when the endpoint does not serve the registry's version for its environment.")
    f.family("modeldeck_request_rate", "gauge", "Inference requests per second over the report's sample.")
    f.family("modeldeck_error_ratio", "gauge", "Share of inference requests that failed over the sample (0-1).")
    f.family("modeldeck_latency_seconds", "summary", "Inference latency quantiles over the sample.")
    f.family("modeldeck_dataset_drift", "gauge",
             "1 when the live window shows dataset drift against the served version's reference.")
    f.family("modeldeck_drift_share", "gauge", "Share of compared columns that drifted (0-1).")
    f.family("modeldeck_column_psi", "gauge", "Population stability index of each compared input column.")
    f.family("modeldeck_endpoint_quality", "gauge",
             "Live model quality over the newest labelled rows (metric: accuracy, precision, recall, f1, roc_auc, "
             "mae, rmse, r2; scikit-learn's definitions).")
    f.family("modeldeck_endpoint_quality_registered", "gauge",
             "The served version's registered metric on its own evaluation data, as quality compares it.")
    f.family("modeldeck_endpoint_quality_estimated", "gauge",
             "Estimated quality of the newest unlabelled rows (CBPE from the model's probabilities; not measured).")
    f.family("modeldeck_endpoint_quality_rows", "gauge", "Labelled rows the live quality was measured on.")
    f.family("modeldeck_endpoint_quality_labelled_share", "gauge",
             "Share of the newest captured rows (the quality window) that have a label (0-1).")
    f.family("modeldeck_endpoint_quality_label_lag_seconds", "gauge",
             "Median time from inference to label over the measured rows.")
    for e in report.endpoints:
        s = e.snapshot
        base = [("endpoint", e.config.name), ("model", e.config.model), ("environment", e.config.environment)]
        f.add("modeldeck_endpoint_up", base, 1 if s.status in ("UP", "DEGRADED") else 0)
        if s.registry_version is not None and s.served_versions:
            f.add("modeldeck_version_mismatch", base, 0 if s.registry_version in s.served_versions else 1)
        f.add("modeldeck_request_rate", base, s.request_rate)
        f.add("modeldeck_error_ratio", base, s.error_ratio)
        for q, ms in (("0.5", s.latency_p50_ms), ("0.95", s.latency_p95_ms), ("0.99", s.latency_p99_ms)):
            v = finite(ms)
            f.add("modeldeck_latency_seconds", [*base, ("quantile", q)], None if v is None else v / 1000.0)
        if e.drift is not None:
            f.add("modeldeck_dataset_drift", base, 1 if e.drift.get("dataset_drift") else 0)
            f.add("modeldeck_drift_share", base, e.drift.get("drift_share"))
            for c in e.drift.get("columns") or []:
                if c.get("status") in judge.JUDGED and isinstance(c.get("psi"), (int, float)):
                    f.add("modeldeck_column_psi", [*base, ("column", c.get("column"))], c.get("psi"))
        q = _quality_json(s)
        if q and q.get("status") in ("measured", "not_enough_labels"):
            f.add("modeldeck_endpoint_quality_rows", base, int(q.get("rows") or 0))
            f.add("modeldeck_endpoint_quality_labelled_share", base, q.get("labelled_share"))
            f.add("modeldeck_endpoint_quality_label_lag_seconds", base, q.get("label_lag_seconds"))
            for name, m in (q.get("metrics") or {}).items():
                f.add("modeldeck_endpoint_quality", [*base, ("metric", name)], (m or {}).get("value"))
            for name, v in (((q.get("registered") or {}).get("metrics")) or {}).items():
                f.add("modeldeck_endpoint_quality_registered", [*base, ("metric", name)], v)
            for name, v in (((q.get("estimated") or {}).get("metrics")) or {}).items():
                f.add("modeldeck_endpoint_quality_estimated", [*base, ("metric", name)], v)
    return f.text()


# ---------------------------------------------------------------------------------------------
# atomic output


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` so a reader sees the old file or the new one, never a part:
    a temporary file in the same folder (named ``.NAME.*.tmp``, which node_exporter's
    ``*.prom`` glob skips), fsync, the target's permissions (or the umask's for a new
    file), then rename over the target and fsync the folder. The temporary file is removed
    on any error."""
    target = Path(path).expanduser()
    folder = target.parent
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
            with contextlib.suppress(OSError):
                os.fchmod(fh.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return target


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (this runs single-threaded here)
    os.umask(mask)
    return mask


__all__ = ["CRITICAL", "EXIT_CODES", "FORMATS", "OK", "SCHEMA", "UNKNOWN", "WARNING", "EndpointReport", "Finding",
           "ModelReport", "Report", "collect", "endpoint_findings", "model_findings", "render",
           "render_markdown", "render_prometheus", "render_text", "sort_findings", "worst", "write_atomic"]
