"""The Textual app: bindings, the polling source, notices, and the demo fleet's lifecycle.

Data flows one way: the poller thread produces ``core`` snapshots (a ``SnapshotSource``); a
timer on the UI side reads the newest ones and the active screen (a ``DeckView``) updates
changed cells in place. Actions go the other way: a key -> a screen -> a ``core`` function in
a worker -> the registry; the worker reports back with a message (``tui/messages.py``).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.message_pump import MessagePump
from textual.notifications import Notification, Notify, SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from modeldeck.core import paths
from modeldeck.core.config import Settings
from modeldeck.core.errors import ModeldeckError
from modeldeck.core.textfmt import one_line
from modeldeck.tui.messages import (
    DemoFleetReady,
    ReleaseEventMsg,
    ReleaseFailed,
    ReleaseFinished,
    SourceError,
)
from modeldeck.tui.screens.base import DeckView
from modeldeck.tui.source import PollerSource, SnapshotSource

if TYPE_CHECKING:
    from modeldeck.core.demo.fleet import DemoFleetProcess
    from modeldeck.core.releases import ReleaseEvent, ReleasePlan

log = logging.getLogger("modeldeck.tui")

INTERVALS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
THEMES = ("textual-dark", "nord", "gruvbox", "tokyo-night", "monokai", "textual-light", "solarized-light")
REFRESH_SECONDS = 0.5
PRELOAD_AFTER = 1.5  # seconds after start: the other screens' modules load in a thread
PRELOAD_MODULES = ("modeldeck.tui.screens.model", "modeldeck.tui.screens.release", "modeldeck.tui.screens.audit",
                   "modeldeck.tui.screens.rollouts", "modeldeck.tui.screens.help")
ERROR_SECONDS = 8.0  # how long an error notice stays


class ModeldeckApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "modeldeck"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),  # the label while paused (check_action picks one)
        Binding("plus", "slower", "Interval", key_display="+/-"),
        Binding("minus", "faster", "Shorter interval", show=False),
        Binding("r", "poll_now", "Poll"),
        Binding("t", "next_theme", "Theme"),
    ]

    def __init__(self, settings: Settings | None, *, source: SnapshotSource | None = None, demo: bool = False,
                 read_only: bool = False, clock: Callable[[], float] = time.time,
                 demo_registry: str | None = None, demo_workdir: Path | None = None,
                 demo_mlflow: bool = False, via_prometheus: bool = False) -> None:
        super().__init__()
        from modeldeck.tui import palette

        self.ansi_theme_dark = palette.DARK  # status colours that survive 16 colours and every theme
        self.ansi_theme_light = palette.LIGHT
        palette.tune_themes(self)
        self._keyed_notices: dict[str, Notification] = {}
        self.settings = settings
        self.read_only = read_only or bool(settings and settings.read_only)
        self.demo = demo
        self.clock = clock
        self.source: SnapshotSource | None = source
        self.demo_registry = demo_registry
        self.demo_workdir = demo_workdir
        self.demo_fleet: DemoFleetProcess | None = None
        self.demo_mlflow = demo_mlflow  # --demo --mlflow: a local mlflow server is the registry of record
        self.mlflow_server: Any = None  # core.demo.mlflowserver.MlflowServer
        self.via_prometheus = via_prometheus  # the demo's metrics through a Prometheus scraping it
        self.demo_prometheus: Any = None  # core.demo.prometheus.DemoPrometheus
        self.status_line = "starting the demo fleet…" if demo and settings is None else ""
        self._generation = -1
        self.rollouts_started: list[int] = []  # rollouts this app started (their supervisors outlive it)
        self.latest_rollouts: dict[tuple[str, str], Any] = {}  # (model, environment) -> its newest Rollout
        self._rollouts_polled = 0.0
        self._rollouts_reconciled = 0.0
        self._rollouts_closing = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        from modeldeck.tui.screens.fleet import FleetScreen

        saved = load_prefs().get("theme")
        if isinstance(saved, str) and saved in self.available_themes:
            self.theme = saved  # `t` is kept across restarts

        self.push_screen(FleetScreen())
        if self.settings is not None:
            self._start_source()
        elif self.demo:
            self.start_demo_fleet()
        self.set_interval(REFRESH_SECONDS, self.refresh_views)
        self.set_timer(PRELOAD_AFTER, self._preload)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):  # a refresh under way makes way while the key is handled
            hold = getattr(self.source, "hold", None)
            if callable(hold):
                hold()
        await super().on_event(event)

    def _preload(self) -> None:
        """Import the other screens' modules (numpy and the quality code among them: about a
        second of CPU) in a thread once the fleet is up, so the first enter on a row does not
        stall the keyboard while they load."""

        def load() -> None:
            import importlib

            for name in PRELOAD_MODULES:
                try:
                    importlib.import_module(name)
                except Exception:  # the screen itself says what is wrong when it is opened
                    log.debug("preloading %s failed", name, exc_info=True)

        self.run_worker(load, thread=True, exit_on_error=False, name="preload", group="preload")

    def _start_source(self) -> None:
        if self.source is None and self.settings is not None:
            self.source = PollerSource(self.settings, on_error=self._source_error)
        if self.source is not None:
            self.source.start()

    def _source_error(self, text: str) -> None:
        """Called in the poller's thread; post_message is thread-safe."""
        self.post_message(SourceError(text))

    def on_source_error(self, message: SourceError) -> None:
        self.notify(message.text, severity="error")

    def set_settings(self, settings: Settings) -> None:
        """Settings that arrive after start (the demo fleet's config)."""
        self.settings = settings
        self.status_line = ""
        self._start_source()
        for screen in self.screen_stack:
            if isinstance(screen, DeckView):
                screen.settings_changed()
        self.refresh_views(force=True)

    @work(thread=True, exit_on_error=False, name="demo fleet")
    def start_demo_fleet(self) -> None:
        from modeldeck.core import config
        from modeldeck.core.demo import fleet
        from modeldeck.core.errors import ModeldeckError

        own = self.demo_workdir is None  # a folder made here is removed when the fleet stops
        workdir = self.demo_workdir or Path(tempfile.mkdtemp(prefix="modeldeck-demo-"))
        registry = Path(self.demo_registry) if self.demo_registry else None
        fleet_settings = None
        if self.demo_mlflow:
            from modeldeck.core.demo import mlflowserver

            self.status_line = "starting a local mlflow server…"
            self.mlflow_server = mlflowserver.start(workdir / "mlflow")
            self.status_line = f"starting the demo fleet on MLflow at {self.mlflow_server.url}…"
            fleet_settings = fleet.FleetSettings(mlflow_url=self.mlflow_server.url)
        # set here, not in the message handler, so shutdown() stops a fleet whose message is still queued
        self.demo_fleet = fleet.start_subprocess(workdir, registry=registry, cleanup=own, settings=fleet_settings,
                                                 ready_timeout=120.0 if self.demo_mlflow else 30.0)
        settings = config.parse_file(Path(self.demo_fleet.config_path))
        if self.via_prometheus:
            from modeldeck.core.demo import prometheus

            self.status_line = "starting Prometheus, scraping the demo fleet…"
            prom = prometheus.DemoPrometheus(settings, workdir / "prometheus")
            self.demo_prometheus = prom
            try:
                prom.start()
                settings = prometheus.via_prometheus(settings, prom.url)
            except ModeldeckError as e:  # the fleet is up: watch it directly, and say so
                self.demo_prometheus = None
                self.notify(f"{e}; watching the demo fleet directly", severity="error")
        self.post_message(DemoFleetReady(settings))

    def on_demo_fleet_ready(self, message: DemoFleetReady) -> None:
        self.set_settings(message.settings)

    def on_unmount(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        self._rollouts_closing.set()
        if self.source is not None:
            self.source.stop()
        if self.demo_prometheus is not None:  # before the fleet removes its work folder
            try:
                self.demo_prometheus.stop()
            except Exception:
                log.exception("stopping the demo's Prometheus")
            self.demo_prometheus = None
        if self.demo_fleet is not None:
            try:
                self.demo_fleet.stop()
            except Exception:
                log.exception("stopping the demo fleet")
            self.demo_fleet = None
        if self.mlflow_server is not None:
            try:
                self.mlflow_server.stop()
            except Exception:
                log.exception("stopping the demo's mlflow server")
            self.mlflow_server = None

    # -- the refresh loop --------------------------------------------------------------------------
    def refresh_views(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.settings is not None and now - self._rollouts_polled >= 1.0:
            self._rollouts_polled = now
            reconcile = not self.read_only and now - self._rollouts_reconciled >= 10.0
            if reconcile:
                self._rollouts_reconciled = now
            self.run_worker(lambda: self._poll_rollouts(reconcile), thread=True, exit_on_error=False,
                            name="rollouts", group="rollouts-poll", exclusive=True)
        try:
            screen = self.screen
        except Exception:  # no screen (yet, or any more while the app shuts down)
            return
        if isinstance(screen, DeckView) and screen.ready:
            try:
                screen.refresh_snapshots(force=force)
            except Exception as e:  # a bad value must not end the app
                log.exception("refresh failed")
                self.notify(f"display error: {type(e).__name__}: {e}", severity="error")

    # -- notices: shown briefly, always plain text, also logged --------------------------------------
    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False, key: str | None = None) -> None:
        """Thread-safe (it posts a message), so workers call it directly. Errors stay 8 s
        (others Textual's 5 s). ``key``: a notice of that key replaces the previous one (the
        interval after five presses of +), instead of stacking."""
        text = one_line(message, 300)
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(severity, logging.INFO)
        log.log(level, "%s%s", f"{title}: " if title else "", text)
        if timeout is None:
            timeout = ERROR_SECONDS if severity == "error" else self.NOTIFICATION_TIMEOUT
        notice = Notification(text, one_line(title, 60), severity, timeout, markup=False)
        if key is not None:
            self.post_message(ReplaceNotice(key, notice))
        else:
            self.post_message(Notify(notice))

    def on_replace_notice(self, message: ReplaceNotice) -> None:
        old = self._keyed_notices.get(message.key)
        if old is not None and old in self._notifications:
            self._unnotify(old, refresh=False)
        self._keyed_notices[message.key] = message.notice
        self.post_message(Notify(message.notice))

    @on(events.DeliveryComplete)
    def _screenshot_saved(self, event: events.DeliveryComplete) -> None:
        """The saved screenshot's path as plain text (Textual's own notice is markup)."""
        if event.name == "screenshot":
            event.prevent_default()
            self.notify("saved screenshot" + (f" to {event.path}" if event.path else ""), title="Screenshot")

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Save an SVG of the screen to ~/Downloads, or to the XDG state folder when there is
        no Downloads folder (an ops box)."""
        if path is None:
            from platformdirs import user_downloads_path

            downloads = user_downloads_path()
            if not downloads.is_dir():
                folder = paths.state_dir() / "screenshots"
                folder.mkdir(parents=True, exist_ok=True)
                path = str(folder)
        self.deliver_screenshot(filename, path)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker turns into a visible, logged notice."""
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.notify(f"{event.worker.name or 'task'} failed: {type(err).__name__}: {err}"
                        if not _is_user_error(err) else f"{err}", severity="error")

    # -- releases: run in app workers so a hidden dialog never stops a rollout --------------------
    def start_release(self, plan: ReleasePlan, *, reason: str, force: bool, stop_event: threading.Event,
                      dialog: MessagePump) -> None:
        """Run the release in an app worker. ``dialog`` gets a ReleaseEventMsg per step, then a
        ReleaseFinished or ReleaseFailed (dropped once it is closed); the app gets the end too,
        as a notice that shows even when the dialog was hidden."""
        self.run_worker(lambda: self._release(plan, reason, force, stop_event, dialog), thread=True,
                        exit_on_error=False, name=f"release {plan.model} {plan.environment}", group="release")

    def _release(self, plan: ReleasePlan, reason: str, force: bool, stop_event: threading.Event,
                 dialog: MessagePump) -> None:
        """Start the rollout (gates and the alias move here; the rest in its detached
        supervisor, which quitting the app does not stop) and follow its step log."""
        from modeldeck.core import releases, rollout
        from modeldeck.core.registry import open_registry

        def on_event(event: ReleaseEvent) -> None:
            dialog.post_message(ReleaseEventMsg(event))

        try:
            with open_registry(plan.settings, create=False) as reg:
                started = rollout.start(plan, reason=reason, force=force, registry=reg, on_event=on_event)
                r = started.rollout
                if r is None or started.refused:
                    outcome = releases.ReleaseOutcome(releases.BLOCKED, plan, started.message)
                else:
                    self.rollouts_started.append(r.id)
                    outcome = self._follow_rollout(reg, r, plan, stop_event, dialog)
        except Exception as e:
            dialog.post_message(ReleaseFailed(plan, e))
            self.post_message(ReleaseFailed(plan, e))
            return
        if outcome is None:  # the app is closing: the rollout goes on without us
            return
        dialog.post_message(ReleaseFinished(plan, outcome))
        self.post_message(ReleaseFinished(plan, outcome))

    def _follow_rollout(self, reg: Any, r: Any, plan: ReleasePlan, stop_event: threading.Event,
                        dialog: MessagePump) -> Any:
        from modeldeck.core import releases, rollout

        steps = reg.rollout_steps(r.id)
        seen = steps[-1].id if steps else 0
        aborted = False

        def on_step(st: Any) -> None:
            nonlocal seen
            seen = st.id
            dialog.post_message(ReleaseEventMsg(releases.ReleaseEvent(st.stage, st.message, st.level)))

        while r.active:
            if self._rollouts_closing.is_set():
                return None
            if stop_event.is_set() and not aborted:
                aborted = True
                reason = getattr(dialog, "abort_reason", "") or "aborted in the release dialog"
                with contextlib.suppress(ModeldeckError):
                    r = rollout.abort(reg, r.id, reason)
            r = rollout.follow(reg, r.id, after=seen, on_step=on_step, stop=self._rollouts_closing, settings=plan.settings,
                               timeout=0.5)
        return rollout_outcome(plan, r)

    def on_release_finished(self, message: ReleaseFinished) -> None:
        outcome = message.outcome
        severity: SeverityLevel = "information" if outcome.ok else (
            "warning" if outcome.status == "blocked" else "error")
        self.notify(outcome.message, severity=severity)
        self.refresh_views(True)

    def on_release_failed(self, message: ReleaseFailed) -> None:
        self.notify(f"{message.plan.summary()}: {message.error}", severity="error")

    def _poll_rollouts(self, reconcile: bool) -> None:
        """The newest rollout of every environment, for the fleet's badges; now and then the
        rollouts nobody watches any more are resumed or set unverified (core.rollout.reconcile)."""
        from modeldeck.core import rollout
        from modeldeck.core.registry import ROLLOUT_ACTIVE, Registry

        settings = self.settings
        if settings is None or not Path(settings.registry).exists():
            return
        try:
            if reconcile:
                with Registry(settings.registry, create=False) as reg:
                    if reg.rollouts(states=ROLLOUT_ACTIVE, limit=1):
                        rollout.reconcile(reg, settings)
            with Registry(settings.registry, create=False, readonly=True) as reg:
                self.latest_rollouts = reg.latest_rollouts()
        except ModeldeckError as e:
            log.warning("reading rollouts: %s", e)

    # -- actions --------------------------------------------------------------------------------
    def action_help(self) -> None:
        from modeldeck.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_pause(self) -> None:
        self.action_toggle_pause()

    def action_resume(self) -> None:
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        if self.source is None:
            return
        if self.source.paused:
            self.source.resume()
            self.notify("polling resumed", key="pause")
        else:
            self.source.pause()
            self.notify("polling paused (p resumes)", key="pause")
        self.refresh_views(force=True)
        self.refresh_bindings()  # the key bar says Resume while paused

    def _step_interval(self, step: int) -> None:
        if self.source is None:
            return
        current = self.source.interval
        idx = min(range(len(INTERVALS)), key=lambda i: abs(INTERVALS[i] - current))
        new = INTERVALS[max(0, min(len(INTERVALS) - 1, idx + step))]
        if new != current:
            self.source.set_interval(new)
            self.notify(f"polling every {new:g} s", key="interval")
        else:
            edge = "shortest" if step < 0 else "longest"
            self.notify(f"polling every {new:g} s already: the {edge} interval", key="interval")
        self.refresh_views(force=True)

    def action_slower(self) -> None:
        self._step_interval(+1)

    def action_faster(self) -> None:
        self._step_interval(-1)

    def action_poll_now(self) -> None:
        if self.source is not None:
            self.source.poll_now()
            self.notify("polling now")

    def action_next_theme(self) -> None:
        names = [t for t in THEMES if t in self.available_themes]
        idx = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(idx + 1) % len(names)]
        save_prefs(theme=self.theme)
        self.notify(f"theme: {self.theme}", key="theme")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette offers every action of the app and of the current screen."""
        seen = set()
        owners: tuple[Screen | App, ...] = (screen, self)
        for owner in owners:
            for binding in owner.BINDINGS:
                if not isinstance(binding, Binding) or binding.action in seen:
                    continue
                seen.add(binding.action)
                if owner.check_action(binding.action, ()) is False:
                    continue
                key = binding.key_display or binding.key.split(",")[0]
                yield SystemCommand(binding.description or binding.action, f"key: {key}",
                                    _runner(owner, binding.action))
        yield from super().get_system_commands(screen)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_pause", "pause", "resume", "slower", "faster", "poll_now") and self.source is None:
            return None if action != "resume" else False  # shown dimmed until there is something to poll
        if action in ("pause", "resume"):
            assert self.source is not None
            return self.source.paused == (action == "resume")
        return True



def _runner(owner: Screen | App, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await owner.run_action(action)

    return run


def _is_user_error(err: BaseException | None) -> bool:
    from modeldeck.core.errors import ModeldeckError

    return isinstance(err, ModeldeckError)


# ---------------------------------------------------------------------------------------------


class ReplaceNotice(Message):
    """A keyed notice, handled on the UI thread (where notices may be removed)."""

    def __init__(self, key: str, notice: Notification) -> None:
        super().__init__()
        self.key = key
        self.notice = notice


def prefs_file() -> Path:
    return paths.state_dir() / "tui.json"


def load_prefs() -> dict[str, Any]:
    """What the TUI keeps across restarts (the theme); {} when unreadable."""
    import json

    try:
        data = json.loads(prefs_file().read_text(encoding="utf-8")[:10_000])
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_prefs(**values: Any) -> None:
    import json

    data = {**load_prefs(), **values}
    try:
        path = paths.ensure_parent(prefs_file())
        path.write_text(json.dumps(data), encoding="utf-8")
    except OSError as e:  # a read-only home must not end the app
        log.warning("cannot keep the TUI settings in %s: %s", prefs_file(), e)


def setup_logging() -> Path:
    """Notices and errors go to a log file under the XDG state folder."""
    path = paths.ensure_parent(paths.log_file())
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("modeldeck")
    root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in root.handlers):
        root.addHandler(handler)
    return path


def rollout_outcome(plan: ReleasePlan, r: Any) -> Any:
    """A rollout's end as the release dialog shows it (a ReleaseOutcome)."""
    from modeldeck.core import releases

    status = {"done": releases.RELEASED, "rolled_back": releases.ROLLED_BACK, "aborted": releases.ROLLED_BACK,
              "unverified": releases.UNVERIFIED}.get(r.state, releases.UNDO_FAILED)
    verified = True if r.state == "done" and r.verify and plan.endpoints else None
    baked = True if verified and r.bake_seconds > 0 else (False if r.bake_started_at and r.state != "done" else None)
    return releases.ReleaseOutcome(status, plan, f"rollout {r.id} {r.state}: {r.message}", verified=verified,
                                   baked=baked)


