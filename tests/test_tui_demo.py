"""The TUI against the live demo fleet on loopback, with the real poller thread: the story
shows, navigation/filter/pause/help/read-only work on live data, an endpoint that stops
mid-test turns DOWN without hurting the app (the full release loop from the keys, which needs
more traffic, is tests/test_tui_release_loop.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.demo.fleet import DemoFleetProcess
from modeldeck.core.registry import Registry
from modeldeck.tui.app import ModeldeckApp
from modeldeck.tui.widgets.livetable import LiveTable
from tests.demo_helpers import fast_releases, snap, start_fleet, wait_for
from tests.faultservers import FaultServer

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("tui_demo")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path):
    fp = start_fleet(tmp_path_factory, shared_cache)
    yield fp
    fp.stop()


@pytest.fixture
def settings(fleet: DemoFleetProcess) -> config.Settings:
    return fast_releases(config.parse_file(Path(fleet.config_path)))


async def test_the_demo_story_shows_within_a_minute(settings) -> None:
    app = ModeldeckApp(settings)
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(LiveTable)
        await wait_for(pilot, lambda: all(getattr(snap(app, e.name), "status", "PENDING") != "PENDING"
                                          for e in settings.endpoints), 15, "every endpoint polled")
        # the screen reads new snapshots twice a second
        await wait_for(pilot, lambda: str(table.get_cell("churn-prod", "status")) == snap(app, "churn-prod").status,
                       5, "the table to show churn-prod's status", lambda: str(table.get_cell("churn-prod", "status")))
        await wait_for(pilot, lambda: getattr(getattr(snap(app, "churn-prod"), "drift", None), "dataset_drift",
                                              False), 60, "churn-prod to show dataset drift")
        await wait_for(pilot, lambda: (snap(app, "fraud-prod").error_ratio or 0) > 0.05, 60,
                       "fraud-prod errors over 5%")
        await wait_for(pilot, lambda: str(table.get_cell("fraud-prod", "status")) == "DEGRADED", 5,
                       "the table to show fraud-prod DEGRADED", lambda: str(table.get_cell("fraud-prod", "status")))
        await wait_for(pilot, lambda: str(table.get_cell("churn-prod", "drift")).split("/")[0] not in ("0", "-"), 5,
                       "the table to show churn-prod's drift", lambda: str(table.get_cell("churn-prod", "drift")))
        assert float(str(table.get_cell("fraud-prod", "err"))) > 5
        # its labels follow the drifted relation: the served version's accuracy drops, in red
        await wait_for(pilot, lambda: "▼" in str(table.get_cell("churn-prod", "quality")), 60,
                       "churn-prod's quality drop in the QUALITY column")
        cell = table.get_cell("churn-prod", "quality")
        assert str(cell).startswith(("acc .", "auc .")) and cell.style in ("bold yellow", "bold red"), cell
        assert "quality ▼" in str(app.screen.query_one("#fleet-header").render())


async def test_navigation_filter_pause_and_help_on_live_data(settings) -> None:
    app = ModeldeckApp(settings)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(LiveTable)
        await wait_for(pilot, lambda: snap(app, "demand-prod") is not None and
                       snap(app, "demand-prod").status != "PENDING", 15, "the first poll")
        await pilot.press("slash", *"fraud", "enter")
        assert table.row_count == 1 and table.cursor_key == "fraud-prod"
        await pilot.press("slash", "escape")
        assert table.row_count == len(settings.endpoints)
        assert table.cursor_key == "fraud-prod"  # the selection survives clearing the filter
        await pilot.press("p")
        await pilot.pause(1.5)  # let a poll already in flight land
        before = snap(app, "demand-prod").taken_at
        await pilot.pause(2.5)
        assert snap(app, "demand-prod").taken_at == before, "polling went on while paused"
        await pilot.press("p")
        await wait_for(pilot, lambda: snap(app, "demand-prod").taken_at > before, 5, "polling to resume")
        await pilot.press("k", "enter")
        await pilot.pause(0.5)
        assert app.screen.endpoint.name == table.rows[table.rows.index("fraud-prod") - 1]
        await pilot.press("question_mark")
        await pilot.pause()
        assert "promote the selected version (gated, confirmed)" in {what for _, what, _ in app.screen.entries}
        await pilot.press("escape")  # the help closes, then the model screen
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ModelScreen", 5, "the help to close")
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "FleetScreen", 5, "the fleet screen back")


async def test_an_endpoint_stopping_mid_test_goes_down_and_the_app_keeps_running(settings) -> None:
    server = FaultServer(model="extra", versions=["1"]).start()
    extra = config.EndpointConfig(name="extra-prod", model="extra", url=server.url,
                                  metrics_url=server.url + "/metrics", served_model="extra")
    app = ModeldeckApp(dataclasses.replace(settings, endpoints=(*settings.endpoints, extra)))
    try:
        async with app.run_test(size=(120, 35), notifications=True) as pilot:
            await wait_for(pilot, lambda: getattr(snap(app, "extra-prod"), "status", "PENDING") in ("UP", "DEGRADED"),
                           15, "the extra endpoint to answer")
            server.close()
            await wait_for(pilot, lambda: snap(app, "extra-prod").status == "DOWN", 20, "the stopped endpoint DOWN",
                           lambda: (snap(app, "extra-prod").status, snap(app, "extra-prod").reason))
            reason = snap(app, "extra-prod").reason
            assert "refused" in reason or "closed" in reason or "reset" in reason, reason
            table = app.screen.query_one(LiveTable)
            await wait_for(pilot, lambda: str(table.get_cell("extra-prod", "status")) == "DOWN", 5,
                           "the table to show extra-prod DOWN", lambda: str(table.get_cell("extra-prod", "status")))
            assert str(table.get_cell("demand-prod", "status")) in ("UP", "DEGRADED")
            await pilot.press("j", "k")
            assert app.is_running
    finally:
        server.close()


async def test_read_only_on_live_data_writes_nothing(settings, fleet: DemoFleetProcess) -> None:
    with Registry(fleet.registry_path) as reg:
        before = reg.last_audit_id()
    app = ModeldeckApp(settings, read_only=True)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.press("enter")
        await pilot.pause(0.5)
        await pilot.press("P", "R", "a", "x", "n")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "ModelScreen"
    with Registry(fleet.registry_path) as reg:
        assert reg.last_audit_id() == before
