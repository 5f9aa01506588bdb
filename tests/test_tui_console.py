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
        assert watch.index("audit log") < watch.index("pause polling")  # screen's keys first
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
        assert "?/f1 Help" in bar
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
        assert "Promote" not in keybar_text(app) and "f1 Help" in keybar_text(app)  # ? is a letter here
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


# -- 4, 5. drift cells and the reason line ----------------------------------------------------------------


def low_sample_drift():
    from modeldeck.core import judge

    columns = [{"column": name, "kind": "num", "method": "wasserstein", "score": 0.9, "threshold": 0.1,
                "drifted": False, "psi": 2.11, "status": "low_sample", "n_current": 15} for name in ("a", "b")]
    result = {"dataset_drift": False, "n_columns": 0, "n_drifted": 0, "drift_share": 0.0, "n_current": 15,
              "columns": columns}
    return judge.summarize_drift(result, version="2", computed_at=NOW - 3)


async def test_drift_cell_shows_the_window_until_a_column_is_judged_and_psi_with_its_zero(world) -> None:
    from dataclasses import replace

    from modeldeck.tui.widgets.livetable import LiveTable

    _, source = world
    latest, history = fleet_snapshots()
    latest["churn-prod"] = replace(latest["churn-prod"], drift=low_sample_drift())
    source.set(latest, history)
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause(0.2)
        table = app.screen.query_one("#fleet-table", LiveTable)
        cell = table.get_cell("churn-prod", "drift")
        assert str(cell) == "n=15" and cell.style == "dim"  # neutral: no PSI from 15 rows, no red
        assert "drift not judged yet: 15 rows in the window" in static_text(app, "#fleet-detail")
        assert "drifting" not in static_text(app, "#fleet-header")
        await pilot.press("enter", "2")
        await pilot.pause(0.2)
        assert "no column judged yet: 15 rows in the window" in static_text(app, "#drift-summary")
        source.set(fleet_snapshots()[0], history)
        app.refresh_views(force=True)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert str(table.get_cell("churn-prod", "drift")) == "2/3 0.41"


