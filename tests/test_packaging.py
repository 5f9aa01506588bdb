"""modeldeck installs as one namespaced package (`modeldeck.core`, `modeldeck.tui`): nothing
named `core` or `tui` reaches site-packages, and no process modeldeck starts imports a user's
own `core/` or `tui/` package from the folder it runs in."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from modeldeck.core.registry import Registry
from tests.conftest import ROOT, run_env

pytestmark = pytest.mark.live

MODELDECK_EXE = Path(sys.executable).parent / "modeldeck"
IMPORT = re.compile(r"^\s*(from|import)\s+(core|tui)(\.|\s|$)", re.M)


def test_no_module_imports_top_level_core_or_tui() -> None:
    offenders = []
    for folder in ("core", "tui", "tests", "benchmarks", "sample_data"):
        for path in (ROOT / folder).rglob("*.py"):
            for m in IMPORT.finditer(path.read_text()):
                line = path.read_text()[: m.start()].count("\n") + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == []


def test_wheel_holds_only_the_modeldeck_package_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "Could not find a version that satisfies" in r.stderr:
        pytest.skip(f"cannot build the wheel here (no package index for setuptools): {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    wheel = next(wheels.glob("modeldeck-*.whl"))
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"modeldeck"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "modeldeck/core/registry.py" in names and "modeldeck/tui/app.tcss" in names
    assert "modeldeck/__main__.py" in names and "modeldeck/core/demo/server.py" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "modeldeck = modeldeck.tui.cli:main" in entry

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=120)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def imports(module: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, text=True, cwd=elsewhere,
                              timeout=60)

    assert "No module named 'core'" in imports("core").stderr
    assert "No module named 'tui'" in imports("tui").stderr
    ok = imports("modeldeck.core.registry")  # the registry needs nothing beyond the standard library
    assert ok.returncode == 0, ok.stderr


HOSTILE = """\
import pathlib
pathlib.Path({marker!r}).write_text("imported " + __name__ + " from " + __file__)
raise SystemExit("a hostile {name} package was imported")
"""

PIPELINE = """\
import os, subprocess, sys
print("training", sys.argv[1], flush=True)
subprocess.run(["modeldeck", "register", sys.argv[1], "--artifact", "s3://m/new", "--metrics", '{"auc": 0.93}'],
               check=True)
"""


@pytest.fixture
def hostile_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A config folder that also holds packages named `core` and `tui` (and `modeldeck`),
    each writing a marker file when imported."""
    folder = tmp_path / "project"
    marker = tmp_path / "MARKER"
    for name in ("core", "tui", "modeldeck"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(HOSTILE.format(marker=str(marker), name=name))
    (folder / "train.py").write_text(PIPELINE)
    (folder / "modeldeck.toml").write_text(
        'registry = "registry.db"\n'
        "[models.churn]\n"
        f"retrain = {{ command = [{sys.executable!r}, \"train.py\", \"{{model}}\"] }}\n")
    with Registry(folder / "registry.db") as reg:
        reg.register("churn", "s3://m/1", metrics={"auc": 0.9})
    return folder, marker


def test_spawned_processes_never_import_the_folders_own_core_or_tui(hostile_folder: tuple[Path, Path]) -> None:
    folder, marker = hostile_folder
    env = run_env()
    env["PATH"] = f"{MODELDECK_EXE.parent}:{env.get('PATH', '')}"

    def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=folder, env=env, timeout=timeout)

    # detached: the job runs in the supervisor process, started in this folder
    r = run(str(MODELDECK_EXE), "retrain", "churn", "--reason", "detached")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 60
    while True:
        jobs = json.loads(run(str(MODELDECK_EXE), "jobs", "--json").stdout)
        if jobs and jobs[0]["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.2)
    assert jobs[0]["status"] == "succeeded", jobs[0]
    assert jobs[0]["produced_version"] == 2

    r = run(str(MODELDECK_EXE), "retrain", "churn", "--wait", "--reason", "waited")
    assert r.returncode == 0 and "succeeded; produced version 3" in r.stdout, r.stdout + r.stderr

    r = run(str(MODELDECK_EXE), "--report", "--sample", "0")
    assert r.returncode in (0, 1), r.stdout + r.stderr  # a pending approval or two; never "could not run"
    assert "modeldeck" in r.stdout

    assert not marker.exists(), marker.read_text()
    # `python -m modeldeck` works from any folder that does not hold a `modeldeck` package itself
    r = subprocess.run([sys.executable, "-m", "modeldeck", "--version"], capture_output=True, text=True,
                       cwd=folder / "core", env=env, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("modeldeck "), r.stderr
    with Registry(folder / "registry.db") as reg:
        assert [v.version for v in reg.versions("churn")] == [1, 2, 3]
