"""The console an ops engineer adopts (issue 17), on fixed data, driven by Pilot: help, the keys
of dialogs, fields that keep what was typed, honest cells, widths, charts, mistakes the console
catches, notices. (test_tui.py has the basics; test_tui_demo.py the live demo fleet.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.widgets import Input, Static

from modeldeck.tui.app import ModeldeckApp
from modeldeck.tui.source import FixedSource
from modeldeck.tui.widgets.keybar import KeyBar
from tests.tui_fixtures import NOW, fleet_snapshots, write_world


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    settings = write_world(tmp_path)
    latest, history = fleet_snapshots()
    return settings, FixedSource(latest, history)


def make_app(world, **kw) -> ModeldeckApp:
    settings, source = world
    return ModeldeckApp(settings, source=source, clock=lambda: NOW, **kw)


def static_text(app: ModeldeckApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def keybar_text(app: ModeldeckApp) -> str:
    bars = [b for b in app.screen.query(KeyBar) if b.display]
    assert len(bars) == 1
    return str(bars[0].render())


def burst(app: ModeldeckApp, keys: list[str]) -> None:
    """Keys as a fast typist's terminal delivers them: all queued before the first is handled
    (Pilot's press waits for the app to go idle after each key)."""
    driver = app._driver
    assert driver is not None
    for key in keys:
        name = {" ": "space", "!": "exclamation_mark"}.get(key, key)
        char = key if len(key) == 1 else None
        if name == "enter":
            char = "\r"
        elif name == "tab":
            char = "\t"
        event = events.Key(name, char)
        event.set_sender(app)
        driver.send_message(event)


async def wait_for(pilot, condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    assert condition()


async def open_fraud(pilot) -> None:
    await pilot.press("j", "j", "enter")
    await wait_for(pilot, lambda: getattr(pilot.app.screen, "model", None) == "fraud")


# -- 1. help ------------------------------------------------------------------------------------------


async def test_help_groups_keys_by_purpose_with_a_legend_and_scrolls_at_80x24(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        helps = app.screen
        assert type(helps).__name__ == "HelpScreen"
        text = static_text(app, "#help-text")
        # Textual plumbing and internal names are gone
        for noise in ("Focus Next", "Copy selected", "LiveTable", "screen", "k Up", "Interval"):
            assert noise not in text, noise
        # grouped by purpose, in this order, the screen's own keys first
        heads = [line.strip() for line in text.splitlines() if line and not line.startswith(" ")]
        assert heads[:4] == ["Move", "Watch", "App", "Columns and colours"]
        move = text.split("Watch")[0]
        assert "j/k ↓/↑" in move and "next / previous row" in move and "enter" in move and "/" in move
        watch = text.split("Watch")[1].split("App")[0]
        assert watch.index("audit log") < watch.index("pause / resume polling")  # screen's keys first
        assert "+/-" in watch and "poll less / more often" in watch
        app_part = text.split("\nApp\n")[1]
        assert "? f1" in app_part and "ctrl+p" in app_part and "quit" in app_part
        # the legend of the fleet's columns and colours
        for term in ("SERVED/REG", "6/8 0.34", "n=15", "DEGRADED"):
            assert term in text, term
        # the most used keys are on screen at 80x24, and it scrolls with j/k, pgdn, home/end
        scroll = helps.query_one("#help-scroll")
        assert scroll.size.height >= 12
        first_screen = "\n".join(text.splitlines()[: scroll.size.height])
        assert "j/k" in first_screen and "enter" in first_screen and "audit log" in first_screen
        assert scroll.max_scroll_y > 0
        await pilot.press("j", "j")
        assert scroll.scroll_y == 2
        await pilot.press("k")
        assert scroll.scroll_y == 1
        await pilot.press("end")
        assert scroll.scroll_y == scroll.max_scroll_y
        await pilot.press("home")
        assert scroll.scroll_y == 0
        await pilot.press("pagedown")
        assert scroll.scroll_y > 5
        await pilot.press("escape", "enter", "question_mark")
        await pilot.pause(0.2)
        text = static_text(app, "#help-text")
        release = text.split("Release")[1]
        assert "promote the selected version" in release and "roll an environment back" in release
        assert "MISS R/C" in text and "low_sample" in text and "Help: Model" in static_text(app, "#help-title")


# -- 2. dialogs: their own key bar, help and q ------------------------------------------------------------


async def test_dialogs_show_their_own_keys_open_help_and_close_with_q(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_fraud(pilot)
        assert "Promote" in keybar_text(app)
        await pilot.press("P")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "EnvironmentPicker"
        bar = keybar_text(app)
        assert "esc Cancel" in bar and "Promote" not in bar and "Quit" not in bar and "Pause" not in bar
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "HelpScreen"
        assert "cancel (nothing is written)" in static_text(app, "#help-text")
        await pilot.press("escape")
        await pilot.press("q")  # q closes a dialog, never the app
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ModelScreen" and app.is_running
        # the approval dialog: focus is in the reason field, so ? is a letter and f1 is help
        await pilot.press("a")
        await pilot.pause(0.2)
        await pilot.press("question_mark")
        assert app.screen.query_one("#approval-reason", Input).value == "?"
        assert "Promote" not in keybar_text(app)
        await pilot.press("f1")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape", "escape")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ModelScreen"
        assert "Promote" in keybar_text(app)  # the screen's bar is back


async def test_a_finished_release_dialog_closes_with_q(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await open_fraud(pilot)
        await pilot.press("P", "enter")  # fraud version 1 is pending: approval fails, nothing to type
        await wait_for(pilot, lambda: getattr(app.screen, "state", "") == "ready")
        assert "approval cannot be forced" in static_text(app, "#release-hint")
        await pilot.press("q")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ModelScreen"


# -- 3. keys typed right after enter or tab --------------------------------------------------------------


async def test_keys_typed_right_after_enter_or_tab_land_in_the_next_field(world, tmp_path: Path) -> None:
    from modeldeck.core.registry import Registry

    with Registry(tmp_path / "registry.db") as reg:
        reg.approve("fraud", 1, "ok")
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await open_fraud(pilot)
        await pilot.press("P", "enter")
        await wait_for(pilot, lambda: getattr(app.screen, "state", "") == "ready")
        screen = app.screen
        reason = screen.query_one("#release-reason", Input)
        confirm = screen.query_one("#release-confirm", Input)
        assert confirm.display  # production: the model name is asked for
        burst(app, [*"ship it", "enter", *"fraud"])
        await wait_for(pilot, lambda: confirm.value == "fraud")
        assert reason.value == "ship it"
        # back into the filled field with shift+tab: the cursor is at its end, nothing selected
        burst(app, ["shift+tab", "!", "tab", "!"])
        await wait_for(pilot, lambda: confirm.value == "fraud!")
        assert reason.value == "ship it!"
        await pilot.press("escape")
    with Registry(tmp_path / "registry.db") as reg:
        assert reg.alias("fraud", "production") is None
