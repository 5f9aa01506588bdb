"""Helpers for the TUI tests that run on the live demo fleet (a subprocess of real model
servers on loopback): starting it, shortening its release timings, waiting on what the app
shows. Shared by test_tui_demo and test_tui_release_loop."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.demo.fleet import DemoFleetProcess, FleetSettings, start_subprocess
from modeldeck.core.registry import Registry
from modeldeck.tui.app import ModeldeckApp

# the demo's own traffic (70 requests/s in all), its drift and errors from the start
FAST = FleetSettings(drift_at=0.0, errors_at=0.0, error_rate=0.3, seed=11)


def start_fleet(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path,
                settings: FleetSettings = FAST) -> DemoFleetProcess:
    wd = tmp_path_factory.mktemp("tui-fleet")
    env = dict(os.environ)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[var] = str(wd / var.lower())
    env.update(XDG_CACHE_HOME=str(shared_cache), MODELDECK_ACTOR="tester")
    env.pop("MODELDECK_CONFIG", None)
    return start_subprocess(wd, ready_timeout=60, settings=settings, env=env)


def fast_releases(settings: config.Settings, **rules: float) -> config.Settings:
    """The demo's release timings, shortened for a test (by default bake 3 s, verify within
    15 s; ``rules`` say otherwise): in the registry's policy (which every release applies) and in
    the config (which may not be looser than it)."""
    fast = rules or {"bake_seconds": 3.0, "verify_timeout": 15.0}
    with Registry(settings.registry) as reg:
        for name in settings.models:
            rec = reg.policy(name)
            if rec is not None and any(rec.rules.get(k) != v for k, v in fast.items()):
                reg.set_policy(name, {**rec.rules, **fast}, "test: a short bake")
    models = {name: dataclasses.replace(m, **fast) for name, m in settings.models.items()}
    return dataclasses.replace(settings, models=models)


async def wait_for(pilot, predicate, timeout: float, what: str, seen=None) -> None:
    """Wait until ``predicate()``; on a timeout, say what ``seen()`` (if given) shows then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.25)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                         + (f" (last seen: {seen()!r})" if seen is not None else ""))


def snap(app: ModeldeckApp, name: str):
    return app.source.latest().get(name) if app.source is not None else None
