"""The TUI's typed seams: workers report to screens with messages (tui/messages.py), the app
talks to screens through DeckView and to snapshots through SnapshotSource, and core prints
nothing (the CLI does)."""

from __future__ import annotations

import argparse
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import RichLog, Static

from modeldeck.core import releases, rollout
from modeldeck.core.errors import ConflictError
from modeldeck.tui.app import ModeldeckApp
from modeldeck.tui.messages import SourceError
from modeldeck.tui.screens.base import DeckView
from modeldeck.tui.source import FixedSource, PollerSource, SnapshotSource
from tests.tui_fixtures import NOW, fleet_snapshots, write_world

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = write_world(tmp_path)
    latest, history = fleet_snapshots()
    return settings, FixedSource(latest, history)


def make_app(world, **kw: Any) -> ModeldeckApp:
    settings, source = world
    return ModeldeckApp(settings, source=source, clock=lambda: NOW, **kw)


def static_text(app: ModeldeckApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def notices(app: ModeldeckApp) -> list[str]:
    return [n.message for n in app._notifications]


class FakeExecute:
    """Stands in for core.rollout.start in the app's release worker: emits events, waits until
    the test lets it finish, then records the rollout done in the registry (or raises)."""

    def __init__(self, raises: Exception | None = None) -> None:
        self.go = threading.Event()
        self.emitted = threading.Event()
        self.raises = raises
        self.thread: str | None = None

    def __call__(self, plan: releases.ReleasePlan, *, reason: str, force: bool = False, on_event: Any = None,
                 registry: Any = None, **kw: Any) -> rollout.Started:
        self.thread = threading.current_thread().name
        on_event(releases.ReleaseEvent("alias", f"staging of {plan.model} -> version {plan.to_version}", "success"))
        on_event(releases.ReleaseEvent("hook", "[/bold]deploy said [red]hi", "output"))
        self.emitted.set()
        assert self.go.wait(10)
        if self.raises is not None:
            raise self.raises
        r = registry.create_rollout(plan.model, plan.environment, plan.action, plan.to_version, reason,
                                    from_version=plan.from_version)
        registry.promote(plan.model, plan.to_version, plan.environment, reason, rollout_id=r.id)
        return rollout.Started(registry.transition_rollout(r.id, "done", f"released {reason!r}"))


async def start_staging_release(pilot: Any, monkeypatch: pytest.MonkeyPatch, fake: FakeExecute) -> Any:
    monkeypatch.setattr(rollout, "start", fake)
    await pilot.press("j", "j", "enter")  # fraud-prod
    await pilot.pause(0.3)
    await pilot.press("P", "down", "enter")  # promote version 1 to staging (no gates, no confirmation)
    await pilot.pause(0.5)
    dialog = pilot.app.screen
    assert type(dialog).__name__ == "ReleaseScreen" and dialog.state == "ready", static_text(pilot.app,
                                                                                          "#release-plan")
    await pilot.press(*"try it", "enter")
    assert await _until(pilot, fake.emitted.is_set)
    return dialog


async def _until(pilot: Any, done: Any, tries: int = 40) -> bool:
    for _ in range(tries):
        if done():
            return True
        await pilot.pause(0.1)
    return bool(done())


async def test_release_events_reach_the_dialog_as_messages(world, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeExecute()
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        dialog = await start_staging_release(pilot, monkeypatch, fake)
        log = dialog.query_one("#release-log", RichLog)
        assert await _until(pilot, lambda: len(log.lines) >= 2)
        lines = [line.text for line in log.lines]
        assert any("staging of fraud -> version 1" in line for line in lines), lines
        assert any("[/bold]deploy said [red]hi" in line for line in lines), lines  # literal, never markup
        assert dialog.state == "running"
        fake.go.set()
        assert await _until(pilot, lambda: dialog.state == "done")
        assert dialog.outcome is not None and dialog.outcome.ok
        assert "released 'try it'" in static_text(app, "#release-hint")
        assert await _until(pilot, lambda: "rollout 1 done: released 'try it'" in notices(app))  # the app's notice
        assert fake.thread != threading.main_thread().name  # it ran in the app's worker thread
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelScreen"


async def test_a_hidden_release_dialog_still_ends_in_a_notice(world, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeExecute()
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        await start_staging_release(pilot, monkeypatch, fake)
        await pilot.press("escape")  # hides the dialog; the rollout goes on
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelScreen"
        assert any("goes on in the background" in m for m in notices(app))
        fake.go.set()
        assert await _until(pilot, lambda: "rollout 1 done: released 'try it'" in notices(app)), notices(app)
        assert app.is_running


async def test_a_failed_release_shows_in_the_dialog_and_as_a_notice(world, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeExecute(raises=ConflictError("someone moved staging meanwhile"))
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        dialog = await start_staging_release(pilot, monkeypatch, fake)
        fake.go.set()
        assert await _until(pilot, lambda: dialog.state == "done")
        assert "someone moved staging meanwhile" in static_text(app, "#release-hint")
        assert await _until(pilot, lambda: any(m.endswith(": someone moved staging meanwhile")
                                               for m in notices(app))), notices(app)


async def test_a_poller_error_from_its_thread_is_a_notice(world, monkeypatch: pytest.MonkeyPatch) -> None:
    import modeldeck.core.poller as poller

    class Broken:
        def __init__(self, *a: Any, **kw: Any) -> None:
            raise RuntimeError("[red]no sockets left")

    monkeypatch.setattr(poller, "Poller", Broken)
    settings, _ = world
    app = ModeldeckApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        assert isinstance(app.source, PollerSource)
        assert await _until(pilot, lambda: any("no sockets left" in m for m in notices(app)))
        assert "poller stopped: RuntimeError: [red]no sockets left" in notices(app)
        await pilot.pause(0.6)  # the header shows the source's error too (plain text)
        assert "[red]no sockets left" in static_text(app, "#fleet-header")


async def test_source_error_messages_may_come_from_any_thread(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        t = threading.Thread(target=lambda: app.post_message(SourceError("polling failed: [b]x")))
        t.start()
        t.join()
        assert await _until(pilot, lambda: "polling failed: [b]x" in notices(app))


async def test_demo_settings_arrive_as_a_message_and_every_screen_hears_of_them(world, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.core.demo import fleet

    settings, source = world
    stopped = []

    class FakeFleet:
        config_path = settings.path

        def stop(self) -> None:
            stopped.append(True)

    started = threading.Event()

    def fake_start(workdir: Path, **kw: Any) -> FakeFleet:
        assert started.wait(10)
        return FakeFleet()

    monkeypatch.setattr(fleet, "start_subprocess", fake_start)
    app = ModeldeckApp(None, source=source, demo=True, clock=lambda: NOW, demo_workdir=tmp_path / "demo")
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause()
        assert "starting the demo fleet" in static_text(app, "#fleet-header")
        assert app.screen.query_one("#fleet-table").row_count == 0
        started.set()
        assert await _until(pilot, lambda: app.settings is not None)
        await pilot.pause(0.3)
        assert app.screen.query_one("#fleet-table").row_count == 4  # FleetScreen.settings_changed() rebuilt it
        assert "demo" in static_text(app, "#fleet-header")
    assert stopped == [True]


def test_both_sources_are_snapshot_sources() -> None:
    assert isinstance(FixedSource(), SnapshotSource)
    from modeldeck.core.config import Settings

    assert isinstance(PollerSource(Settings(path=None, registry=Path("r.db"))), SnapshotSource)


def test_every_screen_is_a_deck_view() -> None:
    from modeldeck.tui.screens import audit, fleet, help, lineage, model, release, retrain

    screens = [cls for mod in (audit, fleet, help, lineage, model, release, retrain) for cls in vars(mod).values()
               if isinstance(cls, type) and cls.__module__ == mod.__name__ and cls.__name__.endswith(("Screen",
                                                                                                   "Picker"))]
    assert len(screens) >= 10
    assert all(issubclass(cls, DeckView) for cls in screens)


def test_workers_do_not_call_back_through_the_app() -> None:
    """Workers post messages; the only mentions of call_from_thread are explanations."""
    for path in (ROOT / "tui").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert "call_from_thread(" not in code, f"{path.relative_to(ROOT)}:{n}: {line.strip()}"



def test_core_prints_nothing() -> None:
    """All output is the CLI's: core returns values and text, raises one-line errors."""
    pattern = re.compile(r"\bprint\(|sys\.(stdout|stderr)\b")
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sorted((ROOT / "core").rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line.split("#", 1)[0])]
    assert found == []


# -- the command line: declared dispatch, the moved commands --------------------------------------


def test_every_command_names_its_handler() -> None:
    from modeldeck.tui import cli

    parser = cli.build_parser()
    assert parser.parse_args([]).handler is cli._cmd_tui
    assert parser.parse_args(["--demo"]).handler is cli._cmd_tui
    assert parser.parse_args(["--report", "--format", "json"]).handler is cli._cmd_report
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        handler = p.get_default("handler")
        assert handler is getattr(cli, f"_cmd_{name.replace('-', '_')}"), name
    args = parser.parse_args(["--report", "models"])  # the subcommand's handler wins; the pair is refused
    assert args.handler is cli._cmd_models and args.report


def test_report_with_a_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from modeldeck.tui import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--report", "models"])
    assert e.value.code == 2
    assert "do not combine with the models command" in capsys.readouterr().err


def test_run_job_is_hidden_and_demo_fleet_help_shows_the_fleets_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from modeldeck.core.demo.fleet import FleetSettings
    from modeldeck.tui import cli

    top = cli.build_parser().format_help()
    assert "run-job" not in top and "SUPPRESS" not in top and "demo-fleet" in top
    with pytest.raises(SystemExit):
        cli.main(["demo-fleet", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    d = FleetSettings()
    for flag, value in (("--drift-at", d.drift_at), ("--errors-at", d.errors_at), ("--error-rate", d.error_rate),
                        ("--rate-scale", d.rate_scale), ("--seed", d.seed), ("--poll-interval", d.poll_interval),
                        ("--ready-timeout", d.ready_timeout)):
        assert re.search(rf"{flag} \S+ .*?\(default {value:g}[;)]", text), flag
    args = cli.build_parser().parse_args(["demo-fleet", "--write-config", "x.toml", "--rate", "churn-prod=3.5",
                                          "--seed", "7", "--exit-with-parent", "--workdir", "w"])
    assert (args.rate, args.seed, args.drift_at, args.exit_with_parent, args.workdir) == (
        [("churn-prod", 3.5)], 7, None, True, "w")


def test_run_job_with_an_unreadable_spec_fails_the_job_in_one_line(tmp_path: Path) -> None:
    import subprocess

    from modeldeck.core import paths
    from modeldeck.core.registry import Registry

    db = tmp_path / "registry.db"
    with Registry(db) as reg:
        reg.register("churn", "s3://models/churn/1.pkl")
        job = reg.create_job("churn", trigger="manual", runner="command", reason="test")
    r = subprocess.run([*paths.python_argv(), "-m", "modeldeck", "run-job", str(job.id), "--registry", str(db)],
                       input="{not json", capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"modeldeck: job {job.id}: unreadable job spec on stdin")
    with Registry(db) as reg:
        failed = reg.job(job.id)
    assert failed.status == "failed" and "unreadable job spec" in failed.message


async def test_a_key_makes_the_poller_thread_make_way(world) -> None:
    # the app tells its PollerSource a key is being handled; the poller's refresh asks it (busy)
    settings, _ = world
    app = ModeldeckApp(settings, clock=lambda: NOW)
    async with app.run_test(size=(120, 35)) as pilot:
        source = app.source
        assert isinstance(source, PollerSource)
        assert await _until(pilot, lambda: source._poller is not None)
        assert source._poller.busy == source._busy
        before = source._busy_until
        await pilot.press("j")  # (busy() itself lasts 0.25 s: too short to read on a loaded machine)
        assert source._busy_until > before
