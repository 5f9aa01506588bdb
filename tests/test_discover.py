"""[[discover]]: Prometheus series become endpoints; they appear and vanish with the fleet."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.errors import ConfigError
from modeldeck.core.poller import Poller
from modeldeck.core.promql import PromFleet, discovered_endpoints
from modeldeck.core.snapshot import DOWN, UP
from tests.faultservers import FaultServer
from tests.promserver import PromServer, skip_reason


def _parse(tmp_path: Path, data: dict) -> config.Settings:
    return config.parse(data, tmp_path / "modeldeck.toml")


BLOCK = {"profile": "mlserver", "selector": '{job="fleet"}', "group_by": ["namespace", "service", "model", "instance"],
         "model_label": "model", "environment_label": "namespace", "name_template": "{model}-{namespace}",
         "url": "http://{instance}"}


def test_discover_config(tmp_path: Path) -> None:
    s = _parse(tmp_path, {"prometheus": {"url": "http://127.0.0.1:9", "discover_interval": 10},
                          "discover": [BLOCK]})
    (b,) = s.discover
    assert b.profile == "mlserver" and b.group_by == ("namespace", "service", "model", "instance")
    assert b.selector == '{job="fleet"}' and b.url_template == "http://{instance}"
    assert s.prometheus is not None and s.prometheus.discover_interval == 10.0


@pytest.mark.parametrize("block, where", [
    ({"profile": "mlserver", "model_label": "model", "name_template": "{pod}"},
     "discover[0].name_template: {pod} is not a group_by label"),
    ({"profile": "mlserver"}, "discover[0]: needs model_label"),
    ({"model_label": "model"}, "discover[0]: missing required key 'profile'"),
    ({"profile": "mlserver", "model_label": "model", "model": "x"}, "discover[0]: give model_label or model"),
    ({"profile": "mlserver", "model": "x", "group_by": "service"}, "discover[0].group_by: must be an array"),
    ({"profile": "mlserver", "model": "x", "group_by": ["instance"], "url": "ftp://{instance}"},
     "discover[0].url: must be an http"),
    ({"profile": "mlserver", "model": "x", "grup_by": []}, "discover[0].grup_by: unknown key (did you mean"),
])
def test_discover_config_errors(tmp_path: Path, block: dict, where: str) -> None:
    with pytest.raises(ConfigError) as e:
        _parse(tmp_path, {"prometheus": {"url": "http://p"}, "discover": [block]})
    assert str(e.value).startswith(f"{tmp_path / 'modeldeck.toml'}: {where}"), str(e.value)
    with pytest.raises(ConfigError, match="discover: needs a \\[prometheus\\] section"):
        _parse(tmp_path, {"discover": [{"profile": "mlserver", "model": "x"}]})


def test_discovered_endpoints_from_label_sets(tmp_path: Path) -> None:
    s = _parse(tmp_path, {"prometheus": {"url": "http://p"},
                          "discover": [BLOCK]})
    (b,) = s.discover
    sets = [{"namespace": "prod", "service": "churn", "model": "churn", "instance": "10.0.0.1:8080"},
            {"namespace": "staging", "service": "churn", "model": "churn", "instance": "10.0.0.2:8080"},
            {"namespace": "prod", "service": "x", "model": "", "instance": "10.0.0.3:8080"},  # no model: skipped
            {"namespace": "prod", "service": "fraud", "model": "fraud", "instance": "bad host\x1b"},
            {"namespace": "prod", "service": "churn2", "model": "churn", "instance": "10.0.0.4:8080"}]
    eps = discovered_endpoints(b, sets, taken={"fraud-prod"})  # a configured endpoint keeps its name
    names = [e.name for e in eps]
    assert names == ["churn-prod", "churn-staging"]  # churn2 would also be churn-prod: the first keeps it
    e = eps[0]
    assert (e.model, e.environment, e.url, e.served_model) == ("churn", "prod", "http://10.0.0.1:8080", "churn")
    assert e.via_prometheus and e.metrics_profile == "mlserver" and e.discovered == "discover[0]"
    assert e.selector == '{job="fleet", namespace="prod", service="churn", model="churn", instance="10.0.0.1:8080"}'
    q = PromFleet(s.prometheus).discover_query(b)  # type: ignore[arg-type]
    assert q.startswith("group by (namespace, service, model, instance) ({__name__=~")
    assert 'job="fleet"' in q


# ---------------------------------------------------------------------------------------------
# live: a real Prometheus scraping a fleet whose members come and go


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    servers = {n: FaultServer(n, ["1"]).start() for n in ("churn", "fraud")}
    prom = PromServer(tmp_path / "prom", scrape_interval=0.5)

    def targets(names: list[str]) -> None:
        prom.set_targets([(f"127.0.0.1:{servers[n].port}", {"namespace": "prod", "service": n}) for n in names])

    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            for srv in servers.values():
                srv.stats.observe(10, 0.02)
            stop.wait(0.25)

    threading.Thread(target=traffic, daemon=True).start()
    targets(["churn", "fraud"])
    try:
        prom.start()
        prom.wait_for("count_over_time(model_infer_request_success_total[10s]) >= 3", at_least=2, timeout=60)
        yield prom, targets
    finally:
        stop.set()
        prom.stop()
        for srv in servers.values():
            srv.close()


@pytest.mark.live
def test_endpoints_appear_and_vanish(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prom, targets = fleet
    settings = _parse(tmp_path, {
        "registry": str(tmp_path / "none.db"),
        "prometheus": {"url": prom.url, "window": "10s", "timeout": 5.0, "discover_interval": 0.1,
                       "vanished_after": 0.0},
        "discover": [BLOCK]})

    async def main() -> None:
        async with Poller(settings, aliases={}) as p:
            snaps = {s.endpoint: s for s in await p.poll_once()}
            assert set(snaps) == {"churn-prod", "fraud-prod"}
            assert all(s.status == UP and s.request_rate for s in snaps.values()), snaps
            assert {c.name for c in p.configs()} == {"churn-prod", "fraud-prod"}
            # the same tuple while the set stands (the fleet screen compares it by identity) ...
            before = p.configs()
            await p.poll_once()
            assert p.configs() is before
            # (and discovery's answer, unchanged, is not made into configs again)
            block = settings.discover[0]
            assert p._prom is not None
            found = await p._prom.discover(block)
            assert await p._prom.discover(block) is found and {c.name for c in found} == {"churn-prod", "fraud-prod"}
            # fraud's target goes: Prometheus marks its series stale, the next discovery misses it
            targets(["churn"])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                snaps = {s.endpoint: s for s in await p.poll_once()}
                if "fraud-prod" not in snaps:
                    break
                if snaps["fraud-prod"].status == DOWN:
                    assert snaps["fraud-prod"].reason == "no longer reported by Prometheus"
            assert "fraud-prod" not in snaps and "fraud-prod" not in p.latest()
            assert snaps["churn-prod"].status == UP
            assert [c.name for c in p.configs()] == ["churn-prod"]  # ... and a new one once it changed
            # and it comes back
            targets(["churn", "fraud"])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "fraud-prod" not in snaps:
                await asyncio.sleep(0.5)
                snaps = {s.endpoint: s for s in await p.poll_once()}
            assert "fraud-prod" in snaps

    asyncio.run(main())


@pytest.mark.live
def test_vanished_endpoint_shows_down_for_a_while(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prom, targets = fleet
    settings = _parse(tmp_path, {
        "registry": str(tmp_path / "none.db"),
        "prometheus": {"url": prom.url, "window": "10s", "timeout": 5.0, "discover_interval": 0.1,
                       "vanished_after": 600.0},
        "discover": [BLOCK]})

    async def main() -> None:
        async with Poller(settings, aliases={}) as p:
            assert {s.endpoint for s in await p.poll_once()} == {"churn-prod", "fraud-prod"}
            targets(["churn"])
            deadline = time.monotonic() + 30
            snaps: dict = {}
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                snaps = {s.endpoint: s for s in await p.poll_once()}
                if snaps["fraud-prod"].status == DOWN:
                    break
            assert snaps["fraud-prod"].status == DOWN
            assert snaps["fraud-prod"].reason == "no longer reported by Prometheus"
            assert snaps["churn-prod"].status == UP

    asyncio.run(main())

@pytest.mark.live
def test_discovered_endpoints_get_series_without_their_model_label(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A discovered selector pins the model (group_by has it), but MLServer's latency histogram
    and Prometheus' ``up`` carry no model label: they still reach the endpoint (p95, up), and
    labels every endpoint pins alike (job) are not asked for in every answer."""
    prom, _targets = fleet
    settings = _parse(tmp_path, {
        "registry": str(tmp_path / "none.db"),
        "prometheus": {"url": prom.url, "window": "10s", "timeout": 5.0},
        "discover": [{**{k: v for k, v in BLOCK.items() if k != "url"}, "group_by": ["namespace", "service", "model"]}]})

    async def main() -> None:
        async with Poller(settings, aliases={}) as p:
            await p.poll_once()
            cfgs = p.configs()
            assert {c.name for c in cfgs} == {"churn-prod", "fraud-prod"}
            # the first refresh took the queries prefetched while discovery finished: each went once
            assert p._prom.client.queries == 1 + len(p._prom.queries_for("mlserver", cfgs)[0])
            assert all('model="' in c.selector and 'job="fleet"' in c.selector for c in cfgs)
            readings = await p._prom.refresh(cfgs)
            for name, r in readings.items():
                assert r.error is None and r.problem is None, (name, r)
                assert r.up is True and r.targets == 1, (name, r)
                # the fixture's servers answer every request in 20 ms: p95 is in the (10, 25] ms bucket
                assert r.p95_ms is not None and 10 < r.p95_ms <= 25, (name, r)
                assert r.request_rate and r.mean_ms is not None and abs(r.mean_ms - 20) < 1, (name, r)
            # job and namespace are the same in every selector: not a label of every series asked for
            queries, _plans = p._prom.queries_for("mlserver", cfgs)
            assert "by (service, model, version, model_version)" in queries["versions"], queries["versions"]

    asyncio.run(main())