def active_rollouts_note(app: ModeldeckApp) -> list[str]:
    """What quitting leaves running: one line per active rollout this app started."""
    from modeldeck.core.registry import Registry

    if not app.rollouts_started or app.settings is None:
        return []
    lines = []
    try:
        with Registry(app.settings.registry, create=False) as reg:
            for rid in app.rollouts_started:
                r = reg.rollout(rid)
                if r.active:
                    lines.append(f"rollout {r.id} ({r.model} {r.environment} -> version {r.to_version}, {r.state}) "
                                 f"goes on: modeldeck rollout {r.id} --follow")
    except ModeldeckError:
        return []
    return lines


def run_app(settings: Settings | None, *, demo: bool = False, read_only: bool = False,
            registry: str | None = None, via_prometheus: bool = False,
            on_exit: Callable[[list[str]], None] | None = None, mlflow: bool = False) -> int:
    setup_logging()
    app = ModeldeckApp(settings, demo=demo, read_only=read_only, demo_registry=registry,
                       via_prometheus=via_prometheus, demo_mlflow=mlflow)
    try:
        app.run()
    finally:
        app.shutdown()
        if on_exit is not None:
            on_exit(active_rollouts_note(app))
    if app.return_code not in (None, 0):
        return int(app.return_code)
    return 0

