"""Shared fixtures. Every test gets its own XDG folders so nothing touches the user's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test session (trained demo artifacts, reference profiles)."""
    return tmp_path_factory.mktemp("xdg_cache")


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                  shared_cache: Path) -> None:
    base = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(base / var.lower()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))
    monkeypatch.setenv("MODELDECK_ACTOR", "tester")
    monkeypatch.delenv("MODELDECK_CONFIG", raising=False)
    monkeypatch.delenv("MODELDECK_REGISTRY", raising=False)


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.db"


def run_env(**extra: str) -> dict[str, str]:
    """Environment for a modeldeck subprocess: this interpreter's (modeldeck is installed in
    it, so no PYTHONPATH is needed or set), plus ``extra``."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


MODELDECK = [sys.executable, "-m", "modeldeck"]