# ---------------------------------------------------------------------------------------------
# the fleet screen follows the discovered set


async def test_fleet_screen_rows_follow_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.core.snapshot import EndpointSnapshot
    from modeldeck.tui.app import ModeldeckApp
    from modeldeck.tui.source import FixedSource
    from modeldeck.tui.widgets.livetable import LiveTable

    monkeypatch.chdir(tmp_path)
    settings = _parse(tmp_path, {"registry": str(tmp_path / "registry.db"),
                                 "prometheus": {"url": "http://127.0.0.1:9"}, "discover": [BLOCK]})
    (b,) = settings.discover

    def found(*names: str) -> tuple[config.EndpointConfig, ...]:
        sets = [{"namespace": "prod", "service": n, "model": n, "instance": f"127.0.0.1:{9000 + i}"}
                for i, n in enumerate(names)]
        return tuple(discovered_endpoints(b, sets))

    class DiscoveringSource(FixedSource):  # the poller's discovered set, without a Prometheus
        def __init__(self) -> None:
            super().__init__()
            self.found = found("churn", "fraud")
            self.failed: dict[str, str] = {}

        def endpoints(self) -> tuple[config.EndpointConfig, ...] | None:
            return self.found

        def discover_errors(self) -> dict[str, str]:
            return self.failed

    source = DiscoveringSource()
    source.set({e.name: EndpointSnapshot.pending(e) for e in source.found})
    app = ModeldeckApp(settings, source=source)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#fleet-table", LiveTable)
        assert table.rows == ["churn-prod", "fraud-prod"]
        source.found = found("churn", "fraud", "iris")
        app.refresh_views()
        await pilot.pause()
        assert table.rows == ["churn-prod", "fraud-prod", "iris-prod"]
        source.found = found("iris")
        app.refresh_views()
        await pilot.pause()
        assert table.rows == ["iris-prod"]
        source.failed = {"discover[0]": "prometheus: query timed out after 2.0 s"}
        source.generation += 1
        app.refresh_views()
        await pilot.pause()
        header = str(app.screen.query_one("#fleet-header").render())
        assert "discover discover[0]: prometheus: query timed out after 2.0 s" in header


