"""Shared fixtures. Every test gets its own XDG folders so nothing touches the user's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from modeldeck.core.demo import mlflowserver

ROOT = Path(__file__).resolve().parent.parent
# Where the pinned MLflow virtualenv is, read before any test moves the XDG folders.
MLFLOW_VENV = mlflowserver.venv_dir()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long tests first: those in an xdist group (a group exists because its tests share a
    costly fixture, or one test drives a whole fleet), then the other ``live`` ones (real
    servers, subprocesses: seconds each), then the fast ones; each file's order is kept.
    ``--dist loadgroup`` hands out work in collection order (groups of several tests first,
    largest first, then one test at a time, a one-test group among them), so a long test
    collected late ran alone at the end while the other worker idled; with the long ones first,
    the many short tests fill both workers up to the end. Only the order changes: every test
    runs, with the same fixtures."""
    items.sort(key=lambda item: (item.get_closest_marker("xdist_group") is None,
                                 item.get_closest_marker("live") is None))  # stable: file order kept


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
    monkeypatch.setenv(mlflowserver.ENV_VENV, str(MLFLOW_VENV))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``mlflow server --workers 1`` (SQLite backend, loopback, ephemeral port) per
    test session, from the pinned MLflow virtualenv; skipped, saying why, when there is none.
    Tests using it share it: each names its models uniquely (``tests/mlflow_helpers.py``) and
    carries ``xdist_group("mlflow")`` so one worker runs them all."""
    if not mlflowserver.venv_ready(MLFLOW_VENV):
        pytest.skip(mlflowserver.why_not_ready(MLFLOW_VENV))
    try:
        server = mlflowserver.start(tmp_path_factory.mktemp("mlflow"), venv=MLFLOW_VENV)
    except mlflowserver.MlflowServerError as e:
        pytest.skip(str(e))
    yield server
    server.stop()


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
