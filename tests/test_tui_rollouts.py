"""The TUI's view of rollouts: the fleet row's badge, the rollouts screen with its live log,
X aborting with a reason and C confirming an unverified one (Pilot on the real app, rollouts
recorded in a real registry; this test process stands in for a live supervisor)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, RichLog

from modeldeck.core.registry import Registry, format_time
from modeldeck.tui.app import ModeldeckApp, active_rollouts_note
from modeldeck.tui.source import FixedSource
from modeldeck.tui.widgets.livetable import LiveTable
from tests.tui_fixtures import NOW, fleet_snapshots, write_world


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = write_world(tmp_path)
    latest, history = fleet_snapshots()
    return settings, FixedSource(latest, history)


def baking(registry: Path, seconds: float = 300.0) -> Any:
    """production of churn baking version 3 for ``seconds`` more, driven by this process."""
    with Registry(registry) as reg:
        reg.approve("churn", 3, "offline eval ok")
        r = reg.create_rollout("churn", "production", "promote", 3, "weekly retrain", from_version=2, bake_seconds=600)
        reg.promote("churn", 3, "production", "weekly retrain", expect=2, rollout_id=r.id)
        reg.add_rollout_steps(r.id, [("2026-12-02T10:00:00.000000Z", "alias", "success", "[red]moved[/red] to 3")])
        end = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        reg.transition_rollout(r.id, "baking", "baking", bake_ends_at=format_time(end))
        reg.update_rollout(r.id, pid=os.getpid(), heartbeat_at=format_time(datetime.now(timezone.utc)))
        return reg.rollout(r.id)


async def _until(pilot: Any, done: Any, tries: int = 60) -> bool:
    for _ in range(tries):
        if done():
            return True
        await pilot.pause(0.1)
    return bool(done())


async def test_fleet_badge_rollouts_screen_abort_and_confirm(world) -> None:
    settings, source = world
    r = baking(settings.registry)
    with Registry(settings.registry) as reg:  # an older, unverified one of staging
        u = reg.create_rollout("churn", "staging", "promote", 2, "try", from_version=3)
        reg.rollback("churn", "staging", "try", to=2, expect=3, rollout_id=u.id)
        reg.transition_rollout(u.id, "unverified", "its supervisor (pid 1) stopped while baking")
    app = ModeldeckApp(settings, source=source, clock=lambda: NOW)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert await _until(pilot, lambda: "BAKING" in str(table.get_cell("churn-prod", "status")))
        cell = str(table.get_cell("churn-prod", "status"))
        assert cell.startswith("DEGRADED BAKING ") and cell.endswith("s") and int(cell.split()[-1][:-1]) > 200
        assert "UNVERIFIED" in str(table.get_cell("churn-staging", "status"))
        await pilot.press("o")
        screen = app.screen
        assert type(screen).__name__ == "RolloutsScreen"
        rows = screen.query_one(DataTable)
        assert await _until(pilot, lambda: rows.row_count == 2)
        assert str(rows.get_cell_at((0, 5))) == "UNVERIFIED" and str(rows.get_cell_at((1, 5))).startswith("BAKING")
        await pilot.press("j", "enter")  # the baking one's log, literal text
        log = screen.query_one(RichLog)
        assert await _until(pilot, lambda: any("[red]moved[/red] to 3" in line.text for line in log.lines))
        await pilot.press("X")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ReasonScreen"
        await pilot.press("enter")  # no reason: refused, asked again
        assert type(app.screen).__name__ == "ReasonScreen"
        await pilot.press(*"p95 doubled", "enter")
        with Registry(settings.registry) as reg:
            assert await _until(pilot, lambda: reg.rollout(r.id).abort_reason == "p95 doubled")
            assert reg.rollout(r.id).abort_by == "tester"  # the supervisor (here: nobody) rolls it back
        assert type(app.screen).__name__ == "RolloutsScreen"
        await pilot.press("k", "C")
        await pilot.pause(0.2)
        await pilot.press(*"checked staging by hand", "enter")
        with Registry(settings.registry) as reg:
            assert await _until(pilot, lambda: reg.rollout(u.id).state == "done")
        await pilot.press("escape")
        assert type(app.screen).__name__ == "FleetScreen"
        assert await _until(pilot, lambda: "UNVERIFIED" not in str(table.get_cell("churn-staging", "status")))
        app.rollouts_started.append(r.id)
    # quitting says what goes on and where to follow it
    assert active_rollouts_note(app) == [f"rollout {r.id} (churn production -> version 3, baking) goes on: "
                                         f"modeldeck rollout {r.id} --follow"]


async def test_read_only_hides_abort(world) -> None:
    settings, source = world
    baking(settings.registry)
    app = ModeldeckApp(settings, source=source, clock=lambda: NOW, read_only=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("o")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "RolloutsScreen"
        await pilot.press("X")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "RolloutsScreen"  # no dialog: nothing to write with
