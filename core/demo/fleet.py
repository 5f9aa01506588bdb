"""The demo fleet: model servers, a registry they follow, traffic with a story, and the config
that points modeldeck at all of it.

In-process: ``Fleet(workdir, registry=None, settings=FleetSettings())``; ``start()``,
``write_config(path)``, ``stop()``. Headless, until SIGTERM or ctrl+c:
``main(write_config, registry, on_ready=...)``, the body of ``modeldeck demo-fleet`` (whose
command line prints the ready line). As a child process, for the TUI and tests:
``start_subprocess(workdir, registry=None)`` runs ``python -P -m modeldeck demo-fleet ...`` and
returns a ``DemoFleetProcess`` once the fleet printed its ready line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeck.core import paths
from modeldeck.core.demo import seed
from modeldeck.core.demo.datasets import WORLDS, evaluate_script, train_script
from modeldeck.core.demo.models import ArtifactError, LoadedVersion, load_version
from modeldeck.core.demo.recorder import RotatingJsonl
from modeldeck.core.demo.seed import DemoError
from modeldeck.core.demo.server import DemoServer, ErrorScenario
from modeldeck.core.demo.traffic import Scenario, TrafficStream
from modeldeck.core.errors import ModeldeckError
from modeldeck.core.registry import Registry

log = logging.getLogger("modeldeck.demo")

READY_PREFIX = "modeldeck demo fleet ready: config "


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    model: str
    environment: str
    rate: float  # requests per second
    drifts: bool = False  # its inputs shift when the scenario's drift time comes
    errors: bool = False  # its error ratio rises when the scenario's error time comes


DEFAULT_ENDPOINTS: tuple[EndpointSpec, ...] = (
    EndpointSpec("churn-prod", "churn", "production", 40.0, drifts=True),
    EndpointSpec("churn-staging", "churn", "staging", 5.0, drifts=True),
    EndpointSpec("fraud-prod", "fraud", "production", 15.0, errors=True),
    EndpointSpec("demand-prod", "demand", "production", 10.0),
)

# The release gates the written config carries (MLflow MetricThreshold semantics).
GATES: dict[str, list[dict[str, Any]]] = {
    "churn": [{"metric": "auc", "threshold": 0.8},
              {"metric": "auc", "min_absolute_change": -0.03, "greater_is_better": True}],
    "fraud": [{"metric": "auc", "threshold": 0.75},
              {"metric": "auc", "min_absolute_change": -0.02, "greater_is_better": True}],
    "demand": [{"metric": "r2", "threshold": 0.8},
               {"metric": "rmse", "min_absolute_change": -1.0, "greater_is_better": False}],
}


@dataclass(frozen=True)
class FleetSettings:
    drift_at: float = 10.0  # seconds after ready when the drifting endpoints' inputs shift (<0: never)
    errors_at: float = 15.0  # seconds after ready when the degraded endpoint starts failing (<0: never)
    error_rate: float = 0.3  # share of its inferences that fail then
    rate_scale: float = 1.0  # multiplies every endpoint's request rate (0: no traffic)
    seed: int = 0
    registry_poll: float = 0.5  # seconds between looks at the registry's aliases
    poll_interval: float = 1.0  # the [poll] interval written to the config
    label_delay: float = 4.0  # seconds from an answer to its label (delayed ground truth)
    capture_records: int = 1000  # records per capture file before it rotates
    capture_keep: int = 6  # capture files kept per endpoint
    ready_timeout: float = 30.0
    endpoints: tuple[EndpointSpec, ...] = DEFAULT_ENDPOINTS
    rates: tuple[tuple[str, float], ...] = ()  # (endpoint, requests/s) overrides, before rate_scale
    mlflow_url: str | None = None  # an MLflow tracking server as the registry of record ([mlflow])

    @property
    def mlflow(self) -> Any:
        """The [mlflow] settings the fleet and its config use (None: the ledger alone)."""
        if not self.mlflow_url:
            return None
        from modeldeck.core.config import MlflowSettings

        return MlflowSettings(url=self.mlflow_url.rstrip("/"), timeout=10.0)

    def rate_of(self, spec: EndpointSpec) -> float:
        return dict(self.rates).get(spec.name, spec.rate) * self.rate_scale


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string accepts JSON's escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


class RegistryFollower:
    """Moves each server to the version its environment's alias names. Looks at the registry
    every ``interval`` seconds with one cheap query (all aliases); re-reads the served
    versions every few looks so a ``demo_fault`` tag set later is obeyed too."""

    def __init__(self, registry_path: Path, pairs: Sequence[tuple[EndpointSpec, DemoServer]],
                 interval: float = 0.5, mlflow: Any = None) -> None:
        self.registry_path = registry_path
        self.mlflow = mlflow  # [mlflow]: the aliases are MLflow's
        self.pairs = list(pairs)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self._failed: dict[tuple[str, int], float] = {}
        self.cycles = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        reg: Registry | None = None
        try:
            while True:
                try:
                    if reg is None:
                        if self.mlflow is not None:
                            from modeldeck.core.mlflow import MlflowRegistry

                            reg = MlflowRegistry(self.registry_path, self.mlflow)
                        else:
                            reg = Registry(self.registry_path, create=False)
                    self.sync(reg, refresh=self.cycles % 4 == 0)
                    if self.last_error:
                        log.info("registry readable again")
                    self.last_error = None
                except ModeldeckError as e:
                    if str(e) != self.last_error:
                        log.warning("cannot follow the registry: %s", e)
                    self.last_error = str(e)
                    if reg is not None:
                        reg.close()
                    reg = None
                except Exception as e:  # keep following whatever happens
                    log.warning("registry follower: %s: %s", type(e).__name__, e)
                self.cycles += 1
                if self._stop.wait(self.interval):
                    return
        finally:
            if reg is not None:
                reg.close()

    def sync(self, reg: Registry, refresh: bool = False) -> None:
        aliases = reg.all_aliases()
        for spec, server in self.pairs:
            version = aliases.get((spec.model, spec.environment))
            if version is None:
                continue
            cur = server.current
            if cur is not None and cur.version == str(version) and not refresh:
                continue
            key = (spec.model, version)
            if key in self._failed and time.monotonic() - self._failed[key] < 5.0:
                continue
            try:
                v = reg.version(spec.model, version)
                loaded = load_version(spec.model, version, v.artifact, v.params, v.tags)
            except (ArtifactError, ModeldeckError) as e:
                if key not in self._failed:
                    log.warning("%s: cannot load %s version %s: %s", spec.name, spec.model, version, e)
                self._failed[key] = time.monotonic()
                server.load_error = str(e)
                continue
            self._failed.pop(key, None)
            if cur is None or cur.version != loaded.version or cur.fault != loaded.fault \
                    or cur.artifact_path != loaded.artifact_path:
                server.set_version(loaded)


class Fleet:
    """The demo fleet in this process. ``workdir`` holds the capture and ground-truth
    folders (and the registry unless one is given)."""

    def __init__(self, workdir: str | os.PathLike[str], registry: str | os.PathLike[str] | None = None,
                 settings: FleetSettings | None = None) -> None:
        self.workdir = Path(workdir).expanduser().resolve()
        self.registry_path = (Path(registry).expanduser().resolve() if registry
                              else self.workdir / "registry.db")
        self.settings = settings or FleetSettings()
        self.scenario = Scenario(self.settings.drift_at, self.settings.errors_at, self.settings.error_rate)
        self.servers: dict[str, DemoServer] = {}
        self.specs: dict[str, EndpointSpec] = {s.name: s for s in self.settings.endpoints}
        self.captures: dict[str, RotatingJsonl] = {}
        self.ground_truth: dict[str, RotatingJsonl] = {}
        self.traffic: dict[str, TrafficStream] = {}
        self.follower: RegistryFollower | None = None
        self.started_at: float | None = None
        self.ready_seconds: dict[str, float] = {}
        self.config_path: Path | None = None
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> None:
        """Start servers (answering 'not ready' at once), train or reuse the cached artifacts,
        seed the registry, load each environment's version, then start traffic and the
        scenario clock. Raises DemoError when something is missing or a server never loads."""
        s = self.settings
        self.started_at = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for spec in s.endpoints:
            if spec.model not in WORLDS:
                raise DemoError(f"endpoint {spec.name}: no demo model named {spec.model!r}")
            cap = RotatingJsonl(self.workdir / "captures" / spec.name, "capture",
                                max_records=s.capture_records, keep=s.capture_keep)
            gt = RotatingJsonl(self.workdir / "ground_truth" / spec.name, "labels",
                               max_records=s.capture_records, keep=s.capture_keep)
            errors = ErrorScenario(self.scenario.error_ratio if spec.errors else None,
                                   seed=s.seed * 31 + len(self.servers))
            server = DemoServer(spec.name, spec.model, capture=cap, errors=errors, seed=s.seed + len(self.servers))
            server.start()
            self.servers[spec.name] = server
            self.captures[spec.name] = cap
            self.ground_truth[spec.name] = gt
        models = sorted({spec.model for spec in s.endpoints})
        try:
            done = seed.seed_registry(self.registry_path, models, mlflow=s.mlflow)
        except OSError as e:
            raise DemoError(f"cannot prepare the demo registry {self.registry_path}: {e}") from None
        if done:
            log.info("seeded %s into %s", ", ".join(done), self.registry_path)
            self._seed_policies(done)
        self.follower = RegistryFollower(self.registry_path, [(self.specs[n], srv) for n, srv in self.servers.items()],
                                         s.registry_poll, mlflow=s.mlflow)
        self.follower.start()
        deadline = time.monotonic() + s.ready_timeout
        while True:
            waiting = [n for n, srv in self.servers.items() if not srv.ready]
            for n, srv in self.servers.items():
                if srv.ready and n not in self.ready_seconds and srv.ready_at is not None:
                    self.ready_seconds[n] = round(srv.ready_at - srv.started_at, 3)
            if not waiting:
                break
            if stop is not None and stop.is_set():
                return
            if time.monotonic() > deadline:
                why = "; ".join(f"{n}: {self.servers[n].load_error or 'no version loaded'}" for n in waiting)
                raise DemoError(f"demo servers not ready after {s.ready_timeout:.0f} s: {why}")
            time.sleep(0.05)
        self.scenario.start()
        for i, spec in enumerate(s.endpoints):
            rate = s.rate_of(spec)
            if rate <= 0:
                continue
            t = TrafficStream(spec.name, self.servers[spec.name].port, spec.model, WORLDS[spec.model], rate,
                              self.scenario, drifts=spec.drifts, ground_truth=self.ground_truth[spec.name],
                              seed=s.seed * 17 + i, label_delay=s.label_delay)
            t.start()
            self.traffic[spec.name] = t

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for t in self.traffic.values():
            t._stop.set()
        for t in self.traffic.values():
            t.stop()
        if self.follower is not None:
            self.follower.stop()
        stoppers = [threading.Thread(target=srv.stop, daemon=True) for srv in self.servers.values()]
        for t in stoppers:  # in parallel: each waits up to one serve_forever poll interval
            t.start()
        for t in stoppers:
            t.join(timeout=5)
        for w in [*self.captures.values(), *self.ground_truth.values()]:
            w.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the config -----------------------------------------------------------------------------
    def endpoint_table(self) -> list[dict[str, Any]]:
        out = []
        for name, srv in self.servers.items():
            spec = self.specs[name]
            out.append({"name": name, "model": spec.model, "environment": spec.environment, "url": srv.url,
                        "served_model": spec.model, "metrics_url": srv.metrics_url,
                        "capture": self.captures[name].pattern, "labels": self.ground_truth[name].pattern})
        return out

    def retrain_command(self, model: str) -> list[str]:
        """train.py on the newest labelled window of the model's production endpoint (or its
        first endpoint), registering into this fleet's registry. 1,200 rows: the reference is
        then over 1,000 rows, so drift of a same-distribution window is judged by distances
        (Wasserstein, Jensen-Shannon), which rarely false-alarm, rather than by chi-square
        against a small reference, which does (as in Evidently)."""
        specs = [s for s in self.settings.endpoints if s.model == model]
        prod = next((s for s in specs if s.environment == "production"), specs[0])
        mlflow = ["--config", str(self.config_path)] if self.settings.mlflow_url and self.config_path else []
        return [sys.executable, str(train_script()), "--model", "{model}",
                "--registry", str(self.registry_path), *mlflow,
                "--recent", self.captures[prod.name].pattern,
                "--labels", self.ground_truth[prod.name].pattern, "--recent-rows", "1200",
                "--reason", "retrained on the recent window of " + prod.name]

    def policy_rules(self, model: str) -> dict[str, Any]:
        """The release policy the demo registry starts with (the config's rules say the same)."""
        return {"gates": [{"greater_is_better": True, **g} for g in GATES.get(model, [])],
                "verify_timeout": 20.0, "bake_seconds": 20.0,
                "environments": {"production": {"approvals": 1}}}

    def _seed_policies(self, models: list[str]) -> None:
        from modeldeck.core import policy
        from modeldeck.core.registry import Registry

        ml = self.settings.mlflow
        if ml is not None:
            from modeldeck.core.mlflow import MlflowRegistry

            opened: Registry = MlflowRegistry(self.registry_path, ml)
        else:
            opened = Registry(self.registry_path)
        with opened as reg:
            for model in models:
                if reg.policy(model) is None:
                    rules = policy.parse_rules(self.policy_rules(model), f"demo policy of {model}")
                    reg.set_policy(model, rules, "the demo's release rules", text=policy.to_toml(rules),
                                   actor="ci-pipeline")

    def evaluate_command(self) -> list[str]:
        """The example pipeline's evaluate entry point: metrics of ``{artifact}`` on ``{data}``
        (the gates run it when two versions were measured on different holdouts)."""
        return [sys.executable, str(evaluate_script()), "--model", "{model}", "--artifact", "{artifact}",
                "--data", "{data}"]

    def config_text(self) -> str:
        s = self.settings
        sc = self.scenario
        drifting = ", ".join(sp.name for sp in s.endpoints if sp.drifts) or "none"
        failing = ", ".join(sp.name for sp in s.endpoints if sp.errors) or "none"
        lines = [
            "# modeldeck demo fleet: written by `modeldeck demo-fleet` "
            f"(pid {os.getpid()}); the endpoints live only while that process runs.",
            f"# Story: inputs of {drifting} drift from {sc.drift_at:g} s; errors of {failing} rise to "
            f"{sc.error_rate:.0%} from {sc.errors_at:g} s (negative: off).",
            "# Retrain a model (n) to train on its recent captured window; promote the candidate",
            "# and the servers load it within a second.",
            f"registry = {_toml(str(self.registry_path))}",
            "",
            "[poll]",
            f"interval = {_toml(float(s.poll_interval))}",
            "drift_every = 3",
            "drift_window = 1000",
            "quality_every = 5",
            "",
        ]
        if s.mlflow_url:
            lines[4:4] = ["# Models, versions, lineage and aliases are the MLflow server's; the registry file is",
                          "# modeldeck's ledger on top (alias history, approvals, audit)."]
            lines += ["[mlflow]", f"url = {_toml(s.mlflow_url)}", "timeout = 10.0", ""]
        for ep in self.endpoint_table():
            lines.append("[[endpoints]]")
            lines += [f"{k} = {_toml(v)}" for k, v in ep.items()]
            lines.append("")
        for model in sorted({sp.model for sp in s.endpoints}):
            lines.append(f"[models.{model}]")
            lines.append(f"retrain = {_toml({'command': self.retrain_command(model), 'timeout': 300.0})}")
            lines.append(f"evaluate = {_toml({'command': self.evaluate_command(), 'timeout': 120.0})}")
            lines.append("gates = [")
            lines += [f"  {_toml(g)}," for g in GATES.get(model, [])]
            lines.append("]")
            lines += ["verify_timeout = 20.0", "bake_seconds = 20.0", "retrain_cooldown = 600.0"]
            lines += [f"problem_type = {_toml(WORLDS[model].task)}", ""]
        return "\n".join(lines)

    def write_config(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path).expanduser().resolve()
        self.config_path = p  # the retrain command names it (with [mlflow], register reads its [mlflow])
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            tmp.write_text(self.config_text(), encoding="utf-8")
            os.replace(tmp, p)
        except OSError as e:
            raise DemoError(f"{p}: cannot write the config: {e.strerror or e}") from None
        self.config_path = p
        return p

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario.describe(), "endpoints": {}}
        for name, srv in self.servers.items():
            cur: LoadedVersion | None = srv.current
            out["endpoints"][name] = {
                "url": srv.url, "version": cur.version if cur else None, "fault": cur.fault if cur else None,
                "ready_seconds": self.ready_seconds.get(name),
                "traffic": self.traffic[name].stats.as_dict() if name in self.traffic else None,
                "captured": self.captures[name].records}
        return out