async def test_the_reason_line_says_what_is_drifting_and_the_header_counts_it(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause(0.2)
        assert "1 drifting" in static_text(app, "#fleet-header")
        detail = static_text(app, "#fleet-detail")
        assert "drifting: tenure, plan (2 of 3 columns, dataset drift), worst PSI 0.41 (tenure)" in detail


# -- 6. widths by content -----------------------------------------------------------------------------------


def test_share_gives_natural_widths_when_they_fit_and_cuts_the_widest_first() -> None:
    from modeldeck.core.textfmt import middle
    from modeldeck.tui.widgets.widths import share

    assert share([(3, 3), (5, 40), (5, 10)], 80) == [3, 40, 10]
    assert share([(3, 3), (5, 60), (5, 30)], 60) == [3, 26, 25]  # the widest give way first
    assert share([(3, 3), (5, 60), (5, 30)], 10) == [3, 5, 5]  # never below the minimum
    assert middle("/home/ana/projects/churn/very/long/registry.db", 24) == "/home/ana/p…/registry.db"
    assert middle("short.db", 24) == "short.db"


async def test_wide_terminal_cuts_nothing_that_fits_and_the_gates_metrics_come_first(world, tmp_path: Path) -> None:
    from textual.widgets import DataTable

    from modeldeck.core.registry import Registry

    metrics = {"accuracy": 0.887, "recall": 0.84, "log_loss": 0.31, "f1": 0.874}
    long_reason = "retrained on the November window after pricing"  # 30 cells were shown before
    with Registry(tmp_path / "registry.db") as reg:
        reg.register("churn", "s3://models/churn/4.pkl", metrics=metrics)
        reg.set_policy("churn", {"gates": [{"metric": "f1", "min_absolute_change": -0.01}]}, "rules")
        reg.approve("churn", 4, long_reason)
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("enter")
        await pilot.pause(0.5)
        table = app.screen.query_one("#versions-table", DataTable)
        cell = table.get_cell("4", "metrics")
        assert str(cell).startswith("f1=0.874 ")  # the gate's metric first
        assert str(cell) == "f1=0.874 accuracy=0.887 log_loss=0.31 recall=0.84"
        assert table.columns["metrics"].width >= cell.cell_len  # nothing cut at 120 columns
        assert table.virtual_size.width <= 118
        await pilot.press("escape", "A")
        await pilot.pause(0.5)
        audit = app.screen.query_one("#audit-table", DataTable)
        reason = audit.get_cell(str(app.screen.entries[0].id), "reason")
        assert str(reason) == long_reason and audit.columns["reason"].width >= len(long_reason)


async def test_the_header_shortens_long_paths_in_the_middle(world, tmp_path: Path, monkeypatch) -> None:
    from dataclasses import replace

    settings, source = world
    deep = tmp_path / ("very-long-folder-name-" * 4) / "registry.db"
    app = ModeldeckApp(replace(settings, registry=deep), source=source, clock=lambda: NOW)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause(0.2)
        header = static_text(app, "#fleet-header")
        assert "…" in header and header.rstrip().endswith("modeldeck.toml") and "registry.db" in header
        assert len(header.rstrip()) <= 118


# -- 7. charts: span, time axis, zero-based scale, threshold ----------------------------------------------------


def test_bars_start_at_zero_and_draw_the_threshold() -> None:
    from modeldeck.tui.widgets.trend import buckets, nice_top, render_bars, time_axis

    assert nice_top(29) == 50 and nice_top(7) == 10 and nice_top(0.31) == 0.5
    cols = buckets([(0, 7.0), (10, 29.0)], 4, 0, 10)
    assert cols == [7.0, 7.0, 7.0, 29.0]  # a value holds until the next poll
    bars = render_bars(cols, 2, 40.0, 20.0)
    lines = [str(t) for t in bars]
    assert lines == ["┈┈┈▄", "▃▃▃█"]  # 7 of 40 is a low bar (no cliff); the threshold line at 20 on top
    assert bars[0].spans[-1].style == "red"  # the bar over the threshold takes its colour
    assert str(time_axis(60, 300)).startswith("-5m") and str(time_axis(60, 300)).endswith("now")


async def test_live_charts_show_their_span_time_axis_and_threshold(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("enter", "3")
        await pilot.pause(0.3)
        rps = app.screen.query_one("#live-rps")
        title = str(rps.query_one(".trend--title", Static).render())
        chart = str(rps.query_one(".trend--chart", Static).render())
        assert "last 60 s" in title and "0–50.0" in title
        assert chart.splitlines()[-1].lstrip().startswith("-60s") and chart.rstrip().endswith("now")
        err = app.screen.query_one("#live-err")
        assert "warn 5.0%" in str(err.query_one(".trend--title", Static).render())


# -- 8. mistakes: a second retraining job, cancelling, SIGTERM -------------------------------------------------


def test_a_job_ended_by_sigterm_says_so() -> None:
    from modeldeck.core.registry import Job
    from modeldeck.tui.screens.retrain import exit_words, job_end_text

    fields = {f: None for f in Job.__dataclass_fields__}
    job = Job(**{**fields, "id": 7, "model": "churn", "status": "cancelled", "exit_code": -15})
    assert job_end_text(job) == "job #7 cancelled (SIGTERM)"
    assert exit_words(3) == "3" and exit_words(None) == "-" and exit_words(-9) == "SIGKILL"


def retrain_world(tmp_path: Path):
    import sys

    from modeldeck.core import config as configmod

    cfg = tmp_path / "modeldeck.toml"
    cfg.write_text(cfg.read_text().replace(
        "[models.fraud]", f"[models.churn]\nretrain = {{ command = [{sys.executable!r}, \"-c\", \"pass\"] }}\n"
                          "[models.fraud]"))
    latest, history = fleet_snapshots()
    return configmod.parse_file(cfg), FixedSource(latest, history)


async def test_retraining_again_while_a_job_is_queued_asks_first_and_cancel_asks_too(world, tmp_path: Path) -> None:
    from modeldeck.core.registry import Registry

    with Registry(tmp_path / "registry.db") as reg:
        queued = reg.create_job("churn", trigger="manual", runner="command", reason="first try")
    app = make_app(retrain_world(tmp_path))
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("enter")
        await pilot.pause(0.3)
        await pilot.press("n")
        await pilot.pause(0.3)
        await pilot.press(*"again", "enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        question = static_text(app, "#confirm-question")
        assert f"churn is already retraining (#{queued.id} queued). Start another job?" in question
        await pilot.press("n")  # keep one: nothing starts
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "RetrainScreen" and app.screen.run is None
        assert "nothing started" in static_text(app, "#retrain-hint")
        await pilot.press("escape", "J")
        await pilot.pause(0.5)
        await pilot.press("c")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ConfirmScreen"
        assert f"Cancel job #{queued.id} of churn (queued)?" in static_text(app, "#confirm-question")
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "JobsScreen"
    with Registry(tmp_path / "registry.db") as reg:
        assert [(j.id, j.status) for j in reg.jobs("churn")] == [(queued.id, "queued")]


# -- 9. rollback at the bottom of the history, and to a chosen version -------------------------------------------


def test_rollback_with_nowhere_to_go_words_the_real_history(tmp_path: Path) -> None:
    from modeldeck.core.registry import Registry
    from modeldeck.core.releases import no_rollback_target

    with Registry(tmp_path / "r.db") as reg:
        for i in range(3):
            reg.register("m", f"s3://m/{i}")
            reg.approve("m", i + 1, "ok")
        reg.promote("m", 1, "production", "one")
        assert no_rollback_target(reg, "m", "production", 1) == (
            "production of m has only ever held version 1: there is nothing to roll back to")
        reg.promote("m", 2, "production", "two")
        reg.promote("m", 3, "production", "three")
        reg.rollback("m", "production", "back to 2")
        reg.rollback("m", "production", "back to 1")
        assert reg.alias("m", "production") == 1 and reg.rollback_target("m", "production") is None
        text = no_rollback_target(reg, "m", "production", 1)
        assert "has held versions 1, 2, 3" in text and "--to VERSION" in text and "roll back to version…" in text
        assert "only ever held" not in text


async def test_the_rollback_picker_offers_any_version(world) -> None:
    from textual.widgets import OptionList

    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("enter")
        await pilot.pause(0.5)
        await pilot.press("R")
        await pilot.pause(0.2)
        await pilot.press("enter")  # production
        await pilot.pause(0.2)
        options = app.screen.query_one(OptionList)
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert prompts[0].startswith("previous") and "the previous holder: version 1" in prompts[0]
        assert any(p.startswith("3") and "version 3: pending" in p for p in prompts)
        assert not any(p.startswith("2 ") for p in prompts)  # production holds 2
        await pilot.press("down", "enter")  # version 3
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ReleaseScreen")
        assert app.screen.to == 3
        await wait_for(pilot, lambda: app.screen.state != "planning")
        assert "version 3" in static_text(app, "#release-plan")
        await pilot.press("escape")


# -- 10, 11. read-only keys say why; notices ----------------------------------------------------------------------


async def test_read_only_write_keys_say_why_and_notices_do_not_stack(world, tmp_path: Path, monkeypatch) -> None:
    app = make_app(world, read_only=True)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        for _ in range(3):  # 2 s -> 5 -> 10 -> 30
            await pilot.press("plus")
        await pilot.pause(0.2)
        shown = [n.message for n in app._notifications if "polling every" in n.message]
        assert shown == ["polling every 30 s"]  # one notice, updated
        for _ in range(8):
            await pilot.press("minus")
        await pilot.pause(0.2)
        shown = [n.message for n in app._notifications if "polling every" in n.message]
        assert shown == ["polling every 0.5 s already: the shortest interval"]
        await pilot.press("enter")
        await pilot.pause(0.3)
        await pilot.press("P")
        await pilot.pause(0.2)
        assert any(n.message.startswith("read-only: promote is disabled") for n in app._notifications)
        await pilot.press("R")
        await pilot.pause(0.2)
        assert any(n.message.startswith("read-only: roll back is disabled") for n in app._notifications)
        app.notify("boom", severity="error")
        await pilot.pause(0.1)
        assert next(n for n in app._notifications if n.message == "boom").timeout == 8


async def test_a_screenshot_goes_to_the_state_folder_without_downloads_and_says_where(world, tmp_path: Path,
                                                                                      monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(home / "Downloads"))
    app = make_app(world)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        app.action_screenshot()
        await wait_for(pilot, lambda: any("saved screenshot" in n.message for n in app._notifications))
        note = next(n.message for n in app._notifications if "saved screenshot" in n.message)
        folder = tmp_path / "state" / "modeldeck" / "screenshots"
        saved = list(folder.glob("*.svg"))
        assert len(saved) == 1 and note == f"saved screenshot to {saved[0]}"  # plain text, no markup


# -- 12. audit screen ------------------------------------------------------------------------------------------------


async def test_audit_detail_keeps_json_indentation_scrolls_and_v_and_filters_answer(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(100, 24), notifications=True) as pilot:
        await pilot.press("A")
        await pilot.pause(0.5)
        await pilot.press("v")
        await wait_for(pilot, lambda: any("audit chain intact: 10 entries" in n.message for n in app._notifications))
        await pilot.press("enter")
        await pilot.pause(0.2)
        text = static_text(app, "#audit-entry-text")
        assert '\n              "' in text  # 10 for the label column + the JSON's own 2 (or 4) spaces
        box = app.screen.query_one("#audit-entry-box")
        if box.max_scroll_y:
            await pilot.press("j")
            assert box.scroll_y == 1
        await pilot.press("escape", "slash")
        await pilot.press(*"actor:nobody", "enter")
        await pilot.pause(0.5)
        assert "no entry matches the filter" in static_text(app, "#audit-header")
        await pilot.press("slash", *(["backspace"] * 12), *"user:ana", "enter")
        await pilot.pause(0.5)
        assert "user: is no filter key (model:, action:, actor:)" in static_text(app, "#audit-header")


async def test_fleet_filter_keys_and_no_match_say_so(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("slash", *"env:staging")
        await pilot.pause(0.2)
        assert app.screen._rows == ["churn-staging"]
        await pilot.press(*(["backspace"] * 11), *"owner:ana")
        await pilot.pause(0.2)
        assert "owner: is no filter key (name:, model:, env:, status: or words)" in static_text(app, "#fleet-header")
        await pilot.press(*(["backspace"] * 9), *"zzz")
        await pilot.pause(0.2)
        assert "no endpoint matches" in static_text(app, "#fleet-header")


# -- 13. colours, theme kept, Resume ----------------------------------------------------------------------------


async def test_status_colours_are_distinguishable_in_every_theme_and_in_16_colours(world) -> None:
    from rich.color import ColorSystem
    from rich.style import Style
    from textual.color import Color
    from textual.filter import ANSIToTruecolor

    from modeldeck.core import judge
    from modeldeck.tui.app import THEMES
    from modeldeck.tui.palette import contrast
    from modeldeck.tui.widgets.cells import STATUS_STYLE

    family = {"red": {1, 9}, "green": {2, 10}, "yellow": {3, 11}}
    styles = {**{k: v for k, v in STATUS_STYLE.items() if k != "PENDING"},
              **{lv: s for lv, s in judge.STYLE.items() if s and s != "dim"}}
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        for theme in THEMES:
            app.theme = theme
            await pilot.pause()
            bg = app.screen.styles.background.rich_color
            bg_rgb = tuple(bg.get_truecolor())
            to_truecolor = ANSIToTruecolor(app.ansi_theme)
            seen = {}
            for name, style_text in styles.items():
                style = to_truecolor.truecolor_style(Style.parse(style_text), bg)
                rgb = tuple(style.color.triplet)
                assert contrast(rgb, bg_rgb) >= 3.0, (theme, name, rgb, bg_rgb)
                word = next(w for w in family if w in style_text)
                assert style.color.downgrade(ColorSystem.STANDARD).number in family[word], (theme, name, rgb)
                seen[word] = rgb
            assert len(set(seen.values())) == 3  # red, green and yellow stay apart
            fg = Color.parse(app.theme_variables["foreground"]).rich_color
            pending = to_truecolor.truecolor_style(Style(color=fg, dim=True), bg)  # grey text (PENDING, hints)
            grey = tuple(pending.color.triplet)
            assert contrast(grey, bg_rgb) >= 3.0, (theme, "dim", grey, bg_rgb)


async def test_the_theme_is_kept_across_restarts_and_p_reads_resume_while_paused(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("t")
        chosen = app.theme
        await pilot.press("p")
        await pilot.pause(0.2)
        assert "p Resume" in keybar_text(app) and "p Pause" not in keybar_text(app)
        await pilot.press("p")
        await pilot.pause(0.2)
        assert "p Pause" in keybar_text(app)
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause()
        assert app.theme == chosen != "textual-dark"
