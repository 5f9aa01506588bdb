"""``modeldeck --demo --via-prometheus``: the demo fleet scraped by a real Prometheus and watched
through PromQL, in the real TUI; the Prometheus stops with it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modeldeck.core.demo import prometheus
from modeldeck.tui.app import ModeldeckApp
from modeldeck.tui.cli import main
from modeldeck.tui.widgets.livetable import LiveTable
from tests.promserver import skip_reason

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("tui_demo")]


async def test_demo_via_prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    app = ModeldeckApp(None, demo=True, via_prometheus=True, demo_workdir=tmp_path / "demo")
    async with app.run_test(size=(130, 35)) as pilot:
        deadline = time.monotonic() + 90
        snap = None
        while time.monotonic() < deadline:
            await pilot.pause(0.25)
            snap = app.source.latest().get("churn-prod") if app.source is not None else None
            if snap is not None and snap.request_rate:
                break
        assert app.settings is not None and app.settings.prometheus is not None
        assert all(e.via_prometheus and e.selector for e in app.settings.endpoints)
        assert snap is not None and snap.request_rate, snap
        assert snap.profile == "mlserver" and snap.metrics_window == 15.0
        assert snap.served_versions  # from the version label (and the OIP metadata, still asked directly)
        app.refresh_views(force=True)
        await pilot.pause()
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert str(table.get_cell("churn-prod", "rps")) not in ("", "—", "-")
        prom = app.demo_prometheus
        assert prom is not None and prom.proc is not None and prom.proc.poll() is None
        proc = prom.proc
    app.shutdown()
    assert proc.poll() is not None  # stopped with the demo


def test_via_prometheus_only_with_demo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--via-prometheus"])
    assert e.value.code == 2
    assert "--via-prometheus only applies to --demo" in capsys.readouterr().err


def test_via_prometheus_without_the_binary(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(prometheus, "binary", lambda: None)
    assert main(["--demo", "--via-prometheus"]) == 2
    assert "--via-prometheus needs the prometheus binary" in capsys.readouterr().err