# ---------------------------------------------------------------------------------------------
# headless: modeldeck demo-fleet


def main(write_config: str, registry: str | None = None, *, workdir: str | None = None,
         settings: FleetSettings | None = None, exit_with_parent: bool = False,
         on_ready: Callable[[Path], None] | None = None) -> int:
    """Run the fleet until SIGTERM, SIGINT or SIGHUP (exit status 0). The registry goes where
    ``registry`` says, else into a fresh temporary folder (removed at exit) that also holds
    the captures; ``workdir`` names that folder instead (kept). When the fleet answers and its
    config is written, ``on_ready(config_path)`` is called once (``modeldeck demo-fleet``
    prints ``READY_PREFIX + path`` there, the line ``start_subprocess`` waits for). Logs go to
    the ``modeldeck.demo`` logger (the command line configures it)."""
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="modeldeck-demo-")
        workdir = tmp
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, on_signal)
    parent = os.getppid()
    fleet = Fleet(workdir, registry, settings)
    try:
        fleet.start(stop)
        if stop.is_set():
            return 0
        path = fleet.write_config(write_config)
        log.info("endpoints: %s", ", ".join(f"{e['name']} {e['url']}" for e in fleet.endpoint_table()))
        log.info("ready in %.1f s (servers: %s); registry %s", time.monotonic() - (fleet.started_at or 0),
                 ", ".join(f"{k} {v:.2f} s" for k, v in fleet.ready_seconds.items()), fleet.registry_path)
        if on_ready is not None:
            on_ready(path)
        while not stop.wait(0.5):
            if exit_with_parent and os.getppid() != parent:
                log.info("parent process gone; stopping")
                break
        return 0
    finally:
        fleet.stop()
        for sig, handler in previous.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# as a child process


