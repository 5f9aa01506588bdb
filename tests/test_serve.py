"""``modeldeck serve`` (issue 17 item 16): the TUI in a browser, read-only unless
--allow-writes, loopback unless --host says otherwise (with a warning), and a real headless
Chromium that sees the fleet table."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modeldeck.tui import cli, serve
from tests import browser
from tests.conftest import run_env
from tests.test_discover import fleet  # noqa: F401 - the fixture: a real Prometheus scraping churn and fraud
from tests.tui_fixtures import write_world


def test_loopback_and_the_session_command() -> None:
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert serve.is_loopback("127.1.2.3") and serve.is_loopback("[::1]")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.0.2.7") and not serve.is_loopback("box")
    argv = serve.session_argv("/etc/md.toml")
    assert argv[-4:] == ["modeldeck", "--config", "/etc/md.toml", "--read-only"] and "-P" in argv
    assert "--read-only" not in serve.session_argv("/etc/md.toml", allow_writes=True)


def test_the_page_fetches_nothing_from_the_internet() -> None:
    folder = serve.offline_templates()
    page = (folder / "app_index.html").read_text()
    assert "googleapis" not in page and "textual.js" in page and "{{ config.static.url }}" in page


def test_bad_serve_options_are_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err.strip() == "modeldeck: --port 0: use 1-65535"
    assert cli.main(["serve", "--demo", "--config", "x.toml"]) == 2
    assert "leave out --config" in capsys.readouterr().err
    assert cli.main(["serve"]) == 2  # no config anywhere
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path):
    write_world(tmp_path)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modeldeck", "serve", "--port", str(port),
                             "--config", str(tmp_path / "modeldeck.toml")], cwd=tmp_path, env=run_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.live
def test_a_browser_sees_the_fleet_table_read_only(served) -> None:
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; make test installs it as root)")
    url, proc = served
    text = asyncio.run(browser.load(url, ["ENDPOINT", "churn-prod", "read-only"], timeout=90))
    assert "ENDPOINT" in text and "churn-prod" in text and "fraud-prod" in text
    assert "read-only" in text  # each browser tab's console is started with --read-only
    assert proc.poll() is None


@pytest.mark.live
def test_a_non_loopback_host_warns(tmp_path: Path) -> None:
    write_world(tmp_path)
    # 192.0.2.1 (TEST-NET-1) is nobody's address here: the warning, then one line why it cannot bind
    r = subprocess.run([sys.executable, "-m", "modeldeck", "serve", "--host", "192.0.2.1", "--port", str(_free_port()),
                        "--config", str(tmp_path / "modeldeck.toml")], cwd=tmp_path, env=run_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("modeldeck: warning: serving on 192.0.2.1:") and "no login" in lines[0]
    assert lines[-1].startswith("modeldeck: cannot serve on 192.0.2.1:")


@pytest.mark.live
def test_a_browser_sees_the_endpoints_discovery_found(fleet, tmp_path: Path) -> None:  # noqa: F811
    """`modeldeck serve` on a config with no [[endpoints]], only a [[discover]] block over a
    real Prometheus: each browser tab's console lists the discovered endpoints as rows."""
    from tests.test_discover import BLOCK
    from tests.test_discover_environments import TOKEN, write_config

    if browser.chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; make test installs it as root)")
    prom, _ = fleet
    cfg = write_config(tmp_path, prom.url, {**BLOCK, "name_template": "found-{model}-{namespace}"})
    assert "[[endpoints]]" not in cfg.read_text()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modeldeck", "serve", "--port", str(port), "--config", str(cfg)],
                            cwd=tmp_path, env=run_env(PROM_TOKEN=TOKEN), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        text = asyncio.run(browser.load(url, ["ENDPOINT", "found-churn-prod", "found-fraud-prod", "UP"],
                                        timeout=90))
        assert "found-churn-prod" in text and "found-fraud-prod" in text  # the names only discovery makes
        assert "UP" in text and "read-only" in text
        assert TOKEN not in text
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
