"""The Textual app: bindings, the polling source, notices, and the demo fleet's lifecycle.

Data flows one way: the poller thread produces ``core`` snapshots (a ``SnapshotSource``); a
timer on the UI side reads the newest ones and the active screen (a ``DeckView``) updates
changed cells in place. Actions go the other way: a key -> a screen -> a ``core`` function in
a worker -> the registry; the worker reports back with a message (``tui/messages.py``).
"""

from __future__ import annotations

import logging
import logging.handlers
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message_pump import MessagePump
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from modeldeck.core import paths
from modeldeck.core.config import Settings
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
    import threading

    from modeldeck.core.demo.fleet import DemoFleetProcess
    from modeldeck.core.releases import ReleaseEvent, ReleasePlan

log = logging.getLogger("modeldeck.tui")

INTERVALS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
THEMES = ("textual-dark", "nord", "gruvbox", "tokyo-night", "monokai", "textual-light", "solarized-light")
REFRESH_SECONDS = 0.5


class ModeldeckApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "modeldeck"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("p", "toggle_pause", "Pause"),
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

    # -- lifecycle ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        from modeldeck.tui.screens.fleet import FleetScreen

        self.push_screen(FleetScreen())
        if self.settings is not None:
            self._start_source()
        elif self.demo:
            self.start_demo_fleet()
        self.set_interval(REFRESH_SECONDS, self.refresh_views)

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
               timeout: float | None = None, markup: bool = False) -> None:
        """Thread-safe (Textual's notify posts a message), so workers call it directly."""
        text = one_line(message, 300)
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(severity, logging.INFO)
        log.log(level, "%s%s", f"{title}: " if title else "", text)
        super().notify(text, title=one_line(title, 60), severity=severity, timeout=timeout, markup=False)

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
        from modeldeck.core import releases

        def on_event(event: ReleaseEvent) -> None:
            dialog.post_message(ReleaseEventMsg(event))

        try:
            outcome = releases.execute(plan, reason=reason, force=force, on_event=on_event, stop_event=stop_event)
        except Exception as e:
            dialog.post_message(ReleaseFailed(plan, e))
            self.post_message(ReleaseFailed(plan, e))
            return
        dialog.post_message(ReleaseFinished(plan, outcome))
        self.post_message(ReleaseFinished(plan, outcome))

    def on_release_finished(self, message: ReleaseFinished) -> None:
        outcome = message.outcome
        severity: SeverityLevel = "information" if outcome.ok else (
            "warning" if outcome.status == "blocked" else "error")
        self.notify(outcome.message, severity=severity, timeout=None if outcome.ok else 30)
        self.refresh_views(True)

    def on_release_failed(self, message: ReleaseFailed) -> None:
        self.notify(f"{message.plan.summary()}: {message.error}", severity="error")

    # -- actions --------------------------------------------------------------------------------
    def action_help(self) -> None:
        from modeldeck.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_toggle_pause(self) -> None:
        if self.source is None:
            return
        if self.source.paused:
            self.source.resume()
            self.notify("polling resumed")
        else:
            self.source.pause()
            self.notify("polling paused (p resumes)")
        self.refresh_views(force=True)

    def _step_interval(self, step: int) -> None:
        if self.source is None:
            return
        current = self.source.interval
        idx = min(range(len(INTERVALS)), key=lambda i: abs(INTERVALS[i] - current))
        new = INTERVALS[max(0, min(len(INTERVALS) - 1, idx + step))]
        if new != current:
            self.source.set_interval(new)
        self.notify(f"polling every {new:g} s")
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
        self.notify(f"theme: {self.theme}")

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
        if action in ("toggle_pause", "slower", "faster", "poll_now") and self.source is None:
            return None  # shown dimmed until there is something to poll
        return True


def _runner(owner: Screen | App, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await owner.run_action(action)

    return run


def _is_user_error(err: BaseException | None) -> bool:
    from modeldeck.core.errors import ModeldeckError

    return isinstance(err, ModeldeckError)


# ---------------------------------------------------------------------------------------------


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


def run_app(settings: Settings | None, *, demo: bool = False, read_only: bool = False,
            registry: str | None = None, via_prometheus: bool = False, mlflow: bool = False) -> int:
    setup_logging()
    app = ModeldeckApp(settings, demo=demo, read_only=read_only, demo_registry=registry,
                       via_prometheus=via_prometheus, demo_mlflow=mlflow)
    try:
        app.run()
    finally:
        app.shutdown()
    if app.return_code not in (None, 0):
        return int(app.return_code)
    return 0