class DemoFleetProcess:
    """A fleet running as ``modeldeck demo-fleet`` in a child process (its own session, so a
    terminal's ctrl+c goes to the parent, which stops it). Context manager."""

    def __init__(self, proc: subprocess.Popen[str], workdir: Path, config_path: Path, registry_path: Path,
                 log_path: Path, cleanup: bool = False) -> None:
        self.proc = proc
        self.workdir = workdir
        self.config_path = config_path
        self.registry_path = registry_path
        self.log_path = log_path
        self.cleanup = cleanup  # remove workdir after stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(Exception):
            if self.proc.stdout:
                self.proc.stdout.close()
        if self.cleanup:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.cleanup = False
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> DemoFleetProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_subprocess(workdir: str | os.PathLike[str], registry: str | os.PathLike[str] | None = None,
                     ready_timeout: float = 30.0, *, settings: FleetSettings | None = None,
                     env: Mapping[str, str] | None = None, config_name: str = "modeldeck.toml",
                     cleanup: bool = False) -> DemoFleetProcess:
    """Start the fleet in a child process and wait for its ready line. The config is
    ``workdir/modeldeck.toml``; the registry ``registry`` or ``workdir/registry.db``; the
    child's log ``workdir/fleet.log``. With ``cleanup``, ``stop()`` removes ``workdir`` (for a
    temporary folder; never when an explicitly given registry lives inside it). Raises
    DemoError (with the log's tail) when it exits or is not ready in time."""
    wd = Path(workdir).expanduser().resolve()
    wd.mkdir(parents=True, exist_ok=True)
    cfg = wd / config_name
    reg = Path(registry).expanduser().resolve() if registry else wd / "registry.db"
    s = settings or FleetSettings()
    args = [*paths.python_argv(), "-m", "modeldeck", "demo-fleet", "--write-config", str(cfg), "--workdir", str(wd),
            "--registry", str(reg), "--drift-at", str(s.drift_at), "--errors-at", str(s.errors_at),
            "--error-rate", str(s.error_rate), "--rate-scale", str(s.rate_scale), "--seed", str(s.seed),
            "--poll-interval", str(s.poll_interval), "--ready-timeout", str(max(s.ready_timeout, ready_timeout)),
            "--label-delay", str(s.label_delay), "--exit-with-parent"]
    if s.mlflow_url:
        args += ["--mlflow", s.mlflow_url]
    for name, rate in s.rates:
        args += ["--rate", f"{name}={rate}"]
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    log_path = wd / "fleet.log"
    with contextlib.suppress(FileNotFoundError):
        cfg.unlink()
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf, cwd=wd,
                                env=child_env, text=True, start_new_session=True)
    keep = registry is not None and wd in reg.parents
    fp = DemoFleetProcess(proc, wd, cfg, reg, log_path, cleanup=cleanup and not keep)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with contextlib.suppress(Exception):
            for line in proc.stdout:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="demo-fleet-stdout", daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            tail = _last_line(fp.log_tail())
            fp.stop()
            raise DemoError(f"the demo fleet was not ready within {ready_timeout:.0f} s; log {log_path}: {tail}")
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if line is None:
            code = proc.wait(5)
            tail = _last_line(fp.log_tail())
            fp.stop()
            raise DemoError(f"the demo fleet exited with status {code} before it was ready; "
                            f"log {log_path}: {tail}")
        if line.startswith(READY_PREFIX):
            fp.config_path = Path(line[len(READY_PREFIX):].strip())
            return fp


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(empty)"


__all__ = ["DEFAULT_ENDPOINTS", "GATES", "READY_PREFIX", "DemoError", "DemoFleetProcess", "EndpointSpec",
           "Fleet", "FleetSettings", "main", "start_subprocess"]
