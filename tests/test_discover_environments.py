"""Environments that only [[discover]] names are release targets: `modeldeck promote … --env prod`
works when prod exists only as a namespace label in Prometheus; environment pickers, shell
completion and evaluation data count them; and when Prometheus cannot be asked the user reads
one line saying so (never "unknown environment", never a traceback, never a header value)."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
from pathlib import Path

import pytest

from modeldeck.core import config, evaluation, releases
from modeldeck.core.errors import DiscoveryUnavailableError, InputError, UnknownEnvironmentError
from modeldeck.core.promql import resolve_discovered
from modeldeck.core.registry import Registry
from modeldeck.tui import cli
from tests.conftest import MODELDECK, run_env
from tests.test_discover import BLOCK, fleet  # noqa: F401 - the fixture: a real Prometheus scraping churn and fraud

TOKEN = "tok-3f9a1c77e2d54b08"  # the Authorization header's secret: it must never be printed


def _toml(value: object) -> str:
    return json.dumps(value)  # strings and arrays of strings: JSON's spelling is TOML's


def write_config(folder: Path, prom_url: str, block: dict | None = None) -> Path:
    block = block or BLOCK
    lines = ['registry = "reg.db"', "[poll]", "interval = 0.2", "timeout = 1.0", "[report]", "sample = 0.5",
             "[prometheus]", f"url = {_toml(prom_url)}", 'window = "10s"', "timeout = 2.0",
             'headers = { Authorization = "Bearer ${PROM_TOKEN}" }',
             "[models.churn]", "bake_seconds = 0", "verify_timeout = 20", "[[discover]]"]
    lines += [f"{k} = {_toml(v)}" for k, v in block.items()]
    cfg = folder / "modeldeck.toml"
    cfg.write_text("\n".join(lines) + "\n")
    with Registry(folder / "reg.db") as reg:  # churn 1 approved; no environment held, no policy
        reg.register("churn", "s3://m/1")
        reg.approve("churn", 1, "offline eval")
    return cfg


def md(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MODELDECK, *args, "--config", str(cfg)], capture_output=True, text=True,
                          env=run_env(PROM_TOKEN=TOKEN), cwd=cfg.parent, timeout=120)


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections to it are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.live
def test_an_environment_only_discovery_names_is_a_release_target(fleet, tmp_path: Path,  # noqa: F811
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    prom, _ = fleet
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    cfg = write_config(tmp_path, prom.url)
    settings = config.parse_file(cfg)
    assert settings.endpoints == () and settings.discover[0].environment_label == "namespace"
    with Registry(settings.registry) as reg:
        assert reg.environments() == {} and reg.policy_environments() == {}
        # statically nothing declares prod: only Prometheus's namespace label does
        assert "prod" not in releases.known_environments(settings, reg)
        resolved = resolve_discovered(settings)
        assert releases.known_environments(settings, reg, endpoints=resolved.endpoints) == ["prod"]
        # the TUI's picker, from the poller's live endpoints or from resolved settings
        for choices in (releases.environment_choices(settings, reg, "churn", endpoints=resolved.endpoints),
                        releases.environment_choices(resolved, reg, "churn")):
            (prod,) = choices
            assert (prod.name, prod.holds, prod.endpoints, prod.declared_by) == ("prod", None, 1, "endpoint")
        assert releases.environment_choices(settings, reg, "churn") == []
        # plan() asks Prometheus itself: prod is declared, its endpoint is churn's alone
        p = releases.plan(settings, reg, "churn", 1, "prod")
        assert not p.creates_environment and p.endpoints == ("churn-prod",)
        healthy = next(g for g in p.gates if g.name == "healthy")
        assert healthy.passed and "churn-prod" in healthy.detail, healthy.detail
    # shell completion: `modeldeck promote churn 1 --env p<tab>`
    ns = argparse.Namespace(config=str(cfg), registry=None, model="churn")
    assert cli._complete_environments("p", ns) == ["prod"]
    # evaluation on recent traffic counts the discovered endpoint, and says why it cannot use it
    with pytest.raises(InputError) as e:
        evaluation.resolve_data(settings, "churn", "recent", environment="prod")
    assert "1 found by [[discover]] (churn-prod), which carry no capture or labels" in str(e.value)

    # the command line: a typo is still refused, naming what discovery found
    r = md(cfg, "promote", "churn", "1", "--env", "prdo", "--reason", "first release")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("modeldeck: unknown environment 'prdo' (known: prod);")
    assert "did you mean 'prod'?" in r.stderr
    # ... and prod, known only through Prometheus, is released to: verified on the discovered endpoint
    r = md(cfg, "promote", "churn", "1", "--env", "prod", "--reason", "first release")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unknown environment" not in r.stdout + r.stderr and "creates the environment" not in r.stdout
    assert "churn-prod" in r.stdout and "unset -> version 1" in r.stdout
    assert TOKEN not in r.stdout + r.stderr
    with Registry(settings.registry) as reg:
        assert reg.alias("churn", "prod") == 1
        (ro,) = reg.rollouts("churn")
        assert ro.state == "done", (ro.state, ro.message)


@pytest.mark.live
def test_prometheus_unreachable_is_said_not_unknown_environment(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("PROM_TOKEN", TOKEN)
    cfg = write_config(tmp_path, f"http://ana:pw-9d1e0b@127.0.0.1:{port}/prom")  # credentials in the URL too
    r = md(cfg, "promote", "churn", "1", "--env", "prod", "--reason", "first release")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    assert r.stderr == (f"modeldeck: cannot tell whether environment 'prod' exists: Prometheus is unreachable at "
                        f"http://127.0.0.1:{port}/prom (discover discover[0]: prometheus: 127.0.0.1:{port}: "
                        f"connection refused); [[discover]] finds environments there\n")
    for secret in (TOKEN, "pw-9d1e0b", "Traceback", "unknown environment"):
        assert secret not in r.stderr
    settings = config.parse_file(cfg)
    with Registry(settings.registry) as reg:
        assert reg.alias("churn", "prod") is None and reg.rollouts("churn") == []  # nothing moved
        with pytest.raises(DiscoveryUnavailableError):
            releases.plan(settings, reg, "churn", 1, "prod", check_health=False)
        # --create-env says the user means it: the plan goes on, its health gate says it cannot judge
        p = releases.plan(settings, reg, "churn", 1, "prod", create_env=True)
        assert p.creates_environment
        healthy = next(g for g in p.gates if g.name == "healthy")
        assert not healthy.passed and healthy.detail.endswith("; not judged")
    # completion leaves what it cannot know out, quietly
    assert cli._complete_environments("", argparse.Namespace(config=str(cfg), registry=None)) == []
    with pytest.raises(InputError) as e:
        evaluation.resolve_data(settings, "churn", "recent", environment="prod")
    assert f"discover discover[0]: prometheus: 127.0.0.1:{port}: connection refused" in str(e.value)
    assert TOKEN not in str(e.value)


def test_a_fixed_discovered_environment_needs_no_prometheus(tmp_path: Path) -> None:
    """A block with a fixed environment declares it: no query, also with Prometheus down."""
    port = closed_port()
    fixed = {k: v for k, v in BLOCK.items() if k != "environment_label"} | {"environment": "edge"}
    cfg = write_config(tmp_path, f"http://127.0.0.1:{port}", fixed)
    settings = config.parse_file(cfg)
    with Registry(settings.registry) as reg:
        assert releases.known_environments(settings, reg) == ["edge"]
        assert releases.check_environment(settings, reg, "edge") is False
        assert [c.name for c in releases.environment_choices(settings, reg, "churn")] == ["edge"]
        with pytest.raises(UnknownEnvironmentError, match=r"unknown environment 'edgy' \(known: edge\)"):
            releases.check_environment(settings, reg, "edgy")
    assert cli._complete_environments("e", argparse.Namespace(config=str(cfg), registry=None)) == ["edge"]


async def test_the_promote_picker_lists_the_environments_discovery_found(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The model screen's picker reads the poller's live endpoints: staging, which only a
    discovered endpoint names, is offered with its endpoint count."""
    from modeldeck.core.promql import discovered_endpoints
    from modeldeck.core.snapshot import EndpointSnapshot
    from modeldeck.tui.app import ModeldeckApp
    from modeldeck.tui.source import FixedSource

    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, f"http://127.0.0.1:{closed_port()}")
    settings = config.parse_file(cfg)
    (block,) = settings.discover
    found = tuple(discovered_endpoints(block, [
        {"namespace": ns, "service": "churn", "model": "churn", "instance": f"127.0.0.1:{9000 + i}"}
        for i, ns in enumerate(("prod", "staging"))]))

    class DiscoveringSource(FixedSource):  # the poller's discovered set, without a Prometheus
        def endpoints(self) -> tuple[config.EndpointConfig, ...] | None:
            return found

    source = DiscoveringSource()
    source.set({e.name: EndpointSnapshot.pending(e) for e in found})
    app = ModeldeckApp(settings, source=source)
    async with app.run_test(size=(120, 35)) as pilot:
        await pilot.pause()
        await pilot.press("enter")  # churn-prod
        for _ in range(40):
            await pilot.pause(0.1)
            if type(app.screen).__name__ == "ModelScreen" and app.screen.versions:
                break
        assert app.screen.model == "churn" and app.screen.versions
        await pilot.press("j")  # the versions table: version 1
        await pilot.press("P")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "EnvironmentPicker"
        # staging first (production, staging, then by name), as for configured environments
        assert app.screen.environments == [("staging", "holds nothing yet, 1 endpoint"),
                                           ("prod", "holds nothing yet, 1 endpoint")]
        await pilot.press("escape")
