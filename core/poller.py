"""Async polling of model endpoints -> immutable :class:`EndpointSnapshot` values.

What one poll asks an endpoint (Open Inference Protocol v2, judged by status code):

- every poll: ``GET /v2/models/{served_model}/ready`` and, when due (``poll.metrics_interval``),
  the Prometheus text at ``metrics_url``, concurrently;
- on a *full* poll, first ``/v2/health/live`` and ``/v2/health/ready``, and after the model's
  readiness the model metadata ``GET /v2/models/{served_model}`` (served versions) and, when
  the metadata names no version and the registry has an alias for the endpoint's environment,
  ``/v2/models/{m}/versions/{registry version}/ready``. A poll is full the first time, after
  the endpoint was down, after a counter reset (a restart), when the registry alias moved,
  while the served version differs from the alias, on :meth:`Poller.poll_now`, and every
  ``metadata_every`` polls. Between full polls a ready model implies a live server and the
  last known server readiness and versions are carried over.

Every request has ``poll.timeout`` (a deadline on the whole exchange, body included); the
health requests of a poll go one after the other on one kept-alive connection and stop at the
first failure, so a hung, refusing or garbage-answering server costs one timeout at most, and a
slow one that answers each request in time is not down. Endpoints are polled independently:
one hung endpoint never delays the others. Answers larger than
``poll.max_body_bytes`` (health, metadata) or ``poll.max_metrics_bytes`` are cut off while
streaming, never read whole. HTTP clients live across polls: one ``httpx.AsyncClient`` per
scheme://host:port with a small keep-alive pool; plain-http GETs go through a lean HTTP/1.1
transport inside it (:class:`PlainHTTP1Transport`; httpcore's costs half a millisecond per GET).
Endpoints that stay down are polled with exponential backoff up to ``poll.max_backoff``. Header values (``${VAR}`` expanded) go only
into requests: never into logs, reasons, exceptions or the registry.

Threading contract
------------------
A :class:`Poller` belongs to one asyncio event loop: the one that first awaits :meth:`run`,
:meth:`poll_once`, :meth:`store_now` or :meth:`aclose` (the TUI runs it in its own thread with
its own loop). Those coroutines must only be awaited on that loop. ``on_snapshot`` is called on
that loop's thread, once per snapshot, and must return quickly (post a message; never block).

From any thread, at any time: :meth:`latest`, :meth:`history`, :meth:`quality_history`, :attr:`paused`,
:attr:`interval` (reads, under a lock, of immutable values), and :meth:`pause`, :meth:`resume`,
:meth:`set_interval`, :meth:`poll_now`, :meth:`stop` (handed to the loop with
``call_soon_threadsafe`` when called from another thread).

The registry is used through two private threads, each with its own connection: one reads
(aliases once per interval, reference paths, stored history at start), one writes snapshots
every ``poll.store_interval`` seconds with ``poll.retention_hours`` retention. A locked
registry delays only that writer thread; failures are logged and retried at the next interval.
Drift (endpoints with ``capture``) is computed every ``poll.drift_every`` polls in a worker
thread, reference profiles cached per (model, version). Quality (endpoints with ``capture``
and ``labels``: ``core.quality.endpoint_quality``) is measured every ``poll.quality_every``
polls in the same workers, judged against the served version's registered metrics and the
model's rules (both read from the registry, cached per (model, version) for a minute); each
measurement is also kept, small (``core.snapshot.QualityPoint``), in a per-endpoint history bounded
like the snapshots' (:meth:`quality_history`: the Quality tab's chart over time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from modeldeck.core import judge
from modeldeck.core.config import DiscoverConfig, EndpointConfig, Settings, Thresholds
from modeldeck.core.errors import ModeldeckError, RegistryError
from modeldeck.core.http11 import Answer, Sender, fetch, host_key, within
from modeldeck.core.metrics import (
    ERRORS_UNREPORTED,
    PROFILES,
    MetricsError,
    Profile,
    Rates,
    RateWindow,
    read_metrics,
)
from modeldeck.core.snapshot import (
    DOWN,
    PENDING,
    DriftSummary,
    EndpointSnapshot,
    QualityPoint,
    QualitySummary,
)
from modeldeck.core.textfmt import duration, one_line, utc_iso

log = logging.getLogger("modeldeck.poller")

# a refresh of thousands of endpoints pauses every BREATHE_EVERY endpoints while the process has
# more urgent work (Poller.busy), BREATHE_STEP seconds at a time, BREATHE_MAX seconds at most
BREATHE_EVERY, BREATHE_STEP, BREATHE_MAX = 250, 0.005, 1.0

REASON_LIMIT = 160  # characters of a reason; endpoint text inside it is cut shorter
START_SLICE = 256  # polls started per event-loop turn by poll_once
QUALITY_BASE_TTL = 60.0  # seconds a model's rules and a version's registered metrics are cached for quality
RATE_WINDOW = 10.0  # seconds of metrics readings that rates are computed over (at least two)
METADATA_EVERY = 10  # a full poll (live, ready, metadata) at least every N polls
LARGE_METRICS = 512 * 1024  # metrics text larger than this is parsed in a worker thread
HISTORY_BUDGET = 100_000  # snapshots kept in memory over a discovered fleet (see _history_len)
MIN_HISTORY = 20

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# registry threads


class _RegistryThread:
    """One worker thread owning one Registry connection (opened in that thread). With
    ``mlflow`` (the config's ``[mlflow]``), it is an MlflowRegistry: aliases come from MLflow
    and moves made outside modeldeck are recorded in the ledger as they are found."""

    def __init__(self, path: Path, *, create: bool, name: str, mlflow: Any = None) -> None:
        self.path = path
        self.create = create
        self.mlflow = mlflow
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"modeldeck-{name}")
        self._reg: Any = None

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._reg is None:
            if self.mlflow is not None:
                from modeldeck.core.mlflow import MlflowRegistry

                self._reg = MlflowRegistry(self.path, self.mlflow, create=True)
            else:
                from modeldeck.core.registry import Registry

                self._reg = Registry(self.path, create=self.create)
        return fn(self._reg, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._ex, self._run, fn, args)

    def _close(self) -> None:
        if self._reg is not None:
            self._reg.close()
            self._reg = None

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._ex.submit(self._close)
        self._ex.shutdown(wait=False)


# ---------------------------------------------------------------------------------------------
# per-endpoint state


class _Requests(dict):  # type: ignore[type-arg]
    """An endpoint's requests, each built when first sent (building one costs about 0.1 ms of
    httpx URL parsing: 10,000 endpoints x 5 requests up front was seconds of a report's bound,
    most of them never sent to an endpoint that is down)."""

    def __init__(self, urls: Mapping[str, str], builders: Mapping[str, Sender], headers: Mapping[str, str]) -> None:
        super().__init__()
        self._urls, self._builders, self._headers = dict(urls), dict(builders), dict(headers)

    def __missing__(self, key: str) -> httpx.Request:
        r = self[key] = self._builders[key].build_request(self._urls[key], self._headers)
        return r

    def __bool__(self) -> bool:
        return True


@dataclass
class _Health:
    live: bool | None = None
    ready: bool | None = None
    model_ready: bool | None = None
    down: str | None = None  # why the endpoint is down
    note: str | None = None  # something degraded that is not down (server not ready)
    versions: tuple[str, ...] | None = None  # None: not asked this time
    probed: str | None = None  # a version confirmed by /versions/{v}/ready
    unconfirmed: tuple[str, str] | None = None  # (version, answer) of a /versions/{v}/ready that was not 200


class _Target:
    def __init__(self, cfg: EndpointConfig, index: int, rate_window: float = RATE_WINDOW) -> None:
        self.cfg = cfg
        self.index = index
        self.served = cfg.served_model or cfg.model
        m = quote(self.served, safe="")
        self.paths = {"live": "/v2/health/live", "ready": "/v2/health/ready",
                      "model_ready": f"/v2/models/{m}/ready", "metadata": f"/v2/models/{m}"}
        self.requests: dict[str, httpx.Request] = {}
        self.client: Sender | None = None
        self.metrics_client: Sender | None = None
        self.header_error: str | None = None
        self.headers: dict[str, str] = {}  # expanded values: only ever put into requests
        self.polls = 0
        self.since_full = 0  # polls since the last full one
        self.down_streak = 0
        self.need_full = True
        self.last_start = -math.inf  # loop time of the last poll's start
        self.live: bool | None = None
        self.ready: bool | None = None
        self.versions: tuple[str, ...] = ()
        self.unconfirmed: tuple[str, str] | None = None
        self.alias_seen: int | bool | None = False  # False: never seen
        self.window = RateWindow(rate_window)
        self.rates: Rates | None = None
        self.rates_at: float | None = None  # loop time of the reading the rates end at
        self.metrics_error: str | None = None
        self.metrics_note: str | None = None
        self.metrics_last: float | None = None  # loop time of the last scrape's start
        self.profile: Profile | None = None
        self.restarted_pending = False
        self.drift: DriftSummary | None = None
        self.drift_task: asyncio.Task[None] | None = None
        self.quality: QualitySummary | None = None
        self.quality_task: asyncio.Task[None] | None = None
        self.inflight: asyncio.Future[EndpointSnapshot] | None = None
        self.wake: asyncio.Event | None = None
        self.forced = False
        self.via = cfg.via_prometheus  # metrics from PromQL (core/promql.py), not metrics_url
        self.prom: Any = None  # the last PromReading
        self.prom_versions: tuple[str, ...] = ()
        self.vanished_at: float | None = None  # loop time a discovered endpoint was last missing from
        self.task: asyncio.Task[None] | None = None  # its endpoint loop (endpoints with a url)


# ---------------------------------------------------------------------------------------------
# the poller


class Poller:
    """Polls every configured endpoint; see the module docstring for what, how often, and
    the threading contract.

    ``registry_path`` defaults to ``settings.registry``; ``on_snapshot(snapshot)`` is called on
    the poller's loop for every new snapshot. ``source`` labels stored snapshots ("tui",
    "report"). ``fast_http`` sends plain-http GETs through :class:`PlainHTTP1Transport` (False:
    httpx's own transport for everything). ``aliases`` ({(model, environment): version}), when
    given, is the registry's view to judge served versions by, instead of reading it from the
    registry once per interval (the report reads the registry itself)."""

    def __init__(self, settings: Settings, *, registry_path: str | Path | None = None,
                 on_snapshot: Callable[[EndpointSnapshot], Any] | None = None, source: str = "tui",
                 metadata_every: int = METADATA_EVERY, rate_window: float = RATE_WINDOW,
                 fast_http: bool = True, clock: Callable[[], float] = time.time,
                 aliases: Mapping[tuple[str, str], int] | None = None) -> None:
        self.settings = settings
        self.poll_settings = settings.poll
        self.registry_path = Path(registry_path) if registry_path else Path(settings.registry)
        self.on_snapshot = on_snapshot
        self.source = source
        self.metadata_every = max(1, int(metadata_every))
        self.fast_http = fast_http
        self._clock = clock
        self._interval = float(settings.poll.interval)
        self._rate_window = rate_window
        self._targets = [_Target(cfg, i, rate_window) for i, cfg in enumerate(settings.endpoints)]
        self._lock = threading.Lock()
        self._configs: tuple[EndpointConfig, ...] | None = None  # configs(), until the targets change
        n = max(1, settings.poll.history)
        self._latest: dict[str, EndpointSnapshot] = {t.cfg.name: EndpointSnapshot.pending(t.cfg)
                                                     for t in self._targets}
        self._history: dict[str, deque[EndpointSnapshot]] = {t.cfg.name: deque(maxlen=n)
                                                             for t in self._targets}
        # quality measurements (one every poll.quality_every polls), bounded like the history
        self._quality_history: dict[str, deque[QualityPoint]] = {t.cfg.name: deque(maxlen=n)
                                                                 for t in self._targets}
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._closed = False
        self._clients: dict[tuple[str, str, int | None], Sender] = {}
        self._fixed_aliases = aliases is not None
        self._aliases: dict[tuple[str, str], int] = dict(aliases or {})
        self._aliases_at = -math.inf
        # [mlflow] only when the registry is the config's (the report hands over a nowhere path)
        self._mlflow = settings.mlflow if Path(self.registry_path) == Path(settings.registry) else None
        self._reader = _RegistryThread(self.registry_path, create=False, name="registry-read", mlflow=self._mlflow)
        self.registry_fault: str | None = None  # the last alias read's failure (MLflow down, ...), for a status
        self._writer: _RegistryThread | None = None
        self._drift_pool: ThreadPoolExecutor | None = None
        self._references: dict[tuple[str, str], str | None] = {}  # (model, version) -> reference data
        self._quality_bases: dict[tuple[str, str | None], tuple[float, Any]] = {}  # -> (read at, (rules, registered))
        self._stored_at: dict[str, float] = {}
        self._registry_warned: set[str] = set()
        # Prometheus (core/promql.py): endpoints with metrics = "prometheus" and [[discover]] blocks
        self._prom_cfg = settings.prometheus
        self._prom: Any = None  # a PromFleet, made on the poller's loop
        self._prom_wake: asyncio.Event | None = None
        self._prom_forced = False
        self._discover_at = -math.inf
        self._discover_errors: dict[str, str] = {}  # block name -> why its last discovery failed
        self._history_logged: str | None = None  # the history_note last logged
        self._running = False
        self.prom_refresh_ms: float | None = None  # the last Prometheus refresh's wall time
        # Set by a caller sharing this process with work that must not wait (the TUI: a key being
        # handled): while it returns True, a large refresh pauses between chunks of endpoints so
        # the other thread has the interpreter to itself, for at most BREATHE_MAX seconds a refresh.
        self.busy: Callable[[], bool] | None = None
        self._breathed = 0.0

    # -- thread-safe reads --------------------------------------------------------------------
    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(t.cfg.name for t in self._targets)

    def configs(self) -> tuple[EndpointConfig, ...]:
        """Every endpoint watched now: the configured ones, then those ``[[discover]]`` found.
        The same tuple until the set changes (the fleet screen asks on every key and tick: at
        5,000 endpoints, building it each time was most of a key's work)."""
        with self._lock:
            got = self._configs
            if got is None:
                got = self._configs = tuple(t.cfg for t in self._targets)
            return got

    @property
    def discover_errors(self) -> dict[str, str]:
        """Why the last discovery of a ``[[discover]]`` block failed, by block name."""
        return dict(self._discover_errors)

    @property
    def uses_prometheus(self) -> bool:
        return self._prom_cfg is not None and (bool(self.settings.discover)
                                               or any(t.via for t in self._targets))

    def latest(self) -> dict[str, EndpointSnapshot]:
        """The newest snapshot of every endpoint (PENDING before its first poll), in config order."""
        with self._lock:
            return dict(self._latest)

    def history(self, name: str) -> tuple[EndpointSnapshot, ...]:
        """Snapshots of one endpoint, oldest first (at most ``poll.history``; seeded at start
        from the registry's stored snapshots, marked ``source="stored"``)."""
        with self._lock:
            h = self._history.get(name)
            return tuple(h) if h is not None else ()

    def quality_history(self, name: str) -> tuple[QualityPoint, ...]:
        """The quality measurements of one endpoint, oldest first (at most as many as
        :meth:`history` keeps snapshots; seeded at start from the stored snapshots' quality):
        what the Quality tab charts over time."""
        with self._lock:
            h = self._quality_history.get(name)
            return tuple(h) if h is not None else ()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def interval(self) -> float:
        return self._interval

    # -- thread-safe controls -----------------------------------------------------------------
    def _call(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed() and threading.get_ident() != self._thread_id:
            try:
                loop.call_soon_threadsafe(fn)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        fn()

    def pause(self) -> None:
        """Stop polling after the polls in flight (``run`` keeps running)."""
        self._paused = True
        self._call(self._wake_all)

    def resume(self) -> None:
        self._paused = False
        self._call(self._wake_all)

    def set_interval(self, seconds: float) -> None:
        """Change the poll interval (seconds, at least 0.1); takes effect at once."""
        self._interval = max(0.1, float(seconds))
        self._call(self._wake_all)

    def poll_now(self) -> None:
        """Poll every endpoint at once, fully (health, metadata, metrics), even while paused
        or backing off."""

        def apply() -> None:
            for t in self._targets:
                t.forced = True
                t.need_full = True
            self._prom_forced = True
            self._wake_all()

        self._call(apply)

    def stop(self) -> None:
        """Make ``run()`` return (after cancelling the polls in flight)."""
        self._stop_requested = True

        def apply() -> None:
            if self._stopping is not None:
                self._stopping.set()
            self._wake_all()

        self._call(apply)

    def _wake_all(self) -> None:
        for t in self._targets:
            if t.wake is not None:
                t.wake.set()
        if self._prom_wake is not None:
            self._prom_wake.set()

    # -- lifecycle ------------------------------------------------------------------------------
    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._thread_id = threading.get_ident()
            self._stopping = asyncio.Event()
            self._start_lock = asyncio.Lock()
            for t in self._targets:
                t.wake = asyncio.Event()
            self._prom_wake = asyncio.Event()
            if self._stop_requested:
                self._stopping.set()
        elif self._loop is not loop:
            raise RuntimeError("a Poller belongs to the event loop that first used it")

    async def _ensure_started(self) -> None:
        self._bind()
        assert self._start_lock is not None
        async with self._start_lock:
            if self._started:
                return
            self._started = True
            self._build_clients()
            if self.uses_prometheus:
                from modeldeck.core.promql import PromFleet

                assert self._prom_cfg is not None
                self._prom = PromFleet(self._prom_cfg, clock=self._clock)
                self._prom.breathe = self.breathe
                await self._discover(prefetch=True)
            await self._seed_history()
            await self._refresh_aliases(force=True)

    def _build_clients(self) -> None:
        hosts: dict[tuple[str, str, int | None], int] = {}
        for t in self._targets:
            if not t.cfg.url:
                continue
            for url in {t.cfg.url} if t.via else {t.cfg.url, t.cfg.metrics_url or t.cfg.url + "/metrics"}:
                k = host_key(url)
                hosts[k] = hosts.get(k, 0) + 1
        for k, n in hosts.items():
            self._clients[k] = Sender(k[0], n, fast=self.fast_http)
        for t in self._targets:
            self._build_requests(t)

    def _client(self, url: str) -> Sender:
        k = host_key(url)
        c = self._clients.get(k)
        if c is None:
            c = self._clients[k] = Sender(k[0], 1, fast=self.fast_http)
        return c

    def _build_requests(self, t: _Target) -> None:
        if not t.cfg.url:  # a Prometheus-only endpoint: nothing is asked of it directly
            return
        try:
            headers = t.cfg.resolved_headers()
            t.header_error = None
        except ModeldeckError as e:  # names the variable, never a value
            t.header_error = one_line(e, REASON_LIMIT)
            t.requests = {}
            return
        base = t.cfg.url.rstrip("/")
        client = self._client(base)
        urls = {key: base + path for key, path in t.paths.items()}
        builders = {key: client for key in urls}
        if not t.via:
            murl = t.cfg.metrics_url or base + "/metrics"
            urls["metrics"] = murl
            t.metrics_client = builders["metrics"] = self._client(murl)
        t.requests = _Requests(urls, builders, headers)
        t.client = client
        t.headers = headers  # only ever put into requests

    def _version_request(self, t: _Target, version: str) -> httpx.Request:
        key = f"version:{version}"
        r = t.requests.get(key)
        if r is None:
            base = t.cfg.url.rstrip("/")
            url = f"{base}{t.paths['metadata']}/versions/{quote(version, safe='')}/ready"
            r = self._client(base).build_request(url, t.headers)
            for old in [k for k in t.requests if k.startswith("version:")]:
                del t.requests[old]
            t.requests[key] = r
        return r

    async def run(self) -> None:
        """Poll every endpoint on its own schedule until :meth:`stop`; also refreshes the
        registry aliases every interval and stores snapshots every ``poll.store_interval``."""
        await self._ensure_started()
        assert self._stopping is not None
        self._running = True
        for t in self._targets:
            self._start_loop(t)
        tasks = [asyncio.ensure_future(self._alias_loop())]
        if self._prom is not None:
            tasks.append(asyncio.ensure_future(self._prom_loop()))
        if self.poll_settings.store_interval > 0:
            tasks.append(asyncio.ensure_future(self._store_loop()))
        try:
            await self._stopping.wait()
        finally:
            self._running = False
            loops = [t.task for t in self._targets if t.task is not None]
            for task in [*tasks, *loops]:
                task.cancel()
            await asyncio.gather(*tasks, *loops, return_exceptions=True)
            for t in self._targets:
                t.task = None
            self._stopping.clear()
            self._stop_requested = False
            if self.poll_settings.store_interval > 0:
                with contextlib.suppress(Exception):
                    await within(self.store_now(), 2.0)

    async def poll_once(self, skip: Collection[str] = ()) -> list[EndpointSnapshot]:
        """One cycle: every endpoint polled concurrently, metrics scraped whatever
        ``poll.metrics_interval`` says; returns the snapshots in config order. Takes about
        ``poll.timeout`` at most, however the endpoints behave. Rates need two cycles.
        Endpoints named in ``skip`` are not asked again (their latest snapshot is returned)."""
        await self._ensure_started()
        await self._refresh_aliases()
        skipped = set(skip) & set(self._latest)

        async def via_prometheus() -> None:
            await self._discover_and_refresh()  # publishes the snapshots of endpoints without a url
            await asyncio.gather(*(self._poll_target(t, True) for t in list(self._targets) if t.via and t.cfg.url))

        # Started a slice at a time: thousands of polls started in one go would spend seconds of
        # CPU before the loop saw any answer, and their timeouts would fire on answers that had
        # come (a refused connection reported as timed out).
        jobs: list[asyncio.Future[Any]] = []
        direct = [t for t in self._targets if not t.via and t.cfg.name not in skipped]
        for i in range(0, len(direct), START_SLICE):
            jobs += [asyncio.ensure_future(self._poll_target(t, True)) for t in direct[i:i + START_SLICE]]
            if i + START_SLICE < len(direct):
                await asyncio.sleep(0)
        if self._prom is not None:
            jobs.append(asyncio.ensure_future(via_prometheus()))
        await asyncio.gather(*jobs)
        with self._lock:  # in the order of configs(): discovery may have added or removed some
            return [self._latest[t.cfg.name] for t in self._targets if t.cfg.name in self._latest]

    async def aclose(self) -> None:
        """Stop, close the HTTP clients and the registry threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        tasks = [task for t in self._targets for task in (t.drift_task, t.quality_task) if task is not None]
        for task in tasks:
            task.cancel()
        if self._loop is not None:
            await asyncio.gather(*tasks, return_exceptions=True)
        for c in self._clients.values():
            with contextlib.suppress(Exception):
                await c.aclose()
        self._clients.clear()
        if self._prom is not None:
            with contextlib.suppress(Exception):
                await self._prom.aclose()
        self._reader.close()
        if self._writer is not None:
            self._writer.close()
        if self._drift_pool is not None:
            self._drift_pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- Prometheus ---------------------------------------------------------------------------------
    def _start_loop(self, t: _Target) -> None:
        """The endpoint's own polling loop, for endpoints asked anything directly (a url)."""
        if self._running and t.cfg.url and t.task is None:
            t.task = asyncio.ensure_future(self._endpoint_loop(t))

    async def _prom_loop(self) -> None:
        """Every interval: one Prometheus refresh for every endpoint read through it (and, every
        ``discover_interval``, the discovery first)."""
        loop = asyncio.get_running_loop()
        wake = self._prom_wake
        assert wake is not None
        last = -math.inf
        while True:
            now = loop.time()
            if self._prom_forced or (not self._paused and now - last >= self._interval):
                self._prom_forced = False
                last = now
                try:
                    await self._discover_and_refresh()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug: never let it stop the watching
                    log.exception("prometheus refresh failed")
                continue
            wake.clear()
            handle = None if self._paused else loop.call_at(last + self._interval, wake.set)
            try:
                await wake.wait()
            finally:
                if handle is not None:
                    handle.cancel()

    async def _discover_and_refresh(self) -> None:
        """Discovery (when due) and the refresh of the endpoints known, at the same time: the
        refresh does not wait for the discovery's round trip (endpoints it adds are read at the
        next refresh), except the first time."""
        from modeldeck.core.promql import gc_paused

        # the collector off for the whole refresh (about a third of a second at 5,000 endpoints),
        # not only for its parts: each collection in between walked every young series and snapshot
        # again (measured: 50 collections, 30 ms of a 320 ms refresh)
        with gc_paused():
            if any(t.via for t in self._targets):
                await asyncio.gather(self._maybe_discover(), self._prom_refresh())
            else:
                await self._maybe_discover()
                await self._prom_refresh()

    async def _prom_refresh(self) -> None:
        """Read every Prometheus-backed endpoint (one query per quantity per profile); publish the
        snapshots of those without a url (the others publish from their own polls)."""
        if self._prom is None:
            return
        loop = asyncio.get_running_loop()
        targets = [t for t in self._targets if t.via]
        if not targets:
            return
        taken_at = self._clock()
        start = loop.time()
        self._breathed = 0.0
        readings = await self._prom.refresh([t.cfg for t in targets])
        self.prom_refresh_ms = (loop.time() - start) * 1000.0
        duration_ms = self.prom_refresh_ms
        # (the collector is off: _discover_and_refresh pauses it for the whole refresh)
        for i, t in enumerate(targets):
            if i % BREATHE_EVERY == BREATHE_EVERY - 1:
                await self.breathe()
            self._apply_prom(t, readings.get(t.cfg.name))
        for i, t in enumerate(targets):
            if i % BREATHE_EVERY == BREATHE_EVERY - 1:
                await self.breathe()
            if t.cfg.url or t.cfg.name not in self._latest:
                continue
            t.polls += 1
            self._publish(self._snapshot(t, taken_at, duration_ms, self._prom_health(t)))

    async def breathe(self) -> None:
        """Wait while :attr:`busy` says so (sleeping, so another thread runs unhindered), up to
        BREATHE_MAX seconds in all per refresh; at once when nothing is busy."""
        busy = self.busy
        while busy is not None and self._breathed < BREATHE_MAX and busy():
            await asyncio.sleep(BREATHE_STEP)
            self._breathed += BREATHE_STEP

    def _apply_prom(self, t: _Target, r: Any) -> None:
        t.prom = r
        if r is None:
            return
        # no metrics_profile: the one promql detected (unknown until then)
        t.profile = PROFILES.get((t.cfg.metrics_profile or r.profile or "").lower())
        if r.error:
            t.metrics_error = one_line(r.error, REASON_LIMIT)
            t.metrics_note = None
            t.rates = None
            return
        t.metrics_error = r.problem
        notes = list(r.notes)
        if not r.found and (r.up is not None or t.cfg.url):
            notes.insert(0, f"no {t.profile.name if t.profile else ''} series in Prometheus for the model yet")
        t.metrics_note = "; ".join(notes) or None
        t.rates = Rates(window=r.window, request_rate=r.request_rate, error_ratio=r.error_ratio,
                        p50_ms=r.p50_ms, p95_ms=r.p95_ms, p99_ms=r.p99_ms, mean_ms=r.mean_ms,
                        requests=(r.request_rate or 0.0) * r.window)
        t.rates_at = asyncio.get_running_loop().time() - (r.age or 0.0)
        t.prom_versions = r.versions

    def _prom_health(self, t: _Target) -> _Health:
        """What Prometheus knows of an endpoint's health (no url: nothing is asked of it)."""
        r = t.prom
        h = _Health(versions=())
        if r is None or r.error:
            return h  # unknown: the metrics error says why (DEGRADED)
        h.versions = r.versions
        if r.up is False:
            age = f", newest sample {duration(r.age)} old" if r.age is not None else ""
            h.down = f"prometheus: scrape target down (up = 0{age})"
            h.live = False
            return h
        if not r.found and r.up is None:
            sel = one_line(t.cfg.selector or "{}", 80)
            h.down = f"no series in Prometheus match {sel}"
            return h
        window = self._prom_cfg.window_seconds if self._prom_cfg is not None else 60.0
        if r.age is not None and r.age > max(window, 3 * self._interval):
            h.note = f"prometheus: no fresh samples (newest {duration(round(r.age))} old)"
        if r.up:
            h.live = h.ready = True
        if r.found:
            h.model_ready = True
        return h

    async def _maybe_discover(self) -> None:
        if self._prom is None or not self.settings.discover or self._prom_cfg is None:
            return
        if asyncio.get_running_loop().time() - self._discover_at >= self._prom_cfg.discover_interval:
            await self._discover()

    async def _discover(self, prefetch: bool = False) -> None:
        """Refresh the endpoints of every ``[[discover]]`` block. A block whose query fails keeps
        its endpoints (and says why in :attr:`discover_errors`); endpoints no longer found show
        DOWN "no longer reported by Prometheus" for ``vanished_after`` seconds, then go.

        The blocks' queries go out together; their answers are taken in the blocks' order (the
        earlier block owns a name both make), each as soon as it and those before it are in.
        ``prefetch`` (a refresh follows at once): when a profile's last block is taken, that
        profile's queries are sent (PromFleet.prefetch) while the next blocks are taken."""
        blocks = self.settings.discover
        if self._prom is None or not blocks or self._prom_cfg is None:
            return
        loop = asyncio.get_running_loop()
        self._discover_at = loop.time()
        tasks = [asyncio.ensure_future(self._prom.discover(b)) for b in blocks]
        try:
            await self._take_discovered(blocks, tasks, prefetch)
        finally:
            for task in tasks:
                task.cancel()
        self._fit_history()

    async def _take_discovered(self, blocks: Sequence[DiscoverConfig], tasks: Sequence[asyncio.Future[Any]],
                               prefetch: bool) -> None:
        from modeldeck.core.promql import PromError

        assert self._prom is not None and self._prom_cfg is not None
        loop = asyncio.get_running_loop()
        configured = {e.name for e in self.settings.endpoints}
        by_name = {t.cfg.name: t for t in self._targets}
        taken = set(configured)
        last_of = {b.profile.lower(): i for i, b in enumerate(blocks)}
        # a prefetch must be for exactly the endpoints the refresh groups under the profile:
        # not when some endpoint's profile is detected at the refresh
        prefetch = prefetch and all(t.cfg.metrics_profile for t in self._targets if t.via)
        for i, (block, task) in enumerate(zip(blocks, tasks)):
            try:
                found = await task
            except asyncio.CancelledError:
                raise
            except Exception as e:
                found = e
            now = loop.time()
            if isinstance(found, BaseException):
                msg = str(found) if isinstance(found, PromError) else one_line(f"prometheus: {found}", REASON_LIMIT)
                if self._discover_errors.get(block.name) != msg:
                    log.warning("discover %s: %s", one_line(block.name, 40), msg)
                self._discover_errors[block.name] = msg
                taken |= {t.cfg.name for t in self._targets if t.cfg.discovered == block.name}
            else:
                await self._take_block(block, found, taken, by_name, now)
            profile = block.profile.lower()
            if prefetch and last_of[profile] == i:
                self._prom.prefetch(profile, [t.cfg for t in self._targets if t.via
                                              and (t.cfg.metrics_profile or "").lower() == profile])
                await asyncio.sleep(0)  # the queries start out before the next block is taken

    async def _take_block(self, block: DiscoverConfig, found: Sequence[EndpointConfig], taken: set[str],
                          by_name: Mapping[str, _Target], now: float) -> None:
        """The endpoints one block found: added, updated, or (not found) vanishing, then gone."""
        assert self._prom_cfg is not None
        self._discover_errors.pop(block.name, None)
        names = set()
        for k, cfg in enumerate(found):
            if k % BREATHE_EVERY == BREATHE_EVERY - 1:
                await asyncio.sleep(0)  # other work of this loop (queries sent by a prefetch) goes on
            if cfg.name in taken:
                continue
            taken.add(cfg.name)
            names.add(cfg.name)
            t = by_name.get(cfg.name)
            if t is None:
                self._add_target(cfg)
            elif t.cfg.discovered == block.name:
                t.vanished_at = None
                if t.cfg is not cfg and t.cfg != cfg:
                    self._replace_config(t, cfg)
        gone = []
        for t in self._targets:
            if t.cfg.discovered != block.name or t.cfg.name in names:
                continue
            if t.vanished_at is None:
                t.vanished_at = now
                log.info("discover %s: %s is no longer reported", one_line(block.name, 40),
                         one_line(t.cfg.name, 60))
            if now - t.vanished_at >= self._prom_cfg.vanished_after:
                gone.append(t)
            else:
                taken.add(t.cfg.name)
        if gone:
            self._remove_targets(gone)

    def _history_len(self) -> int:
        """Snapshots kept per endpoint: ``poll.history``, fewer for a large discovered fleet (a
        budget of HISTORY_BUDGET in all, at least MIN_HISTORY each: 5,000 endpoints x 300
        snapshots would be gigabytes)."""
        n = max(1, self.poll_settings.history)
        if not self.settings.discover:
            return n
        return max(1, min(n, max(MIN_HISTORY, HISTORY_BUDGET // max(1, len(self._targets)))))

    @property
    def history_note(self) -> str | None:
        """One line when a large discovered fleet keeps fewer snapshots per endpoint than
        ``poll.history`` (the HISTORY_BUDGET in memory), or more than the budget in all (at least
        MIN_HISTORY each); else None. Shown by the fleet screen and logged when it changes."""
        want = max(1, self.poll_settings.history)
        n = len(self._targets)
        cap = self._history_len()
        if not self.settings.discover or cap >= want:
            return None
        if n * cap > HISTORY_BUDGET:
            return (f"history: {n:,} endpoints x {cap} snapshots = {n * cap:,} in memory, over the "
                    f"{HISTORY_BUDGET:,} budget (poll.history {want}; sparklines cover {cap} polls)")
        return (f"history: {cap} snapshots kept per endpoint, not poll.history {want}, for {n:,} endpoints "
                f"(at most {HISTORY_BUDGET:,} in memory)")

    def _fit_history(self) -> None:
        note = self.history_note
        if note != self._history_logged:
            self._history_logged = note
            if note:
                log.warning("%s", note)
        cap = self._history_len()
        with self._lock:
            for name, h in self._history.items():
                if h.maxlen is not None and h.maxlen > cap:
                    self._history[name] = deque(h, maxlen=cap)
            for name, qh in self._quality_history.items():
                if qh.maxlen is not None and qh.maxlen > cap:
                    self._quality_history[name] = deque(qh, maxlen=cap)

    def _add_target(self, cfg: EndpointConfig) -> None:
        t = _Target(cfg, len(self._targets), self._rate_window)
        t.wake = asyncio.Event()
        self._build_requests(t)
        with self._lock:
            self._targets.append(t)
            self._configs = None
            self._latest[cfg.name] = EndpointSnapshot.pending(cfg)
            self._history[cfg.name] = deque(maxlen=self._history_len())
            self._quality_history[cfg.name] = deque(maxlen=self._history_len())
        self._start_loop(t)

    def _replace_config(self, t: _Target, cfg: EndpointConfig) -> None:
        if t.task is not None:
            t.task.cancel()
            t.task = None
        with self._lock:
            t.cfg = cfg
            self._configs = None
        t.served = cfg.served_model or cfg.model
        t.requests = {}
        self._build_requests(t)
        self._start_loop(t)

    def _remove_targets(self, gone: list[_Target]) -> None:
        drop = {id(t) for t in gone}
        for t in gone:
            if t.task is not None:
                t.task.cancel()
                t.task = None
        with self._lock:
            self._targets = [x for x in self._targets if id(x) not in drop]
            self._configs = None
            for t in gone:
                self._latest.pop(t.cfg.name, None)
                self._history.pop(t.cfg.name, None)
                self._quality_history.pop(t.cfg.name, None)
        for t in gone[:20]:
            log.info("endpoint %s removed (no longer reported by Prometheus)", one_line(t.cfg.name, 60))
        if len(gone) > 20:
            log.info("%d more endpoints removed (no longer reported by Prometheus)", len(gone) - 20)

    # -- scheduling -------------------------------------------------------------------------------
    def _delay(self, t: _Target) -> float:
        """Seconds from one poll's start to the next: the interval, or backoff when down."""
        iv = self._interval
        if t.down_streak <= 1:
            return iv
        cap = max(iv, self.poll_settings.max_backoff)
        return min(cap, iv * 2 ** min(t.down_streak - 1, 30))

    async def _endpoint_loop(self, t: _Target) -> None:
        loop = asyncio.get_running_loop()
        assert t.wake is not None
        while True:
            now = loop.time()
            due = t.last_start + self._delay(t)
            if t.forced or (not self._paused and now >= due):
                first = t.last_start == -math.inf
                # Keep to the schedule's grid when a little late (a busy loop), so an endpoint is
                # still polled once per interval; start a new grid when forced or far behind.
                t.last_start = due if (not t.forced and not first and now - due < self._interval) else now
                t.forced = False
                await self._poll_target(t)
                if first and len(self._targets) > 1:
                    # Every endpoint is polled at once the first time (a quick first view);
                    # then their phases spread over the interval, so the fleet is polled
                    # evenly rather than in one burst a second.
                    t.last_start = now - self._interval + self._interval * t.index / len(self._targets)
                continue
            t.wake.clear()
            handle = None if self._paused else loop.call_at(due, t.wake.set)
            try:
                await t.wake.wait()
            finally:
                if handle is not None:
                    handle.cancel()

    async def _poll_target(self, t: _Target, every_metrics: bool = False) -> EndpointSnapshot:
        """Poll ``t`` (or join its poll in flight) and publish the snapshot. ``every_metrics``
        scrapes the metrics whether or not ``poll.metrics_interval`` has passed."""
        if t.inflight is not None:
            return await asyncio.shield(t.inflight)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[EndpointSnapshot] = loop.create_future()
        t.inflight = fut
        try:
            snap = await self._poll(t, every_metrics)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as e:  # a bug: never let it stop the polling
            log.exception("endpoint %s: poll failed", t.cfg.name)
            snap = self._snapshot(t, time.time(), 0.0, _Health(down=f"internal error: {one_line(e, 80)}"))
        finally:
            t.inflight = None
        fut.set_result(snap)
        self._publish(snap)
        return snap

    def _publish(self, snap: EndpointSnapshot) -> None:
        with self._lock:
            self._latest[snap.endpoint] = snap
            self._history[snap.endpoint].append(snap)
        cb = self.on_snapshot
        if cb is not None:
            try:
                cb(snap)
            except Exception:
                log.exception("on_snapshot callback failed")

    # -- one poll -----------------------------------------------------------------------------------
    async def _poll(self, t: _Target, every_metrics: bool = False) -> EndpointSnapshot:
        loop = asyncio.get_running_loop()
        taken_at = self._clock()
        start = loop.time()
        if t.header_error is not None or not t.requests:
            self._build_requests(t)  # a variable may have been set since
        if t.header_error is not None:
            t.down_streak += 1
            return self._snapshot(t, taken_at, 0.0, _Health(down=t.header_error))
        alias = self._aliases.get((t.cfg.model, t.cfg.environment))
        if t.alias_seen is not False and alias != t.alias_seen:
            t.need_full = True  # a release moved the alias: the served version may change
        t.alias_seen = alias
        full = (t.need_full or t.since_full >= self.metadata_every or t.restarted_pending
                or (alias is not None and t.versions and str(alias) not in t.versions))
        mi = self.poll_settings.metrics_interval or self._interval
        metrics_due = not t.via and (every_metrics or t.metrics_last is None or start - t.metrics_last >= 0.9 * mi)
        # The first poll, and a poll of an endpoint that was down with its metrics failing too,
        # scrape metrics only once health answered: an endpoint that is (or stays) down costs one
        # connection attempt a poll, not two (10,000 refused endpoints: seconds of CPU).
        after_health = metrics_due and (t.polls == 0 or bool(t.down_streak and t.metrics_error))
        health = _Health()
        jobs: list[Coroutine[Any, Any, Any]] = [self._health(t, full, str(alias) if alias is not None else None,
                                                             health)]
        if metrics_due and not after_health:
            t.metrics_last = start
            jobs.append(self._metrics(t))
        await asyncio.gather(*jobs)
        if after_health and not health.down:
            t.metrics_last = start
            await self._metrics(t)
        t.polls += 1
        t.since_full = 1 if full else t.since_full + 1
        duration_ms = (loop.time() - start) * 1000.0
        if health.down:
            t.down_streak += 1
            t.need_full = True
        else:
            t.down_streak = 0
            t.need_full = health.note is not None  # server not ready: ask again next time
            if full:
                t.restarted_pending = False
        snap = self._snapshot(t, taken_at, duration_ms, health)
        if t.cfg.capture and self.poll_settings.drift_every and t.polls % self.poll_settings.drift_every == 0:
            self._start_drift(t, snap)
        every = self.poll_settings.quality_every
        if t.cfg.capture and t.cfg.labels and every and (t.polls - 1) % every == 0:  # the first poll, then every N
            self._start_quality(t, snap)
        return snap

    async def _health(self, t: _Target, full: bool, alias: str | None, h: _Health) -> None:
        """Health, readiness and (on full polls) metadata, one request after the other on one
        kept-alive connection, each with ``poll.timeout``, stopping at the first failure: a
        hung or refusing server costs one timeout at most; a slow one that answers every
        request within the timeout is not down. (Sending a full poll's requests at once costs
        a connection each, and measured markedly more CPU across 200 endpoints.)"""
        timeout = self.poll_settings.timeout
        limit = self.poll_settings.max_body_bytes
        client = t.client
        assert client is not None

        async def get(request: httpx.Request) -> Answer:
            try:
                return await within(fetch(client, request, limit), timeout)
            except asyncio.TimeoutError:
                return Answer(error=f"timed out after {duration(timeout)}", timed_out=True)

        req = t.requests
        paths = t.paths
        if full:
            live = await get(req["live"])
            if live.error:
                h.live = None if live.timed_out else False
                h.down = live.error if live.status is None else f"{paths['live']}: {live.error}"
                return
            h.live = live.status == 200
            if not h.live:
                h.down = f"{paths['live']} answered {live.status}"
                return
            ready = await get(req["ready"])
            if ready.error:
                h.down = ready.error if ready.status is None else f"{paths['ready']}: {ready.error}"
                return
            h.ready = ready.status == 200
            if not h.ready:
                h.note = f"server not ready ({paths['ready']} answered {ready.status})"
        if not self._judge_model_ready(t, h, await get(req["model_ready"])) or not full:
            return
        meta = await get(req["metadata"])
        if meta.error:
            h.down = f"model metadata: {meta.error}" if meta.status is not None else meta.error
            return
        if meta.status != 200:
            h.down = f"{paths['metadata']} answered {meta.status}"
            return
        versions = _metadata_versions(meta.body)
        if isinstance(versions, str):
            h.down = versions
            return
        h.versions = versions
        if versions or alias is None:
            return
        a = await get(self._version_request(t, alias))
        if a.status == 200 and not a.error:
            h.probed = alias
        else:
            h.unconfirmed = (alias, str(a.status) if a.status is not None else (a.error or "no answer"))

    def _judge_model_ready(self, t: _Target, h: _Health, a: Answer) -> bool:
        path = t.paths["model_ready"]
        if a.error:
            h.down = a.error if a.status is None else f"{path}: {a.error}"
            if a.status is None and not a.timed_out and h.live is None:
                h.live = False
            return False
        if h.live is None:
            h.live = True  # it answered
        h.model_ready = a.status == 200
        if h.model_ready:
            return True
        if a.status == 404:
            h.down = f"model {one_line(t.served, 40)} is not loaded ({path} answered 404)"
        else:
            h.down = f"{path} answered {a.status}"
        return False

    async def _metrics(self, t: _Target) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.poll_settings.timeout
        try:
            a = await within(fetch(t.metrics_client, t.requests["metrics"],
                                     self.poll_settings.max_metrics_bytes), timeout)
        except asyncio.TimeoutError:
            a = Answer(error=f"timed out after {duration(timeout)}")
        at = loop.time()
        if a.error or a.status != 200:
            t.metrics_error = (f"metrics: {a.error}" if a.error else
                               f"metrics: {urlsplit(t.cfg.metrics_url).path or '/'} answered {a.status}")
            t.rates = None  # unknown now; the next good reading compares with the last good one
            return
        profile = t.cfg.metrics_profile
        try:
            if len(a.body) > LARGE_METRICS:
                reading, used = await loop.run_in_executor(
                    None, lambda: read_metrics(a.body, model=t.served, at=at, profile=profile))
            else:
                reading, used = read_metrics(a.body, model=t.served, at=at, profile=profile)
        except MetricsError as e:
            t.metrics_error = one_line(e, REASON_LIMIT)
            t.rates = None
            return
        t.metrics_error = None
        if reading is None:
            t.metrics_note = "no known model-server metrics (set metrics_profile)"
            t.rates = None
            t.profile = None
            return
        t.profile = used
        if not reading.found:
            t.metrics_note = f"no {reading.profile} metrics at the metrics URL"
        else:  # kserve's own server counts no failures: the error ratio is unknown, and said so
            t.metrics_note = ERRORS_UNREPORTED.get(used.name) if reading.errors is None else None
        rates = t.window.add(reading)
        if rates is not None:
            t.rates = rates
            t.rates_at = at
            if rates.restarted:
                t.restarted_pending = True

    # -- judging ----------------------------------------------------------------------------------
    def _snapshot(self, t: _Target, taken_at: float, duration_ms: float, h: _Health) -> EndpointSnapshot:
        cfg = t.cfg
        th: Thresholds = cfg.thresholds
        alias = self._aliases.get((cfg.model, cfg.environment))
        registry_version = str(alias) if alias is not None else None
        if h.versions is not None:
            t.versions = h.versions or ((h.probed,) if h.probed else ())
            t.unconfirmed = h.unconfirmed
        if h.live is not None:
            t.live = h.live
        if h.ready is not None:
            t.ready = h.ready  # else: the last known server readiness carries over
        if t.vanished_at is not None:
            h.down = "no longer reported by Prometheus"
        served_versions = t.versions or t.prom_versions
        served = judge.served_version(registry_version, served_versions)
        rates = t.rates
        restarted = bool(rates and rates.restarted and t.rates_at is not None
                         and t.metrics_last is not None and t.rates_at >= t.metrics_last)
        unconfirmed = t.unconfirmed if (not served_versions and t.unconfirmed
                                        and t.unconfirmed[0] == registry_version) else None
        missing = None
        notes = []
        if unconfirmed:
            route = f"{t.paths['metadata']}/versions/{registry_version}/ready"
            if unconfirmed[1] == "404":
                missing = (f"does not serve version {registry_version}, the {one_line(cfg.environment, 24)} "
                           f"alias ({route}: 404)")
            elif unconfirmed[1] == "501":  # KServe: versions null, the route not implemented
                notes.append(f"version unknown: the server reports none ({route} answered 501)")
            else:
                notes.append(f"version {registry_version} not confirmed ({route}: {one_line(unconfirmed[1], 40)})")
        if t.metrics_note:
            notes.append(t.metrics_note)
        status, reason = judge.status(
            down=h.down, environment=cfg.environment, registry_version=registry_version,
            served_versions=served_versions, error_ratio=rates.error_ratio if rates else None,
            p95_ms=rates.p95_ms if rates else None, th=th, not_ready=h.note, missing_version=missing,
            metrics_error=t.metrics_error, notes=notes)
        if restarted and status != DOWN:
            reason = one_line(reason + "; restarted (counters reset)", REASON_LIMIT)
        if reason and t.headers:  # an answer quoted in a reason never shows the endpoint's header values
            reason = _redactor(t)(reason)
        now = asyncio.get_running_loop().time() if self._loop is not None else None
        return EndpointSnapshot(
            endpoint=cfg.name, model=cfg.model, environment=cfg.environment, taken_at=taken_at,
            duration_ms=round(duration_ms, 3), status=status, reason=reason,
            live=h.live if h.live is not None else t.live,
            ready=False if h.live is False else t.ready,
            model_ready=False if h.live is False else h.model_ready,
            served_version=served, served_versions=served_versions, registry_version=registry_version,
            request_rate=rates.request_rate if rates else None,
            error_ratio=rates.error_ratio if rates else None,
            latency_p50_ms=rates.p50_ms if rates else None, latency_p95_ms=rates.p95_ms if rates else None,
            latency_p99_ms=rates.p99_ms if rates else None, latency_mean_ms=rates.mean_ms if rates else None,
            profile=t.profile.name if t.profile else None, restarted=restarted, drift=t.drift, quality=t.quality,
            metrics_window=rates.window if rates else None,
            version_rates=rates.by_version if rates else (),
            metrics_age=(now - t.rates_at) if (rates and now is not None and t.rates_at is not None) else None,
        )

    # -- registry -----------------------------------------------------------------------------------
    def _registry_warning(self, what: str, e: BaseException) -> None:
        msg = f"{what}: {one_line(e, 200)}"
        if msg not in self._registry_warned:
            self._registry_warned.add(msg)
            log.warning("registry %s", msg)

    async def _refresh_aliases(self, *, force: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if self._fixed_aliases or (not force and loop.time() - self._aliases_at < 0.5 * self._interval):
            return
        self._aliases_at = loop.time()
        if self._mlflow is None and not self.registry_path.exists():
            return
        limit = max(1.0, self.poll_settings.timeout)
        if self._mlflow is not None:  # a model search, and a read per outside move found
            limit = max(limit, 2 * self._mlflow.timeout + 1.0)
        try:
            self._aliases = await within(self._reader.call(lambda r: r.all_aliases()), limit)
            self.registry_fault = None
        except asyncio.TimeoutError:
            what = "MLflow" if self._mlflow is not None else "the registry"
            self.registry_fault = f"{what} did not answer the alias poll within {limit:g} s (last known aliases kept)"
            self._registry_warning("aliases", TimeoutError(self.registry_fault))
        except (ModeldeckError, OSError) as e:
            self.registry_fault = one_line(e, 300)
            self._registry_warning("aliases", e)

    async def _alias_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._refresh_aliases()

    async def _seed_history(self) -> None:
        if not self._targets or not self.registry_path.exists():
            return
        from modeldeck.core.promql import gc_paused

        names = [t.cfg.name for t in self._targets]
        limit = max(1, self.poll_settings.history)

        def load(r: Any) -> dict[str, list[dict[str, Any]]]:
            with gc_paused():  # 100,000 rows of a large fleet: no cycles, many objects
                return {n: r.snapshots(n, limit=limit) for n in names}

        try:
            rows = await within(self._reader.call(load), 5.0)
        except asyncio.TimeoutError:
            self._registry_warning("history", TimeoutError("the registry did not answer in time"))
            return
        except (RegistryError, OSError) as e:
            self._registry_warning("history", e)
            return
        # made before taking the lock the screens read under (5,000 endpoints x 20 rows: seconds)
        seeded: list[tuple[str, list[EndpointSnapshot]]] = []
        with gc_paused():
            for name, items in rows.items():
                snaps = []
                for d in items:
                    try:
                        snaps.append(EndpointSnapshot.from_dict({**d, "source": "stored"}))
                    except Exception:  # a row from another version: skip it
                        continue
                seeded.append((name, snaps))
        with self._lock:
            for name, snaps in seeded:
                h = self._history.get(name)
                if h is None:  # gone while the rows were read
                    continue
                qh = self._quality_history.get(name)
                for snap in snaps:
                    h.append(snap)
                    q = snap.quality  # each measurement once (snapshots repeat it until the next)
                    if q is not None and qh is not None and (not qh or qh[-1].computed_at != q.computed_at):
                        qh.append(QualityPoint.of(q))

    async def store_now(self) -> int:
        """Write the newest snapshot of each endpoint (if not written yet) to the registry.
        Runs in the writer thread; returns the rows written (0 when the registry was busy or
        failed: logged, and retried next time)."""
        self._bind()
        if self._writer is None:
            self._writer = _RegistryThread(self.registry_path, create=True, name="registry-write")
        with self._lock:
            snaps = [s for s in self._latest.values()
                     if s.status != PENDING and s.source == "live" and s.taken_at > self._stored_at.get(s.endpoint, 0)]
        if not snaps:
            return 0
        rows = [(s.endpoint, utc_iso(s.taken_at), s.to_dict(drift_result=False)) for s in snaps]
        retention = self.poll_settings.retention_hours or None
        source = self.source
        try:
            n = await self._writer.call(lambda r: r.store_snapshots(rows, source=source,
                                                                     retention_hours=retention))
        except (RegistryError, OSError) as e:
            self._registry_warning("store", e)
            return 0
        for s in snaps:
            self._stored_at[s.endpoint] = s.taken_at
        return int(n)

    async def _store_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_settings.store_interval)
            try:
                await self.store_now()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("storing snapshots failed")

    # -- drift ------------------------------------------------------------------------------------
    def _start_drift(self, t: _Target, snap: EndpointSnapshot) -> None:
        if t.drift_task is not None and not t.drift_task.done():
            return
        task = asyncio.ensure_future(self._drift(t, judge.drift_version(snap)))
        t.drift_task = task

    async def _drift(self, t: _Target, version: str | None) -> None:
        cfg = t.cfg
        now = self._clock
        try:
            reference = None
            if version is not None and version.isdigit():  # else window_drift says what is wrong
                key = (cfg.model, version)
                if key not in self._references:
                    try:
                        self._references[key] = await self._reader.call(
                            lambda r: r.version(cfg.model, int(version)).reference_path)
                    except RegistryError as e:
                        t.drift = DriftSummary(error=one_line(e, 120), computed_at=now(), version=version)
                        return
                    while len(self._references) > 256:
                        self._references.pop(next(iter(self._references)))
                reference = self._references[key]
            from modeldeck.core import drift as drift_mod

            t.drift = await self._in_drift_pool(
                lambda: drift_mod.window_drift(version, reference, cfg.capture or "", self.poll_settings.drift_window,
                                               drift_share=cfg.thresholds.drift_share, histograms=True,
                                               current_name=f"capture of {cfg.name}", computed_at=now,
                                               max_bytes=self.poll_settings.max_capture_bytes))
        except asyncio.CancelledError:
            raise
        except ImportError as e:
            t.drift = DriftSummary(error=f"drift is not available: {one_line(e, 80)}", computed_at=now(),
                                   version=version)
        except Exception as e:
            log.info("endpoint %s: drift failed: %s", cfg.name, one_line(e, 200))
            t.drift = DriftSummary(error=one_line(e, 120), computed_at=now(), version=version)

    # -- quality ----------------------------------------------------------------------------------
    def _start_quality(self, t: _Target, snap: EndpointSnapshot) -> None:
        if t.quality_task is not None and not t.quality_task.done():
            return
        t.quality_task = asyncio.ensure_future(self._quality(t, judge.drift_version(snap)))

    async def _quality(self, t: _Target, version: str | None) -> None:
        cfg = t.cfg
        now = self._clock
        try:
            from modeldeck.core import quality as quality_mod

            key = (cfg.model, version)
            cached = self._quality_bases.get(key)
            if cached is None or time.monotonic() - cached[0] > QUALITY_BASE_TTL:
                settings = self.settings

                def read(r: Any) -> Any:
                    return (quality_mod.rules_for(r, settings, cfg.model),
                            quality_mod.registered(r, cfg.model, version))

                try:
                    base = await self._reader.call(read)
                except ModeldeckError as e:
                    base = (self.settings.model(cfg.model), None)
                    log.info("endpoint %s: quality is not judged: %s", cfg.name, one_line(e, 200))
                self._quality_bases[key] = (time.monotonic(), base)
                while len(self._quality_bases) > 256:
                    self._quality_bases.pop(next(iter(self._quality_bases)))
            mc, registered = self._quality_bases[key][1]
            scan, timeout = self.poll_settings.quality_scan, max(1.0, self.poll_settings.timeout)
            t.quality = await self._in_drift_pool(
                lambda: quality_mod.endpoint_quality(cfg, mc, registered, version, scan=scan, timeout=timeout,
                                                     clock=now))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never the poller's end: the summary says why
            log.info("endpoint %s: quality failed: %s", cfg.name, one_line(e, 200))
            t.quality = QualitySummary(computed_at=now(), version=version,
                                       error=one_line(f"{type(e).__name__}: {e}", 200))
        point = QualityPoint.of(t.quality)
        with self._lock:
            qh = self._quality_history.get(cfg.name)
            if qh is not None:
                qh.append(point)

    async def _in_drift_pool(self, fn: Callable[[], T]) -> T:
        if self._drift_pool is None:
            self._drift_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="modeldeck-drift")
        return await asyncio.get_running_loop().run_in_executor(self._drift_pool, fn)


# ---------------------------------------------------------------------------------------------
# helpers


def _redactor(t: _Target) -> Any:
    from modeldeck.core.hooks import Redactor

    key = tuple(sorted(t.headers.items()))
    cached = getattr(t, "_redact", None)
    if cached is None or cached[0] != key:
        cached = (key, Redactor(v for k, v in t.headers.items() if k.lower() not in ("accept", "user-agent")))
        t._redact = cached  # type: ignore[attr-defined]
    return cached[1]


def _metadata_versions(body: bytes) -> tuple[str, ...] | str:
    """The served versions from OIP model metadata, or the reason it is unusable. Entries with
    a '/' are MLServer's dependency versions ("sklearn/1.5.0"), not model versions."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "model metadata is not JSON"
    if not isinstance(data, dict):
        return "model metadata is not a JSON object"
    raw = data.get("versions") or []
    if not isinstance(raw, list):
        raw = [raw]
    out = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            continue
        s = str(v).strip()
        if s and "/" not in s and s not in out:
            out.append(one_line(s, 40))
    return tuple(out)