# ---------------------------------------------------------------------------------------------
# releases judge the discovered endpoints of their model and environment


def _release_settings(tmp_path: Path, prom_url: str, **prom: object) -> config.Settings:
    return _parse(tmp_path, {
        "registry": str(tmp_path / "reg.db"), "poll": {"interval": 0.2, "timeout": 1.0}, "report": {"sample": 0.5},
        "prometheus": {"url": prom_url, "window": "10s", "timeout": 1.0, **prom},
        "discover": [BLOCK]})


def _three_versions(path: Path) -> None:
    from modeldeck.core.registry import Registry

    with Registry(path) as reg:
        for v in (1, 2, 3):
            reg.register("churn", f"s3://m/{v}")
            reg.approve("churn", v, "offline eval")
        reg.promote("churn", 2, "prod", "first release")
        reg.promote("churn", 1, "prod", "back to 1")  # the fleet's servers say version 1


@pytest.mark.live
def test_release_plan_judges_discovered_endpoints(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from modeldeck.core import releases
    from modeldeck.core.registry import Registry

    prom, _ = fleet
    settings = _release_settings(tmp_path, prom.url)
    assert settings.endpoints_for("churn", "prod") == []  # nothing configured: all of it is discovered
    _three_versions(settings.registry)
    with Registry(settings.registry) as reg:
        p = releases.plan(settings, reg, "churn", 3, "prod")
        back = releases.plan(settings, reg, "churn", None, "prod", action="rollback", to=2, check_health=False)
    # only churn's endpoint in prod (fraud-prod is another model's), polled through Prometheus
    assert p.endpoints == ("churn-prod",) and back.endpoints == ("churn-prod",)
    healthy = next(g for g in p.gates if g.name == "healthy")
    assert healthy.passed, healthy.detail
    assert "churn-prod" in healthy.detail and "no endpoints" not in healthy.detail
    row = healthy.data["endpoints"][0]
    assert row["endpoint"] == "churn-prod" and row["status"] == UP and row["request_rate"]
    assert not any("skipped" in n for n in p.notes), p.notes
    # the rollout's verification and bake watch them with the plan's settings (the supervisor gets these)
    (ep,) = p.settings.endpoints_for("churn", "prod")
    assert ep.discovered == "discover[0]" and ep.via_prometheus and 'service="churn"' in ep.selector
    watch = releases.EndpointWatch(p.settings, p.endpoints, live_windows=False)
    try:
        (snap,) = watch()
    finally:
        watch.close()
    assert snap.endpoint == "churn-prod" and snap.served_version == "1" and snap.request_rate


def test_release_without_prometheus_is_not_judged(tmp_path: Path) -> None:
    """Prometheus unreachable when a release needs the environment's discovered endpoints: the
    health gate fails saying why (not judged), within the query timeout; a rollback says its
    verification cannot judge them."""
    import socket

    from modeldeck.core import releases
    from modeldeck.core.registry import Registry

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = _release_settings(tmp_path, f"http://127.0.0.1:{port}")
    _three_versions(settings.registry)
    t0 = time.monotonic()
    with Registry(settings.registry) as reg:
        p = releases.plan(settings, reg, "churn", 3, "prod")
        back = releases.plan(settings, reg, "churn", None, "prod", action="rollback", to=2)
    assert time.monotonic() - t0 < 30  # bounded by [prometheus] timeout, not hanging
    healthy = next(g for g in p.gates if g.name == "healthy")
    assert not healthy.passed
    assert healthy.detail.startswith("the endpoints of churn in prod are not known: discover discover[0]: "
                                     f"prometheus: 127.0.0.1:{port}: ")
    assert healthy.detail.endswith("; not judged")
    assert p.failed_gates and p.failed_gates[-1].name == "healthy"
    assert any(n.startswith("the endpoints of churn in prod are not known") and "cannot judge" in n
               for n in back.notes), back.notes
    # a block that cannot find this model's endpoints does not block it
    fixed = _parse(tmp_path, {"registry": str(tmp_path / "reg.db"), "report": {"sample": 0.5},
                              "prometheus": {"url": f"http://127.0.0.1:{port}", "timeout": 1.0},
                              "discover": [{**{k: v for k, v in BLOCK.items() if k != "model_label"},
                                            "model": "fraud"}]})
    with Registry(fixed.registry) as reg:
        p = releases.plan(fixed, reg, "churn", 3, "prod")
    healthy = next(g for g in p.gates if g.name == "healthy")
    assert healthy.passed and "no endpoints configured or discovered for churn in prod" in healthy.detail


@pytest.mark.parametrize("n, note", [
    (10, None),
    (2_000, "history: 50 snapshots kept per endpoint, not poll.history 300, for 2,000 endpoints (at most "
            "100,000 in memory)"),
    (6_000, "history: 6,000 endpoints x 20 snapshots = 120,000 in memory, over the 100,000 budget "
            "(poll.history 300; sparklines cover 20 polls)"),
])
def test_history_budget_is_said_not_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture, n: int,
                                           note: str | None) -> None:
    settings = _parse(tmp_path, {
        "registry": str(tmp_path / "none.db"), "poll": {"history": 300},
        "prometheus": {"url": "http://127.0.0.1:9"}, "discover": [BLOCK],
        "endpoints": [{"name": f"e{i}", "model": "m", "metrics": "prometheus", "metrics_profile": "mlserver",
                       "selector": f'{{service="s{i}"}}'} for i in range(n)]})
    p = Poller(settings, aliases={})
    assert p.history_note == note
    with caplog.at_level("WARNING", logger="modeldeck.poller"):
        p._fit_history()
        p._fit_history()  # logged once, not at every discovery
    assert [r.getMessage() for r in caplog.records if r.name == "modeldeck.poller"] == ([note] if note else [])
