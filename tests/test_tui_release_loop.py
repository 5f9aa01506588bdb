"""The full release loop from the keys, against the live demo fleet with the real poller
thread: drift -> retrain -> candidate with lineage -> approve -> promote (gates pass) ->
served -> baked -> the drift is gone. Its own fleet, with churn-prod's traffic raised so its
labels arrive in seconds (the other TUI tests run on the demo's own rates: a fleet's traffic
costs CPU for as long as it runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.demo.fleet import DemoFleetProcess
from modeldeck.core.registry import Registry
from modeldeck.tui.app import ModeldeckApp
from tests.demo_helpers import FAST, fast_releases, snap, start_fleet, wait_for

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("tui_release_loop")]


@pytest.fixture
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path):
    import dataclasses

    fp = start_fleet(tmp_path_factory, shared_cache, dataclasses.replace(FAST, rates=(("churn-prod", 120.0),)))
    yield fp
    fp.stop()


@pytest.fixture
def settings(fleet: DemoFleetProcess) -> config.Settings:
    return fast_releases(config.parse_file(Path(fleet.config_path)))


async def test_full_release_loop_from_the_keys(settings, fleet: DemoFleetProcess) -> None:
    """drift appears -> n retrains on the recent window -> the candidate is registered with
    lineage -> a approves -> P promotes to production, gates pass -> the server serves it ->
    baking passes -> the drift goes away."""
    app = ModeldeckApp(settings)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: getattr(getattr(snap(app, "churn-prod"), "drift", None), "dataset_drift",
                                              False), 60, "churn-prod drift")
        # an operator retrains on a real window: wait until the drifted traffic has its labels
        # (the recent window is 1,200 rows; a candidate trained on a few hundred rightly loses
        # the metric gate to the champion)
        truth = fleet.registry_path.parent / "ground_truth" / "churn-prod"

        def labelled() -> int:
            return sum(f.read_bytes().count(b"\n") for f in truth.glob("labels-*.jsonl"))

        await wait_for(pilot, lambda: labelled() >= 1300, 90, "1,300 labels of churn-prod")
        with Registry(fleet.registry_path) as reg:
            before = reg.model("churn").latest_version
            production = reg.alias("churn", "production")
        await pilot.press("enter")  # churn-prod is the first row
        await pilot.pause(0.5)
        model_screen = app.screen
        await pilot.press("n")
        await pilot.pause(0.3)
        await pilot.press(*"drift on churn-prod", "enter")
        retrain = app.screen
        await wait_for(pilot, lambda: retrain.finished, 90, "the retraining job to end")
        with Registry(fleet.registry_path) as reg:
            job = reg.jobs("churn")[0]
            assert job.status == "succeeded", job
            candidate = reg.version("churn", job.produced_version)
        assert candidate.version == before + 1 and candidate.job_id == job.id
        assert candidate.dataset_sha256 and candidate.reference_path and candidate.code_version
        await pilot.press("escape")
        await wait_for(pilot, lambda: candidate.version in model_screen._version_rows, 10, "the candidate listed")
        assert model_screen.selected_version() == candidate.version  # newest first
        await pilot.press("a", *"gates pass on the recent window", "enter")
        await pilot.pause(0.5)
        await pilot.press("P")
        await pilot.pause(0.3)
        await pilot.press("enter")  # production, the endpoint's environment
        release = app.screen
        # the champion was measured on last month's holdout, the candidate on recent data: planning
        # runs the evaluate hook (the example pipeline's evaluate.py) for the champion on the
        # candidate's holdout, then compares the two there
        await wait_for(pilot, lambda: release.state != "planning", 60, "the release plan")
        assert release.state == "ready", str(release.query_one("#release-plan").render())
        assert not release.plan.blocked, [g.detail for g in release.plan.failed_gates]
        with Registry(fleet.registry_path) as reg:
            measured = reg.evaluations("churn", production, metric="auc")
        assert measured[-1].source == "gate" and measured[-1].dataset_path.endswith("holdout.csv")
        gate = next(g for g in release.plan.gates if g.name == "metric:auc" and g.data.get("min_absolute_change"))
        assert gate.data["comparable"] and gate.data["dataset_sha256"] == measured[-1].dataset_sha256
        assert release.plan.from_version == production and release.plan.to_version == candidate.version
        await pilot.press(*"retrained on drift", "enter", *"churn", "enter")
        await wait_for(pilot, lambda: release.state == "done", 60, "the rollout to end")
        assert release.outcome.status == "released", release.outcome.message
        assert release.outcome.verified and release.outcome.baked
        await pilot.press("escape")
        await wait_for(pilot, lambda: snap(app, "churn-prod").served_version == str(candidate.version), 10,
                       "churn-prod to serve the candidate")
        await wait_for(pilot, lambda: (getattr(snap(app, "churn-prod").drift, "version", None) == str(candidate.version)
                                       and not snap(app, "churn-prod").drift.dataset_drift), 60,
                       "the drift to go away against the new reference")
    with Registry(fleet.registry_path) as reg:
        entry = reg.audit(action="promote")[0]
        assert entry.subject == "churn@production" and entry.reason == "retrained on drift"
        assert all(g["passed"] for g in entry.after["gates"])
        assert reg.verify_audit().ok
