"""The TUI on fixed data, driven by Pilot: navigation, filter, pause, interval, help, theme,
read-only, markup safety, errors as notices. (Against the live demo fleet: test_tui_demo.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from modeldeck.core import paths
from modeldeck.tui.app import ModeldeckApp, setup_logging
from modeldeck.tui.source import FixedSource
from modeldeck.tui.widgets.keybar import KeyBar
from modeldeck.tui.widgets.livetable import LiveTable
from tests.tui_fixtures import EVIL, NOW, fleet_snapshots, write_world


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = write_world(tmp_path)
    latest, history = fleet_snapshots()
    return settings, FixedSource(latest, history)


def make_app(world, **kw) -> ModeldeckApp:
    settings, source = world
    return ModeldeckApp(settings, source=source, clock=lambda: NOW, **kw)


def cell_text(table: DataTable | LiveTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


def static_text(app: ModeldeckApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_fleet_shows_every_endpoint_with_its_numbers(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert table.row_count == 4
        assert cell_text(table, "churn-prod", "status") == "DEGRADED"
        assert cell_text(table, "churn-prod", "drift") == "2/3 0.41"
        assert cell_text(table, "fraud-prod", "err") == "31.0"
        assert cell_text(table, "fraud-prod", "p95") == "640"
        assert cell_text(table, "churn-staging", "version") == "3/3"
        assert cell_text(table, "churn-prod", "age") == "1s"
        header = static_text(app, "#fleet-header")
        assert "1 up" in header and "2 degraded" in header and "1 down" in header and "every 2s" in header
        assert "registry registry.db" in header


async def test_untrusted_text_is_shown_literally(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert cell_text(table, EVIL, "name") == EVIL
        assert cell_text(table, EVIL, "model") == EVIL
        await pilot.press("j", "j", "j")
        detail = static_text(app, "#fleet-detail")
        assert "[/bold]" in detail and "<html>[link=x]" in detail and "\x1b" not in detail
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "ModelScreen"
        assert EVIL in static_text(app, "#model-header")
        await pilot.press("l")
        await pilot.pause()
        lineage = static_text(app, "#lineage-text")
        assert "[/bold]" in lineage and "[red] = 1" in lineage


async def test_navigation_model_screen_drift_and_back(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("j", "k", "enter")
        await pilot.pause(0.3)
        screen = app.screen
        assert type(screen).__name__ == "ModelScreen" and screen.endpoint.name == "churn-prod"
        versions = screen.query_one("#versions-table", DataTable)
        assert versions.row_count == 3
        assert cell_text(versions, "2", "envs") == "production"
        assert cell_text(versions, "3", "envs") == "staging"
        assert cell_text(versions, "1", "approval") == "approved"
        await pilot.press("2")
        drift = screen.query_one("#drift-table", DataTable)
        assert drift.row_count == 3
        assert cell_text(drift, "tenure", "psi") == "0.410"
        assert cell_text(drift, "[red]monthly", "status") == "ok"
        hist = str(screen.query_one("#drift-histogram", Static).render())
        assert "tenure: reference vs current" in hist and "40%" in hist
        await pilot.press("j")  # next column: plan has no histogram
        assert "no distribution" in str(screen.query_one("#drift-histogram", Static).render())
        await pilot.press("1", "l")
        await pilot.pause()
        assert "s3://models/churn/3.pkl" in static_text(app, "#lineage-text")
        await pilot.press("escape", "escape")
        assert type(app.screen).__name__ == "FleetScreen"


async def test_escape_leaves_the_model_screen_wherever_the_focus_is_and_clears_a_selection(world) -> None:
    from textual.selection import Selection
    from textual.widgets import Tabs

    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        for tab in ("1", "2", "3", "4"):
            await pilot.press("enter", tab)
            await pilot.pause(0.2)
            model = app.screen
            if tab == "3":  # the live tab has no table: the tabs themselves have focus
                model.query_one(Tabs).focus()
                await pilot.pause()
            header = model.query_one("#model-header", Static)
            model.selections = {header: Selection(None, None)}  # text selected with the mouse
            await pilot.press("escape")
            assert type(app.screen).__name__ == "FleetScreen", tab
            assert model.selections == {}  # not still selected when the screen is shown again


async def test_a_kept_model_screen_is_restyled_only_when_the_apps_styling_changed(world, monkeypatch) -> None:
    from modeldeck.tui.widgets.keybar import KeyBar

    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        fleet = app.screen
        await pilot.press("enter")
        await pilot.pause(0.3)
        model = app.screen
        assert type(model).__name__ == "ModelScreen"
        assert fleet.query_one(KeyBar).display  # only a dialog hides the screen's key bar beneath it
        await pilot.press("escape", "enter", "escape")  # (its widgets' first mount added their CSS)
        await pilot.pause()
        restyled: list[object] = []
        whole = model.update_node_styles
        monkeypatch.setattr(model, "update_node_styles", lambda animate=True: (restyled.append(model), whole(animate)))
        await pilot.press("enter")  # the same row: the kept screen, nothing about the styling changed
        await pilot.pause(0.3)
        assert app.screen is model and restyled == []
        shown = model.styles.background
        await pilot.press("escape", "t")  # another theme while the model screen is hidden
        await pilot.pause(0.3)
        assert app.screen is fleet and fleet.styles.background != shown
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.screen is model and restyled == [model]
        assert model.styles.background == fleet.styles.background  # the new theme's, as the fleet's


async def test_a_kept_model_screen_shows_what_changed_while_it_was_away(world, monkeypatch) -> None:
    from tests.tui_fixtures import drift_summary, snapshot

    monkeypatch.setattr(ModeldeckApp, "refresh_views", lambda self, force=False: None)  # only the resume shows it
    app = make_app(world)
    source = world[1]
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("enter", "2")
        await pilot.pause(0.3)
        model = app.screen
        drift = model.query_one("#drift-table", DataTable)
        assert cell_text(drift, "tenure", "psi") == "0.410" and "DEGRADED" in static_text(app, "#model-header")
        await pilot.press("escape")
        await pilot.pause()
        was = drift_summary()
        columns = [dict(c, psi=0.52) if c["column"] == "tenure" else c for c in was.result["columns"]]
        source._latest["churn-prod"] = snapshot(
            "churn-prod", "churn", "production", "DOWN", reason="/v2/health/ready refused",
            drift=dataclasses.replace(was, computed_at=was.computed_at + 1, result={**was.result, "columns": columns}))
        source.generation += 1
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.screen is model
        header = static_text(app, "#model-header")
        assert "DOWN" in header and "refused" in header and "DEGRADED" not in header
        assert cell_text(drift, "tenure", "psi") == "0.520"


async def test_fleet_quality_column_and_the_model_quality_tab(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert cell_text(table, "churn-prod", "quality") == "auc .717 ▼"
        assert table.get_cell("churn-prod", "quality").style == "bold red"  # the judge: CRITICAL
        assert cell_text(table, "churn-staging", "quality") == "n=50/200"
        assert cell_text(table, "fraud-prod", "quality") == "auc .841"
        assert cell_text(table, EVIL, "quality") == "-"
        assert "1 quality ▼" in static_text(app, "#fleet-header")
        assert "quality roc_auc 0.717 (registered 0.860), 1000 labelled rows" in static_text(app, "#fleet-detail")
        await pilot.press("enter", "4")
        await pilot.pause(0.3)
        screen = app.screen
        q = screen.query_one("#quality-table", DataTable)
        assert q.row_count == 5 and q.has_focus
        assert cell_text(q, "roc_auc", "value") == "0.717" and cell_text(q, "roc_auc", "registered") == "0.860"
        assert cell_text(q, "roc_auc", "delta") == "-0.143" and cell_text(q, "roc_auc", "method") == "bootstrap"
        assert cell_text(q, "accuracy", "interval") == "0.716-0.770" and cell_text(q, "accuracy", "rows") == "1000"
        assert q.get_cell("accuracy", "value").style == "bold yellow"  # WARNING: 0.096 below, not twice 0.05
        summary = static_text(app, "#quality-summary")
        assert "QUALITY DROP" in summary and "labelled 90.0% of the newest 1000 captured rows" in summary
        assert "label lag 90 s" in summary
        assert "version 2's registered value on abababa… (1500 rows)" in summary
        assert "100 captured rows without a label" in summary and "CRITICAL: roc_auc 0.717" in summary
        estimate = static_text(app, "#quality-estimate")
        assert estimate.startswith("estimated (CBPE, not measured) accuracy 0.") and "100 newest rows" in estimate
        confusion = static_text(app, "#quality-confusion")
        assert "pred 1" in confusion and "true 0" in confusion
        # one measurement so far (the fixed history carries no other): its blocks of labelled rows
        assert "roc_auc by inference time (250 labelled rows a point; one measurement so far)" in str(
            screen.query_one("#quality-trend").query_one(Static).render())
        await pilot.press("escape", "j", "enter", "4")  # churn-staging: not enough labels yet
        await pilot.pause(0.3)
        assert "not enough labels: 50 labelled rows of the 200 needed (no verdict)" in static_text(
            app, "#quality-summary")
        await pilot.press("escape", "j", "enter", "4")  # fraud-prod: class labels with markup stay literal
        await pilot.pause(0.3)
        assert "pred [red]fraud" in static_text(app, "#quality-confusion")
        assert "quality as registered" in static_text(app, "#quality-summary")


def _measured(tmp_path: Path, kind: str, at: float) -> Any:
    """A real quality measurement (core.quality on files or frames) judged against version 2's
    registered roc_auc 0.86: ``files`` reads tests.test_quality's capture and label glob (two
    label files older than the captures: skipped, counted); ``weak`` is a model barely better
    than chance (ROC AUC about 0.6)."""
    import numpy as np
    import pandas as pd

    from modeldeck.core import capture, quality
    from modeldeck.core.snapshot import QualitySummary
    from tests.test_quality import _skip_world

    reg = quality.Registered("churn", 2, {"roc_auc": 0.86, "accuracy": 0.84, "precision": 0.99}, "ab" * 32, 1500)
    if kind == "files":
        cap, gt = _skip_world(tmp_path)
        result = quality.assess(cap, gt, quality.QualitySpec(), clock=lambda: at)
    else:
        rng = np.random.default_rng(int(at) % 1000)
        n = 1000
        y = (rng.random(n) < 0.4).astype(int)
        score = np.clip(0.12 * y + 0.88 * rng.random(n), 0, 1).round(3)
        ids = [f"w{i}" for i in range(n)]
        frame = pd.DataFrame({"_id": ids, "prediction": (score >= 0.5).astype(int), "probability": score},
                             index=pd.DatetimeIndex(pd.to_datetime(at - 900 + np.arange(n) * 0.5, unit="s", utc=True)))
        labels = capture._label_table(ids, list(y), [None] * n)
        result = quality.measure(quality.join(frame, labels, quality.QualitySpec()), clock=lambda: at)
    return QualitySummary(computed_at=at, version="2", result=quality.document(result, reg, 0.05))


async def test_quality_tab_charts_the_measurements_over_time_and_counts_skipped_label_files(
        world, tmp_path: Path) -> None:
    from textual.widgets import Static as _Static

    from modeldeck.core.snapshot import QualityPoint
    from modeldeck.tui.widgets.trend import BLOCKS

    settings, _ = world
    latest, history = fleet_snapshots()
    weak = [_measured(tmp_path, "weak", NOW - 400 + 100 * i) for i in range(3)]
    good = _measured(tmp_path, "files", NOW - 100)
    points = [QualityPoint.of(q) for q in (*weak, good)]
    assert [p.value("roc_auc") is not None for p in points] == [True] * 4
    assert max(p.value("roc_auc") for p in points[:3]) < 0.66 < 0.8 < points[-1].value("roc_auc")
    latest["churn-prod"] = dataclasses.replace(latest["churn-prod"], quality=good)
    source = FixedSource(latest, history, quality_history={"churn-prod": points})
    app = ModeldeckApp(settings, source=source, clock=lambda: NOW)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("enter", "4")
        await pilot.pause(0.3)
        screen = app.screen
        summary = static_text(app, "#quality-summary")
        assert "20 captured rows without a label" in summary
        assert "2 label files skipped (last written before the oldest captured row read, less 5 minutes)" in summary
        # precision rests on the predicted positives: fewer than quality_min_rows, shown but not judged
        q = screen.query_one("#quality-table", DataTable)
        precision = good.result["metrics"]["precision"]
        assert precision["rows"] < 200 and precision["value"] < 0.99 - 0.1
        assert cell_text(q, "precision", "method") == "wilson (not judged: <200 rows)"
        assert q.get_cell("precision", "value").style == "" and "precision" not in summary
        trend = screen.query_one("#quality-trend")
        title, chart = (str(w.render()) for w in trend.query(_Static))
        newest = points[-1].value("roc_auc")
        assert f"roc_auc over time (4 measurements, each of the newest {points[-1].rows} labelled rows)" in title
        assert f"{newest:.3f}" in title and "last 7 min" in title and "registered 0.860" in title
        top, middle, bottom, axis = chart.split("\n")
        # from zero to 1, placed by time: the weak measurements stay under the registered line
        # (┈ on the top row), the newest (100 s ago) reaches into the top row; the axis ends now
        last = len(bottom.rstrip()) - 1  # the newest point's column
        assert last < len(bottom) - 10 and top[0] == "┈" and top[last] in BLOCKS[1:]
        assert "".join(top[:last]).strip("┈") == "" and middle[0] in BLOCKS[1:] and bottom[0] == "█"
        assert axis.rstrip().endswith("now") and axis.startswith("-7m")
        # a second measurement arriving is charted at once (four points -> five)
        late = _measured(tmp_path, "weak", NOW - 20)
        latest["churn-prod"] = dataclasses.replace(latest["churn-prod"], quality=late)
        source.set(latest, history, quality_history={"churn-prod": [*points, QualityPoint.of(late)]})
        await pilot.pause(0.8)
        title, chart = (str(w.render()) for w in trend.query(_Static))
        assert "5 measurements" in title and f"{late.result['metrics']['roc_auc']['value']:.3f}" in title
        top, _, bottom, _ = chart.split("\n")
        assert top[len(bottom.rstrip()) - 1] == "┈"  # the newest point, 20 s ago, is back under the line
        assert len(bottom.rstrip()) > last + 5 and BLOCKS[1:].find(top[last]) >= 0


async def test_filter_by_name_model_environment_or_status(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one("#fleet-table", LiveTable)
        await pilot.press("slash", *"staging")
        assert table.row_count == 1
        await pilot.press("ctrl+a")  # keep typing replaces nothing; clear with escape instead
        await pilot.press("escape")
        assert table.row_count == 4
        await pilot.press("slash", *"down", "enter")
        assert table.row_count == 1 and table.has_focus
        assert "filter: down (1/4)" in static_text(app, "#fleet-header")
        await pilot.press("enter")  # opens the one endpoint left
        await pilot.pause(0.2)
        assert app.screen.endpoint.name == EVIL


async def test_pause_interval_poll_theme(world) -> None:
    app = make_app(world)
    source = world[1]
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        await pilot.press("p")
        assert source.paused and "PAUSED" in static_text(app, "#fleet-header")
        await pilot.press("p")
        assert not source.paused
        await pilot.press("plus")
        assert source.interval == 5.0
        await pilot.press("minus", "minus")
        assert source.interval == 1.0
        theme = app.theme
        await pilot.press("t")
        assert app.theme != theme
        assert any("polling every 1 s" in n.message for n in app._notifications)


async def test_help_lists_the_bindings_of_the_current_screen(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        help_screen = app.screen
        actions = {what for _, what, _ in help_screen.entries}
        assert {"filter the rows (esc clears)", "open the selected row", "pause polling", "quit",
                "this help", "next colour theme (kept across restarts)", "audit log (who did what, hash-chained)"} \
            <= actions
        keys = {keys for keys, _, _ in help_screen.entries}
        assert "/" in keys and "? f1" in keys
        await pilot.press("escape", "enter", "question_mark")
        await pilot.pause()
        model_actions = {what for _, what, _ in app.screen.entries}
        assert "lineage of the selected version" in model_actions and "filter the rows (esc clears)" not in model_actions


async def test_errors_become_notices_and_the_app_keeps_running(world, tmp_path: Path) -> None:
    setup_logging()
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        (tmp_path / "registry.db").unlink()  # the registry disappears under the app
        for side in ("-wal", "-shm"):
            (tmp_path / f"registry.db{side}").unlink(missing_ok=True)
        await pilot.press("enter")
        await pilot.pause(0.5)
        messages = [n.message for n in app._notifications]
        assert any("no registry here" in m for m in messages), messages
        assert type(app.screen).__name__ == "ModelScreen"
        await pilot.press("escape", "j")
        assert app.is_running
    log = paths.log_file().read_text()
    assert "no registry here" in log


async def test_read_only_is_shown(world) -> None:
    app = make_app(world, read_only=True)
    async with app.run_test(size=(120, 35)):
        assert "read-only" in static_text(app, "#fleet-header")


async def test_fits_80_by_24(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert [c.key for c in table.columns] == ["name", "env", "status", "version", "rps", "err", "p95", "drift",
                                                  "quality"]
        assert table.virtual_size.width <= 80
        # every key the bar lists is on screen: its items take two lines at 80 columns
        bar = app.screen.query_one(KeyBar)
        lines = bar.render().plain.split("\n")
        assert len(lines) == 2 and bar.size.height == 2, (lines, bar.size)
        assert "Theme" in lines[1] and all(len(line) <= bar.content_size.width for line in lines)
        narrow = static_text(app, "#fleet-header")
        await pilot.press("enter")
        await pilot.pause(0.3)
        for tid in ("#versions-table", "#drift-table", "#quality-table"):
            assert app.screen.query_one(tid, DataTable).virtual_size.width <= 78
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert app.screen.query_one(KeyBar).size.height == 2  # and after coming back
        await pilot.resize_terminal(160, 24)
        await pilot.pause(0.3)
        assert app.screen.query_one(KeyBar).size.height == 1  # one line where they fit
        wide = static_text(app, "#fleet-header")  # laid out again for the new width: more of the paths
        assert len(wide) > len(narrow) and "…" in narrow, (narrow, wide)


def test_snapshot_fleet(world, snap_compare) -> None:
    assert snap_compare(make_app(world), terminal_size=(120, 35))


def test_snapshot_fleet_80x24(world, snap_compare) -> None:
    assert snap_compare(make_app(world), terminal_size=(80, 24))


def test_snapshot_model_drift(world, snap_compare) -> None:
    assert snap_compare(make_app(world), terminal_size=(100, 32), press=["enter", "2"])


# -- releases from the keyboard (fixed data; the live loop is in test_tui_demo.py) --------------------


async def open_fraud(pilot) -> None:
    await pilot.press("j", "j", "enter")
    await pilot.pause(0.3)
    assert pilot.app.screen.model == "fraud"


async def test_approve_with_a_reason(world, tmp_path: Path) -> None:
    from modeldeck.core.registry import Registry

    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        await open_fraud(pilot)
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("enter")  # no reason yet: refused, nothing written
        assert "a reason is required" in static_text(app, "#approval-hint")
        await pilot.press(*"offline eval ok", "enter")
        await pilot.pause(0.5)
        assert type(app.screen).__name__ == "ModelScreen"
    with Registry(tmp_path / "registry.db") as reg:
        v = reg.version("fraud", 1)
        assert (v.approval, v.approval_reason, v.approval_by) == ("approved", "offline eval ok", "tester")


async def test_escape_cancels_a_promotion_with_nothing_written(world, tmp_path: Path) -> None:
    from modeldeck.core.registry import Registry

    with Registry(tmp_path / "registry.db") as reg:
        before = reg.last_audit_id()
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await open_fraud(pilot)
        await pilot.press("P")
        await pilot.pause()
        assert type(app.screen).__name__ == "EnvironmentPicker"
        await pilot.press("enter")  # production: the endpoint's environment is the default
        await pilot.pause(0.5)
        assert type(app.screen).__name__ == "ReleaseScreen"
        plan = static_text(app, "#release-plan")
        assert "production: unset  →  version 1" in plan and "✘ approved" in plan
        await pilot.press(*"ship it", "escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelScreen"
    with Registry(tmp_path / "registry.db") as reg:
        assert reg.last_audit_id() == before and reg.alias("fraud", "production") is None


@pytest.mark.live  # a real release: verification polls, fails and rolls back
async def test_production_needs_the_typed_model_name_and_force_past_a_failing_gate(world, tmp_path: Path) -> None:
    from modeldeck.core.registry import Registry

    with Registry(tmp_path / "registry.db") as reg:
        reg.approve("fraud", 1, "ok")
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        await open_fraud(pilot)
        await pilot.press("P", "enter")
        await pilot.pause(0.5)
        assert "✘ healthy" in static_text(app, "#release-plan")  # fraud-prod errs at 31%
        await pilot.press(*"first release", "enter")  # moves to the confirmation box
        await pilot.press(*"frau", "enter")
        await pilot.pause()
        assert "type the model name 'fraud'" in static_text(app, "#release-hint")
        await pilot.press("d", "enter")
        await pilot.pause()
        assert "blocked by healthy" in static_text(app, "#release-hint")
        await pilot.press("tab", "space", "ctrl+s")  # tick force, release
        await pilot.pause(0.5)
        screen = app.screen
        assert screen.state in ("running", "done")
        for _ in range(80):  # nothing on port 9 will ever serve it: verification fails, rolls back
            if screen.state == "done":
                break
            await pilot.pause(0.25)
        assert screen.state == "done"
        assert screen.outcome.status == "rolled_back"
        assert any("rolled back" in n.message for n in app._notifications)
        await pilot.press("escape")
    with Registry(tmp_path / "registry.db") as reg:
        history = reg.history("fraud", "production")
        assert [h.action for h in history] == ["unset", "promote"]
        promote = reg.audit(action="promote")[0]
        assert promote.after["forced"] is True and promote.reason == "first release"


async def _open_release(pilot, key: str, env_row: int = 0) -> None:
    await pilot.press(key)
    await pilot.pause(0.3)
    assert type(pilot.app.screen).__name__ == "EnvironmentPicker"
    await pilot.press(*["j"] * env_row, "enter")
    for _ in range(40):
        await pilot.pause(0.1)
        if getattr(pilot.app.screen, "state", "planning") != "planning":
            break


async def test_promote_dialog_gate_lines_force_and_the_rollback_picker(world, tmp_path: Path) -> None:
    from textual.widgets import Checkbox, Input, OptionList

    from modeldeck.core.registry import Registry

    holdout = "93ddf3b" + "4" * 57
    with Registry(tmp_path / "registry.db") as reg:
        for version, auc in ((2, 0.82), (3, 0.80)):
            reg.record_evaluation("churn", version, {"auc": auc}, dataset_sha256=holdout, dataset_rows=300)
        reg.set_policy("churn", {"gates": [{"metric": "auc", "min_absolute_change": -0.01}]}, "rules")
        before = reg.last_audit_id()
    app = make_app(world)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("enter")  # churn-prod
        await pilot.pause(0.5)
        # the rollback picker: what each environment holds and where a rollback would go
        await pilot.press("R")
        await pilot.pause(0.3)
        options = app.screen.query_one(OptionList)
        notes = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert notes[0].startswith("production") and "holds version 2, rollback goes to version 1" in notes[0]
        assert "staging" in notes[1] and "holds version 3, no earlier version to roll back to" in notes[1]
        await pilot.press("escape")
        # v3 (newest row, pending): approval fails, and force is never offered past it
        await _open_release(pilot, "P")
        screen = app.screen
        plan = static_text(app, "#release-plan")
        assert "rules   registry policy version 1" in plan
        assert "✘ approved  churn version 3 is pending, not approved" in plan and "(cannot be forced)" in plan
        assert "✘ metric:auc  auc on 93ddf3b… (300 rows): 0.8 vs champion 0.82 (v2): improvement -0.02 < min -0.01" \
               in plan
        assert not screen.query_one("#release-force", Checkbox).display
        assert not screen.query_one("#release-reason", Input).display
        assert "approval cannot be forced" in static_text(app, "#release-hint")
        screen.query_one("#release-force", Checkbox).value = True  # even ticked behind the user's back
        screen.query_one("#release-reason", Input).value = "ship it"
        screen.query_one("#release-confirm", Input).value = "churn"
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert screen.state == "ready" and "approval cannot be forced" in static_text(app, "#release-hint")
        await pilot.press("escape")
        await pilot.pause(0.2)
        with Registry(tmp_path / "registry.db") as reg:
            assert reg.last_audit_id() == before and reg.alias("churn", "production") == 2
            reg.approve("churn", 3, "ok", actor="alice")
        # approved now: only the metric gate fails, and force may pass it
        await _open_release(pilot, "P")
        screen = app.screen
        plan = static_text(app, "#release-plan")
        assert "✔ approved  version 3 is approved by alice" in plan and "✘ metric:auc" in plan
        assert screen.query_one("#release-force", Checkbox).display
        assert screen.query_one("#release-reason", Input).display
        await pilot.press("escape")
        await pilot.pause(0.2)
        await pilot.press("l")  # the lineage lists the metrics with their data
        await pilot.pause(0.2)
        lineage = static_text(app, "#lineage-text")
        assert "93ddf3b… (300 rows) (evaluate) auc=0.8" in lineage and "unknown data (register) auc=0.83" in lineage


async def test_read_only_hides_every_write_action(world) -> None:
    app = make_app(world, read_only=True)
    async with app.run_test(size=(120, 35)) as pilot:
        await open_fraud(pilot)
        active = {b.binding.action for b in app.screen.active_bindings.values()}
        assert {"lineage", "audit", "jobs"} <= active
        assert not {"promote", "rollback", "approve", "reject", "retrain"} & active
        await pilot.press("P", "a", "n")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelScreen"


@pytest.mark.live
async def test_retrain_streams_output_and_the_jobs_screen_cancels_a_running_job(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from modeldeck.core import config as configmod
    from modeldeck.core.registry import Registry

    monkeypatch.chdir(tmp_path)
    write_world(tmp_path)
    script = tmp_path / "train.py"
    script.write_text("import sys, time\nprint('loading data for', sys.argv[1], flush=True)\ntime.sleep(60)\n")
    cfg = tmp_path / "modeldeck.toml"
    cfg.write_text(cfg.read_text().replace(
        "[models.fraud]", f"[models.churn]\nretrain = {{ command = [{sys.executable!r}, {str(script)!r}, "
                          "\"{model}\"] }\n[models.fraud]"))
    latest, history = fleet_snapshots()
    app = ModeldeckApp(configmod.parse_file(cfg), source=FixedSource(latest, history), clock=lambda: NOW)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        await pilot.press("enter")  # churn-prod
        await pilot.pause(0.3)
        await pilot.press("n")
        await pilot.pause(0.3)
        assert "runs " in static_text(app, "#retrain-pipeline")
        await pilot.press(*"try a deeper model", "enter")
        retrain = app.screen
        log = retrain.query_one("#retrain-log")
        for _ in range(60):
            if any("loading data for churn" in str(line) for line in log.lines):
                break
            await pilot.pause(0.25)
        assert any("loading data for churn" in str(line) for line in log.lines)
        await pilot.press("escape", "J")
        await pilot.pause(0.5)
        jobs = app.screen
        assert type(jobs).__name__ == "JobsScreen"
        for _ in range(20):
            if jobs.jobs and jobs.jobs[0].status == "running":
                break
            await pilot.pause(0.25)
        assert jobs.jobs[0].status == "running" and jobs.jobs[0].reason == "try a deeper model"
        await pilot.press("c")  # asks first
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ConfirmScreen"
        await pilot.press("y")
        for _ in range(40):
            if jobs.jobs and jobs.jobs[0].status == "cancelled":
                break
            await pilot.pause(0.25)
        assert jobs.jobs[0].status == "cancelled"
    with Registry(tmp_path / "registry.db") as reg:
        job = reg.jobs("churn")[0]
        assert (job.status, job.trigger, job.actor) == ("cancelled", "manual", "tester")
        assert [e.action for e in reg.audit(action="retrain")][:2] == ["retrain.cancelled", "retrain.start"]


async def test_the_command_palette_offers_every_action(world) -> None:
    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Filter", "Open", "Audit", "Pause", "Interval", "Poll", "Theme", "Help", "Quit"} <= titles
        await pilot.press("enter")
        await pilot.pause(0.3)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Promote", "Roll back", "Approve", "Reject", "Retrain", "Jobs", "Lineage"} <= titles
        pause = next(c for c in app.get_system_commands(app.screen) if c.title == "Pause")
        await pause.callback()
        assert app.source.paused


async def test_audit_screen_filters_verifies_and_opens_an_entry(world, tmp_path: Path) -> None:
    from textual.widgets import Input

    app = make_app(world)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("A")
        await pilot.pause(0.5)
        audit = app.screen
        assert "chain intact" in static_text(app, "#audit-header")
        assert len(audit.entries) == 10  # 5 registrations, 2 approvals, 3 promotions
        await pilot.press("slash")
        box = audit.query_one("#audit-filter", Input)
        box.value = "model:churn action:promote"
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert [e.action for e in audit.entries] == ["promote"] * 3
        assert all(e.subject.startswith("churn@") for e in audit.entries)
        await pilot.press("enter")
        await pilot.pause(0.2)
        text = static_text(app, "#audit-entry-text")
        assert "before" in text and "after" in text and '"version": 3' in text and "candidate" in text
        await pilot.press("escape")
    import sqlite3

    conn = sqlite3.connect(tmp_path / "registry.db")
    conn.execute("UPDATE audit SET reason='edited' WHERE id=3")
    conn.commit()
    conn.close()
    app = make_app(world)
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        await pilot.press("A")
        await pilot.pause(0.5)
        assert "chain BROKEN at entry 3" in static_text(app, "#audit-header")
        assert any("BROKEN" in n.message for n in app._notifications)
