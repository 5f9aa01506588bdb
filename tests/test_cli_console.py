"""The command line an ops engineer adopts (issue 17 item 14): completion for bash, zsh and
fish with model and environment names from the registry, help on every argument, examples
at the end of every --help, a did-you-mean, newest first, one format in audit's CHANGE."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modeldeck.tui import cli
from tests.conftest import run_env
from tests.tui_fixtures import write_world


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _commands() -> list[tuple[str | None, argparse.ArgumentParser]]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(None, parser), *[(n, p) for n, p in sub.choices.items() if n not in cli.HIDDEN_COMMANDS]]


def test_every_argument_has_help_and_every_help_ends_with_examples() -> None:
    for name, p in _commands():
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, (name, action.dest)
        text = p.format_help()
        tail = text.rstrip().split("\n")
        examples = text.rstrip().rsplit("examples:\n", 1)
        assert len(examples) == 2, name
        assert all(line.startswith("  modeldeck") or line.startswith("  eval") for line in examples[1].split("\n")), name
        assert tail[-1].strip().startswith(("modeldeck", "eval")), name


def test_a_mistyped_command_gets_a_did_you_mean(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["promot", "churn", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'promot' is not a modeldeck command; did you mean 'promote'" in err
    assert "run-job" not in err  # hidden commands are never suggested
    with pytest.raises(SystemExit):
        cli.main(["zzzz"])
    assert "'zzzz' is not a modeldeck command (see modeldeck --help)" in capsys.readouterr().err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(capsys, shell: str) -> None:
    code, out, _ = _main(capsys, "completion", shell)
    assert code == 0 and "modeldeck" in out
    marker = {"bash": "complete -o nospace -o default -o bashdefault -F", "zsh": "#compdef modeldeck",
              "fish": "complete --command modeldeck"}[shell]
    assert marker in out


def test_models_and_environments_complete_from_the_registry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_world(tmp_path)
    ns = argparse.Namespace(config=None, registry=None, model="churn")
    assert cli._complete_models("ch", ns) == ["churn"]
    assert set(cli._complete_models("", ns)) == {"churn", "fraud", "[/bold]evil[red]"}
    assert cli._complete_environments("", ns) == ["production", "staging"]
    assert cli._complete_environments("s", argparse.Namespace(config=None, registry=None)) == ["staging"]
    # nowhere to look: no error into the user's command line
    empty = argparse.Namespace(config=None, registry=str(tmp_path / "none.db"))
    assert cli._complete_models("", empty) == [] and not (tmp_path / "none.db").exists()


@pytest.mark.live  # the shell's side: the real console script answering argcomplete's protocol
def test_the_console_script_answers_completion_requests(tmp_path: Path) -> None:
    write_world(tmp_path)
    out = tmp_path / "completions.txt"
    for line, want in (("modeldeck versions ch", ["churn"]), ("modeldeck promote churn 1 --env ", ["production",
                                                                                                      "staging"]),
                       ("modeldeck ver", ["versions"])):
        env = run_env(_ARGCOMPLETE="1", _ARGCOMPLETE_IFS="\n", COMP_LINE=line, COMP_POINT=str(len(line)),
                      _ARGCOMPLETE_STDOUT_FILENAME=str(out))
        r = subprocess.run([sys.executable, "-m", "modeldeck"], env=env, cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert [c.strip() for c in out.read_text().split("\n")] == want, line


def test_versions_are_newest_first_and_audit_changes_are_json(tmp_path: Path, monkeypatch, capsys) -> None:
    from modeldeck.core.registry import Registry

    monkeypatch.chdir(tmp_path)
    write_world(tmp_path)
    code, out, _ = _main(capsys, "versions", "churn")
    lines = [line.split()[0] for line in out.strip().splitlines()[1:]]
    assert code == 0 and lines == ["3", "2", "1"]
    code, out, _ = _main(capsys, "versions", "churn", "--json")
    assert [v["version"] for v in json.loads(out)] == [3, 2, 1]
    with Registry(tmp_path / "registry.db") as reg:
        reg.tag("churn", 1, "stage", "canary", reason="try")
    code, out, _ = _main(capsys, "audit", "--limit", "0")
    assert code == 0
    assert "{'" not in out and "None" not in out  # never a Python repr
    assert cli._cell({"b": [1, 2], "a": None}) == '{"a":null,"b":[1,2]}' and cli._cell(None) == "-"
    assert cli._change_text(None, {}) == "-"
