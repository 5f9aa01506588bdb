"""core/ is the headless half: it never imports Textual, so cron lines and pipelines start
fast and everything in it is testable without a screen."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_env

CORE = ROOT / "core"


def core_modules() -> list[str]:
    out = []
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        out.append(".".join(["modeldeck", *parts]))
    return out


def test_no_core_source_mentions_textual() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "textual" or n.startswith(("textual.", "modeldeck.tui")) for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


@pytest.mark.live
def test_importing_all_of_core_loads_no_textual() -> None:
    modules = core_modules()
    assert "modeldeck.core.registry" in modules and len(modules) >= 5
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith(('textual.', 'modeldeck.tui')))\n"
            "print(','.join(bad))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env(), cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


@pytest.mark.live
def test_registry_commands_do_not_load_textual() -> None:
    code = ("import sys\nfrom modeldeck.tui import cli\n"
            "try:\n    cli.main(['models', '--registry', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
            "print('TEXTUAL' if 'textual' in sys.modules else 'clean')\n")
    r = subprocess.run([sys.executable, "-c", code, str(Path("/nonexistent/r.db"))], capture_output=True,
                       text=True, env=run_env(), cwd=ROOT, timeout=60)
    assert r.stdout.strip().endswith("clean"), r.stdout + r.stderr
