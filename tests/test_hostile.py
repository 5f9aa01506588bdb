"""Issue 13, a hostile test: what modeldeck does with input written to hurt it. Secrets echoed by
a webhook, CR/LF in headers and URLs, control characters in files and names, tampered audit
logs, huge, endless, nested and corrupt files. Real SQLite files, real loopback servers (marked
``live``), the real command line in-process (``cli.main``) or as a subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeck.core import config as configmod
from modeldeck.core import hooks, releases, retrain
from modeldeck.core.errors import ConfigError
from modeldeck.core.http11 import PlainHTTP1Transport
from modeldeck.core.registry import Registry
from modeldeck.tui import cli
from tests.hookservers import _Server


def _settings(tmp_path: Path, data: dict[str, Any]) -> configmod.Settings:
    return configmod.parse(data, tmp_path / "modeldeck.toml")


def _write_config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "modeldeck.toml"
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------------
# 3. secrets: a webhook that reflects the request's headers in its answer


class ReflectingWebhook(_Server):
    """Answers ``status`` with a body quoting every request header (what a misconfigured proxy
    or a debugging endpoint does), padded past any sensible excerpt."""

    def __init__(self, status: int = 502, *, pad: int = 5000) -> None:
        super().__init__()
        self.status = status
        self.pad = pad
        self.requests: list[dict[str, str]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        with self.lock:
            self.requests.append(headers)
        echo = {"auth": headers.get("Authorization"), "key": headers.get("X-Api-Key"), "you_sent": headers, "run_id": headers.get("Authorization", ""),
                "state": headers.get("X-Api-Key", ""), "pad": "x" * self.pad}
        return self.status, echo, "application/json"


TOKEN = "tok-SECRET-4f9a2c"
API_KEY = "key-literal-77b1e0"
SIGN_SECRET = "sign-secret-a1b2c3"


def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("HOOK_SECRET", SIGN_SECRET)


def _hook(url: str) -> dict[str, Any]:
    return {"url": url, "secret": "${HOOK_SECRET}",
            "headers": {"Authorization": "Bearer ${HOOK_TOKEN}", "X-Api-Key": API_KEY,
                        "X-Basic": "Basic " + base64.b64encode(b"deployer:pa55-w0rd-xyz").decode()}}


def _leaks(text: str) -> list[str]:
    return [s for s in (TOKEN, API_KEY, SIGN_SECRET, "pa55-w0rd-xyz", "deployer:pa55") if s in text]


def test_redactor_replaces_every_form_of_a_secret_before_cutting() -> None:
    r = hooks.Redactor(["Bearer " + TOKEN, "Basic " + base64.b64encode(b"u:pa55-w0rd-xyz").decode(), "ab"])
    text = (f'{{"h": "Bearer {TOKEN}", "t": "{TOKEN}", "q": "?t={TOKEN}", "decoded": "u:pa55-w0rd-xyz", '
            f'"short": "ab"}}')
    out = r(text)
    assert _leaks(out) == [] and out.count("***") >= 4
    assert '"short": "ab"' in out  # a two-character value is no secret; redacting it would shred answers
    assert r("send a Bearer token") == "send a Bearer token"  # the scheme word alone is not secret
    # redaction happens on the whole answer, then the cut: no prefix of a secret at the edge
    cut = hooks.excerpt("a" * 295 + TOKEN, redact=r)
    assert "tok-" not in cut and len(cut) <= hooks.ANSWER_LIMIT
    assert r.data({"k": [TOKEN, {TOKEN: 1}]}) == {"k": ["***", {"***": 1}]}


@pytest.mark.live
def test_deploy_webhook_answer_never_puts_header_values_anywhere(tmp_path: Path, registry_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _secret_env(monkeypatch)
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1")
        reg.approve("churn", 1, "ok")
    with ReflectingWebhook(502) as hook:
        s = _settings(tmp_path, {"registry": str(registry_path), "models": {"churn": {"deploy": {"webhook": _hook(
            hook.url + "/deploy")}}}})
        with Registry(registry_path) as reg:
            out = releases.execute(releases.plan(s, reg, "churn", 1, "production", create_env=True), reason="first")
        sent = hook.requests[0]
    assert sent["Authorization"] == f"Bearer {TOKEN}" and sent["X-Api-Key"] == API_KEY  # it did get them
    assert out.status == releases.HOOK_FAILED and "HTTP 502" in out.message
    shown = out.message + "\n".join(e.message for e in out.events)
    log = Path(out.log_path or "").read_text()
    stored = registry_path.read_bytes().decode("latin-1")
    for where in (shown, log, stored):
        assert _leaks(where) == []
    assert "***" in log
    assert all(len(e.message) < 600 for e in out.events)  # cut to a few hundred characters


@pytest.mark.live
def test_retrain_webhook_answer_never_puts_header_values_anywhere(tmp_path: Path, registry_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _secret_env(monkeypatch)
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1")
    for status in (500, 200):  # a refusal, then an acceptance whose run id and state echo the headers
        with ReflectingWebhook(status) as hook:
            s = _settings(tmp_path, {"registry": str(registry_path), "models": {"churn": {"retrain": {
                "webhook": {**_hook(hook.url + "/run"), "status_url": hook.url + "/run/{run_id}", "poll_interval": 0.1},
                "timeout": 1.5}}}})
            run = retrain.start_retrain(s, "churn", reason="hostile", detach=False)
            job = run.wait(30)
        assert job is not None and job.status == "failed"
        written = "\n".join([job.message or "", job.external_id or "", Path(run.log_path).read_text(),
                             registry_path.read_bytes().decode("latin-1")])
        assert _leaks(written) == [], status
        assert len(job.message or "") < 600


@pytest.mark.live
async def test_an_endpoint_answer_quoted_in_a_reason_never_shows_its_header_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.core.poller import Poller
    from tests.faultservers import FaultServer, Reply

    monkeypatch.setenv("EP_TOKEN", TOKEN)
    with FaultServer() as srv:
        srv.routes["/metrics"] = Reply(200, f"\x1b[31m you sent Bearer {TOKEN} and {API_KEY}\r\n")  # quoted back
        s = configmod.parse({"registry": str(tmp_path / "r.db"), "poll": {"timeout": 1.0, "store_interval": 0},
                             "endpoints": [{"name": "e", "model": "m", "url": srv.url,
                                            "headers": {"Authorization": "Bearer ${EP_TOKEN}", "X-Api-Key": API_KEY}}]})
        async with Poller(s) as p:
            (snap,) = await p.poll_once()
    assert "metrics" in snap.reason and _leaks(snap.reason) == [] and "***" in snap.reason, snap.reason


# ---------------------------------------------------------------------------------------------
# 2. CR/LF in headers and URLs, non-finite numbers


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\x00b", "a\rb"])
def test_header_values_with_cr_lf_nul_are_config_errors(tmp_path: Path, value: str) -> None:
    ep = {"name": "e", "model": "m", "url": "http://127.0.0.1:1", "headers": {"X-Token": value}}
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.headers\.X-Token: the value holds a control character"):
        _settings(tmp_path, {"endpoints": [ep]})
    hook = {"deploy": {"webhook": {"url": "http://127.0.0.1:1", "headers": {"X-Token": value}}}}
    with pytest.raises(ConfigError, match="deploy.webhook.headers.X-Token"):
        _settings(tmp_path, {"models": {"m": hook}})
    with pytest.raises(ConfigError, match="not a valid HTTP header name"):
        _settings(tmp_path, {"endpoints": [{**ep, "headers": {"X\r\nEvil": "1"}}]})
    for section in ("mlflow", "prometheus"):
        with pytest.raises(ConfigError, match=f"{section}.headers.X-Token: the value holds a control character"):
            _settings(tmp_path, {section: {"url": "http://127.0.0.1:1", "headers": {"X-Token": value}}})


def test_a_variable_expanding_to_cr_lf_is_refused_when_the_request_is_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMUGGLE", "x\r\nGET /admin HTTP/1.1")
    s = _settings(tmp_path, {"endpoints": [{"name": "e", "model": "m", "url": "http://127.0.0.1:1",
                                            "headers": {"Authorization": "Bearer ${SMUGGLE}"}}],
                             "models": {"m": {"deploy": {"webhook": {"url": "http://127.0.0.1:1",
                                                                    "headers": {"X-T": "${SMUGGLE}"}}}}}})
    with pytest.raises(ConfigError, match="header Authorization: the value holds a control character") as e:
        s.endpoints[0].resolved_headers()
    assert "admin" not in str(e.value)
    with pytest.raises(ConfigError, match=r"webhook\.headers\.X-T"):
        hooks.webhook_headers(s.models["m"].deploy.webhook, b"{}", "models.m.deploy.webhook")  # type: ignore[union-attr]


@pytest.mark.live
async def test_plain_transport_never_writes_a_header_with_cr_lf() -> None:
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = PlainHTTP1Transport(httpx.AsyncHTTPTransport())
    try:
        bad = httpx.Request("GET", f"http://127.0.0.1:{port}/x", headers={"X-A": "a\r\nX-Evil: 1"})
        with pytest.raises(httpx.LocalProtocolError, match="CR, LF"):
            await transport.handle_async_request(bad)
        ok = await transport.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{port}/x"))
        assert ok.status_code == 200
        await ok.aclose()
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    assert len(got) == 1 and b"X-Evil" not in got[0]  # only the good request reached the server


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/a\r\nX: y", "http://127.0.0.1:1/a b", "http://h:99x/",
                                 "http://127.0.0.1:1/\x00"])
def test_urls_with_cr_lf_spaces_or_a_bad_port_are_config_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.url"):
        _settings(tmp_path, {"endpoints": [{"name": "e", "model": "m", "url": url}]})
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.capture"):
        _settings(tmp_path, {"endpoints": [{"name": "e", "model": "m", "url": "http://h", "capture": url}]})
    with pytest.raises(ConfigError, match="status_url"):
        _settings(tmp_path, {"models": {"m": {"retrain": {"webhook": {"url": "http://h", "status_url": url}}}}})


def test_a_crlf_url_is_one_config_line_for_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_config(tmp_path, '[[endpoints]]\nname = "e"\nmodel = "m"\nurl = "http://127.0.0.1:9/v\\r\\nX: 1"\n')
    assert cli.main(["--config", str(cfg), "--report"]) == 3
    err = capsys.readouterr().err
    assert "endpoints[0].url: must not contain spaces or control characters (\\x0d)" in err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["--config", str(cfg), "models"]) == 2
    assert "endpoints[0].url" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["interval = inf", "timeout = nan", "interval = -inf"])
def test_non_finite_numbers_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="must be a finite number"):
        configmod.parse_file(_write_config(tmp_path, f"[poll]\n{text}\n"))
    with pytest.raises(ConfigError, match="thresholds.psi_warn: must be a finite number"):
        configmod.parse_file(_write_config(tmp_path, "[thresholds]\npsi_warn = inf\n"))


# ---------------------------------------------------------------------------------------------
# 4, 5. the audit chain detects what it claims to detect, in one snapshot


def _three_entries(registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        for i in range(3):
            reg.register("churn", f"s3://m/{i}")


def _tampered(registry_path: Path, *sql: str) -> str:
    conn = sqlite3.connect(registry_path)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()
    with Registry(registry_path) as reg:
        r = reg.verify_audit()
    assert not r.ok
    return r.describe()


@pytest.mark.parametrize(("sql", "words"), [
    (["DELETE FROM audit WHERE id=3", "UPDATE meta SET value='null' WHERE key='audit_head'"], "unreadable ('null')"),
    (["DELETE FROM audit WHERE id=3", "UPDATE meta SET value=NULL WHERE key='audit_head'"], "unreadable (null)"),
    (["DELETE FROM audit WHERE id=3", "UPDATE meta SET value='{\"id\": \"x\"}' WHERE key='audit_head'"], "unreadable"),
    (["DELETE FROM audit WHERE id=3", "UPDATE meta SET value='garbage' WHERE key='audit_head'"], "unreadable"),
    (["DELETE FROM audit WHERE id=3", "DELETE FROM meta WHERE key='audit_head'"], "head of the audit chain is missing"),
    (["DELETE FROM audit", "DELETE FROM meta WHERE key='audit_head'"], "head of the audit chain is missing"),
])
def test_a_removed_null_or_garbage_head_is_a_broken_chain(registry_path: Path, sql: list[str], words: str) -> None:
    _three_entries(registry_path)
    text = _tampered(registry_path, *sql)
    assert "BROKEN" in text and words in text


def test_a_broken_head_refuses_writes_and_the_cli_says_so_in_one_line(
        registry_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _three_entries(registry_path)
    _tampered(registry_path, "DELETE FROM meta WHERE key='audit_head'")
    assert cli.main(["--registry", str(registry_path), "audit", "--verify"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("audit chain BROKEN") and len(err.splitlines()) == 1
    assert cli.main(["--registry", str(registry_path), "register", "churn", "--artifact", "s3://m/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "audit chain is broken" in err and "Traceback" not in err
    with Registry(registry_path) as reg:
        assert len(reg.versions("churn")) == 3  # nothing was written


def test_verify_reads_rows_and_head_in_one_snapshot(registry_path: Path) -> None:
    """A writer commits while verify is reading (a second real connection, run from SQLite's
    progress handler in the middle of verify's reads): the chain is intact, and says so."""
    _three_entries(registry_path)
    with Registry(registry_path) as reg, Registry(registry_path) as writer:
        wrote: list[int] = []

        def write_now() -> int:
            if not wrote:
                wrote.append(writer.register("churn", "s3://m/meanwhile").version)
            return 0

        reg.conn.set_progress_handler(write_now, 5)
        r = reg.verify_audit()
        reg.conn.set_progress_handler(None, 0)
        assert wrote, "the writer did not run during verify"
        assert r.ok, r.describe()
        assert reg.verify_audit().checked == 4


@pytest.mark.live
def test_verify_and_report_stay_intact_under_concurrent_writers(tmp_path: Path, registry_path: Path) -> None:
    import subprocess
    import sys

    from modeldeck.core import report
    from tests.conftest import ROOT

    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/0")
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests" / "registry_worker.py"), str(registry_path),
                               str(seed), "150"], stdout=subprocess.DEVNULL) for seed in range(3)]
    s = _settings(tmp_path, {"registry": str(registry_path)})
    bad = []
    try:
        with Registry(registry_path) as reg:
            while any(p.poll() is None for p in procs):
                r = reg.verify_audit()
                if not r.ok:
                    bad.append(r.describe())
                rep = report.collect(s, sample=0)
                if not rep.audit_ok:
                    bad.append(rep.audit_text)
    finally:
        for p in procs:
            p.wait(60)
    assert bad == []


# ---------------------------------------------------------------------------------------------
# 1. terminal injection: every printed line shows control characters visibly; names refuse them

ESC_TITLE = "a\x1b]0;pwned\x07b"  # sets the terminal's title
ESC_RED = "\x1b[31mred\x1b[0m"


def _no_raw_controls(text: str) -> None:
    bad = [ch for ch in text if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7f <= ord(ch) < 0xa0 or ch == "\u202e"]
    assert bad == [], repr(text[:400])


def test_drift_prints_hostile_column_names_visibly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, cur, other = tmp_path / "ref.csv", tmp_path / "cur.csv", tmp_path / "other.csv"
    rows = "\n".join(f"{i},{i % 3}" for i in range(200))
    ref.write_text(f"{ESC_TITLE},x\u202ey\n{rows}\n")
    cur.write_text(f"{ESC_TITLE},x\u202ey\n{rows}\n")
    other.write_text(f"{ESC_RED}\n" + "\n".join(str(i) for i in range(200)) + "\n")
    assert cli.main(["drift", str(ref), str(cur)]) == 0
    out = capsys.readouterr().out
    _no_raw_controls(out)
    assert "a\\x1b]0;pwned\\x07b" in out and "x\\u202ey" in out
    assert cli.main(["drift", str(ref), str(other)]) == 2
    err = capsys.readouterr().err
    _no_raw_controls(err)
    assert "no shared columns" in err and "\\x1b[31mred" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", [ESC_TITLE, "churn\x07", "churn\u202elive", "churn\x9b31m", "tab\tbed", "x" * 129])
def test_names_with_control_characters_or_too_long_are_refused_at_the_registry(
        registry_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    reg_args = ["--registry", str(registry_path)]
    assert cli.main([*reg_args, "register", name, "--artifact", "s3://m/1"]) == 2
    err = capsys.readouterr().err
    _no_raw_controls(err)
    assert ("control or invisible character" in err or "at most 128" in err) and len(err.strip().splitlines()) == 1
    assert cli.main([*reg_args, "register", "churn", "--artifact", "s3://m/1"]) == 0
    assert cli.main([*reg_args, "approve", "churn", "1", "--reason", "ok"]) == 0
    assert cli.main([*reg_args, "promote", "churn", "1", "--env", name, "--reason", "r", "--create-env",
                     "--no-verify"]) == 2
    assert cli.main([*reg_args, "tag", "churn", "1", f"{name}=v"]) == 2
    err = capsys.readouterr().err
    _no_raw_controls(err)
    with Registry(registry_path) as reg:
        assert [m.name for m in reg.models()] == ["churn"] and reg.aliases("churn") == {}
        assert reg.version("churn", 1).tags == {}
        assert reg.verify_audit().ok


def test_every_command_echoes_hostile_names_and_values_visibly(registry_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    reg_args = ["--registry", str(registry_path)]
    assert cli.main([*reg_args, "register", "churn", "--artifact", "s3://m/1"]) == 0
    seen: list[str] = []
    for argv in (["approve", ESC_TITLE, "1", "--reason", "r"], ["reject", ESC_TITLE, "1", "--reason", "r"],
                 ["tag", ESC_TITLE, "1", "k=v"], ["versions", ESC_TITLE], ["history", ESC_TITLE],
                 ["promote", ESC_TITLE, "1", "--env", "production", "--reason", "r"],
                 ["rollback", ESC_TITLE, "--env", "production", "--reason", "r"],
                 ["tag", "churn", "1", f"k={ESC_RED}"], ["audit"],
                 ["approve", "churn", "1", "--reason", ESC_RED], ["audit"]):
        cli.main([*reg_args, *argv])
        got = capsys.readouterr()
        _no_raw_controls(got.out + got.err)
        seen.append(got.out + got.err)
    assert sum("pwned" in t for t in seen) >= 7 and sum("\\x1b[31mred" in t for t in seen) >= 3


@pytest.mark.live
def test_a_real_process_never_writes_a_raw_escape(tmp_path: Path, registry_path: Path) -> None:
    import subprocess

    from tests.conftest import MODELDECK, run_env

    bad = tmp_path / "bad.csv"
    bad.write_text(f"{ESC_TITLE}\n1\n2\n")
    r = subprocess.run([*MODELDECK, "drift", str(bad), str(tmp_path / "missing\x1b[2J.csv")], capture_output=True,
                       env=run_env(), timeout=60)
    assert r.returncode == 2
    assert b"\x1b" not in r.stdout + r.stderr and b"\\x1b[2J" in r.stderr


# ---------------------------------------------------------------------------------------------
# 7, 8, 10. input limits: nested, corrupt, overflowing, endless, huge and sparse files


def _csv(path: Path, rows: int = 300, value: str | None = None) -> Path:
    path.write_text("a,b\n" + "\n".join(f"{value or (i % 17) / 7},{i % 5}" for i in range(rows)) + "\n")
    return path


def _drift_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = cli.main(["drift", *argv])
    got = capsys.readouterr()
    assert rc == 2, got
    lines = got.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in got.err and "Warning" not in got.err, got.err
    return lines[0]


def test_deeply_nested_json_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = _csv(tmp_path / "ref.csv")
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert "nested too deeply" in _drift_line(capsys, str(ref), str(deep))
    deep_array = tmp_path / "deep.json"
    deep_array.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in _drift_line(capsys, str(ref), str(deep_array))


def test_a_gzip_with_a_corrupt_body_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip
    import random

    rnd = random.Random(1)
    raw = gzip.compress(("a,b\n" + "\n".join(f"{rnd.random()},{rnd.random()}" for _ in range(5000))).encode())
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(raw[:200] + bytes(len(raw) - 200))  # a valid header, then garbage
    assert "bad gzip data" in _drift_line(capsys, str(_csv(tmp_path / "ref.csv")), str(bad))


def test_values_that_overflow_the_statistics_are_one_line_exit_2(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import random

    rnd = random.Random(2)
    ref = tmp_path / "ref.csv"
    ref.write_text("a\n" + "\n".join(str(rnd.random()) for _ in range(5000)) + "\n")
    huge = tmp_path / "huge.csv"
    huge.write_text("a\n" + "\n".join("1e308" for _ in range(5000)) + "\n")
    line = _drift_line(capsys, str(ref), str(huge))
    assert "nothing could be compared" in line and "too large" in line
    # with another column that compares, the run goes on and names the column it could not compare
    (tmp_path / "ref2.csv").write_text("a,b\n" + "\n".join(f"{rnd.random()},{i % 3}" for i in range(5000)) + "\n")
    (tmp_path / "huge2.csv").write_text("a,b\n" + "\n".join(f"1e308,{i % 3}" for i in range(5000)) + "\n")
    assert cli.main(["drift", str(tmp_path / "ref2.csv"), str(tmp_path / "huge2.csv")]) in (0, 1)
    got = capsys.readouterr()
    assert "Warning" not in got.err and "a: column 'a': values too large" in got.out


def test_devices_and_fifos_are_refused_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = str(_csv(tmp_path / "ref.csv"))
    assert "not a regular file (a character device)" in _drift_line(capsys, ref, "/dev/zero")
    assert "not a regular file (a character device)" in _drift_line(capsys, "/dev/zero", ref)
    fifo = tmp_path / "capture.jsonl"
    os.mkfifo(fifo)
    assert "not a regular file (a FIFO)" in _drift_line(capsys, ref, str(fifo))
    from modeldeck.core import capture

    with pytest.raises(capture.InputError, match="FIFO"):
        capture.read_window(str(fifo), 100)


def test_local_files_have_the_url_byte_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    ref = str(_csv(tmp_path / "ref.csv"))
    big = _csv(tmp_path / "big.csv", rows=20_000)
    assert "over the 65536-byte cap" in _drift_line(capsys, ref, str(big), "--max-bytes", "64K")
    bomb = tmp_path / "bomb.csv.gz"  # 100 KiB that inflates to 100 MiB
    bomb.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * (25 << 20)))
    assert bomb.stat().st_size < 1 << 20
    assert "once decompressed" in _drift_line(capsys, ref, str(bomb), "--max-bytes", "8M")


def test_a_window_of_a_sparse_2_gib_file_reads_from_its_end_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from modeldeck.core import capture

    records = "".join(json.dumps({"a": i % 7, "b": f"x{i % 3}"}) + "\n" for i in range(3000)).encode()
    for name, first in (("cap.jsonl", b'{"a": 0, "b": "x0"}\n'), ("cap.csv", b"a,b\n")):
        path = tmp_path / name
        with open(path, "wb") as f:
            f.write(first)
            f.truncate(2 << 30)  # a 2 GiB hole (no disk used), then the newest records
            f.seek(0, os.SEEK_END)
            f.write(records if name.endswith(".jsonl") else
                    "".join(f"{i % 7},x{i % 3}\n" for i in range(3000)).encode())
        tracemalloc.start()
        try:
            window = capture.read_window(str(path), 1000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(window) == 1000 and list(window.columns) == ["a", "b"]
        assert peak < 32 << 20, f"{name}: {peak / 2**20:.0f} MiB for a 1,000-row window"
        with pytest.raises(capture.InputError, match="over the"):  # the whole file: refused, not read
            capture.read_window(str(path), None)


def test_a_hole_where_the_window_should_be_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    from modeldeck.core import capture

    path = tmp_path / "cap.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"a": 1}\n')
        f.truncate(1 << 30)  # no line break in the last GiB
    with pytest.raises(capture.InputError, match="longer than 64 MiB"):
        capture.read_window(str(path), 1000)


@pytest.mark.parametrize(("content", "words"), [
    (b"", "the file is empty"),
    (bytes(range(256)) * 8, "cannot read"),
    ("a,b\n\xe9t\xe9,1\n".encode("latin-1"), "codec can't decode"),
])
def test_register_reference_refuses_what_drift_refuses_with_the_same_line(
        tmp_path: Path, registry_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, words: str) -> None:
    ref = tmp_path / "reference.csv"
    ref.write_bytes(content)
    drift_line = _drift_line(capsys, str(ref), str(_csv(tmp_path / "cur.csv")))
    assert words in drift_line
    rc = cli.main(["--registry", str(registry_path), "register", "churn", "--artifact", "s3://m/1",
                   "--reference", str(ref)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == drift_line
    assert not registry_path.exists() or Registry(registry_path).versions("churn") == []
    assert cli.main(["--registry", str(registry_path), "register", "churn", "--artifact", "s3://m/1",
                     "--reference", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_eval_and_training_datasets_refuse_devices_and_nested_json(tmp_path: Path, registry_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "eval.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    base = ["--registry", str(registry_path), "register", "churn", "--artifact", "s3://m/1"]
    assert cli.main([*base, "--metrics", '{"auc": 0.9}', "--eval-dataset", str(deep)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", "/dev/zero"]) == 2
    assert "not a regular file (a device)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 9. names at their bound, log file names, and failures after the alias move


def _release_settings(tmp_path: Path, registry_path: Path, model: str, dump: Path,
                      endpoints: list[dict[str, Any]] | None = None) -> configmod.Settings:
    import sys

    script = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    data: dict[str, Any] = {"registry": str(registry_path), "models": {model: {
        "deploy": {"command": [sys.executable, "-c", script, str(dump), "{environment}"]},
        "verify_timeout": 2, "bake_seconds": 0}}}
    if endpoints:
        data["endpoints"] = endpoints
    return _settings(tmp_path, data)


@pytest.mark.live
@pytest.mark.parametrize(("model", "env"), [("m" * 128, "e" * 128), ("é" * 128, "环境" * 64)])
def test_names_at_the_bound_release_and_log_under_a_short_slug(tmp_path: Path, registry_path: Path,
                                                               model: str, env: str) -> None:
    dump = tmp_path / "deployed.txt"
    with Registry(registry_path) as reg:
        reg.register(model, "s3://m/1")
        reg.approve(model, 1, "ok")
    s = _release_settings(tmp_path, registry_path, model, dump)
    with Registry(registry_path) as reg:
        out = releases.execute(releases.plan(s, reg, model, 1, env, create_env=True), reason="long names",
                               verify=False)
        assert out.status == releases.RELEASED, out.message
        assert reg.alias(model, env) == 1
    log = Path(out.log_path or "")
    assert log.is_file() and len(log.name.encode()) < 120
    assert dump.read_text() == env + "\n"  # the hook ran, with the whole name


@pytest.mark.live
def test_a_release_log_that_cannot_be_written_puts_the_alias_back_with_its_reason(
        tmp_path: Path, registry_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "state-is-a-file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocked))  # the log folder cannot be created
    dump = tmp_path / "deployed.txt"
    with Registry(registry_path) as reg:
        reg.register("churn", "s3://m/1")
        reg.approve("churn", 1, "ok")
    s = _release_settings(tmp_path, registry_path, "churn", dump)
    with Registry(registry_path) as reg:
        out = releases.execute(releases.plan(s, reg, "churn", 1, "production", create_env=True), reason="r",
                               verify=False)
        assert out.status == releases.HOOK_FAILED and "cannot write the release log" in out.message
        assert reg.alias("churn", "production") is None  # not "deployed" while the hook never ran
        undo = reg.audit(limit=1)[0]
        assert undo.action == "unset" and "cannot write the release log" in undo.reason
    assert not dump.exists()


def test_an_internal_error_while_verifying_rolls_the_alias_back(tmp_path: Path, registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        for n in (1, 2):
            reg.register("churn", f"s3://m/{n}")
            reg.approve("churn", n, "ok")
        reg.promote("churn", 1, "production", "first")
    s = _settings(tmp_path, {"registry": str(registry_path), "models": {"churn": {"verify_timeout": 1,
                                                                               "bake_seconds": 0}},
                             "endpoints": [{"name": "e", "model": "churn", "url": "http://127.0.0.1:9"}]})

    def broken_poll() -> list[Any]:
        raise RuntimeError("poller bug")

    with Registry(registry_path) as reg:
        out = releases.execute(releases.plan(s, reg, "churn", 2, "production", check_health=False), reason="r",
                               poll=broken_poll, interval=0.01)
        assert out.status == releases.ROLLED_BACK and "internal error: RuntimeError: poller bug" in out.message
        assert reg.alias("churn", "production") == 1


# ---------------------------------------------------------------------------------------------
# 6. a real tamper-evidence guarantee: rows covered by the chain, signed checkpoints outside it


def _recompute_chain(registry_path: Path, *sql: str) -> None:
    """What an attacker who can write the file does: change rows, then recompute every hash
    and the head, so the chain alone verifies as intact."""
    from modeldeck.core.registry import GENESIS, entry_hash

    conn = sqlite3.connect(registry_path)
    for statement in sql:
        conn.execute(statement)
    prev, last = GENESIS, 0
    for i, at, actor, action, subject, before, after, reason in conn.execute(
            "SELECT id, at, actor, action, subject, before, after, reason FROM audit ORDER BY id").fetchall():
        h = entry_hash(prev, i, at, actor, action, subject, before, after, reason)
        conn.execute("UPDATE audit SET prev_hash=?, hash=? WHERE id=?", (prev, h, i))
        prev, last = h, i
    conn.execute("UPDATE meta SET value=? WHERE key='audit_head'", (json.dumps({"id": last, "hash": prev}),))
    conn.commit()
    conn.close()


def _history_of_releases(registry_path: Path) -> None:
    with Registry(registry_path) as reg:
        for n in (1, 2, 3):
            reg.register("churn", f"s3://m/{n}")
            reg.approve("churn", n, "ok")
        reg.promote("churn", 1, "production", "first")
        reg.promote("churn", 2, "production", "better")
        reg.tag("churn", 2, "owner", "ana")


def _verify(registry_path: Path) -> str:
    with Registry(registry_path) as reg:
        return reg.verify_audit().describe()


@pytest.mark.parametrize(("sql", "words"), [
    ("UPDATE versions SET artifact='s3://evil/model' WHERE version=2", "version 2 of churn differs"),
    ("UPDATE versions SET approval='approved', approval_by='boss' WHERE version=3", "version 3 of churn differs"),
    ("UPDATE alias_history SET actor='boss' WHERE id=2", "alias history row 2 (churn production) differs"),
    ("INSERT INTO alias_history(model, environment, from_version, to_version, action, actor, at, reason) "
     "VALUES ('churn', 'production', 2, 3, 'promote', 'boss', '2026-01-01T00:00:00.000000Z', 'x')",
     "alias history row 3 (churn production: promote to version 3 by boss) has no audit entry"),
    ("UPDATE aliases SET version=3 WHERE environment='production'", "points at version 3 but its history says version 2"),
    ("DELETE FROM versions WHERE version=3", "version 3 of churn, written by audit entry 6, is gone"),
])
def test_edited_versions_and_alias_history_rows_break_the_chain(registry_path: Path, sql: str, words: str) -> None:
    _history_of_releases(registry_path)
    assert "intact" in _verify(registry_path)
    conn = sqlite3.connect(registry_path)
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(sql)
    conn.commit()
    conn.close()
    text = _verify(registry_path)
    assert "BROKEN" in text and words in text, text


def test_rows_written_before_row_hashing_are_counted_not_broken(registry_path: Path) -> None:
    _history_of_releases(registry_path)
    # an upgraded registry: its entries carry no row hashes (what older modeldeck wrote)
    _recompute_chain(registry_path, "UPDATE audit SET after=json_remove(after, '$._row')")
    with Registry(registry_path) as reg:
        r = reg.verify_audit()
        assert r.ok and r.rows_checked == 0 and r.rows_uncovered == 5  # 3 versions, 2 alias moves
        reg.promote("churn", 3, "production", "after the upgrade")
        r = reg.verify_audit()
        assert r.ok and r.rows_checked == 1 and r.rows_uncovered == 5, r.describe()  # the new move is covered
        reg.conn.execute("UPDATE alias_history SET actor='boss' WHERE id=3")
        assert "alias history row 3 (churn production) differs" in reg.verify_audit().describe()


def _key_files(tmp_path: Path) -> tuple[Path, Path]:
    from modeldeck.core import checkpoints

    key = checkpoints.key_path()
    return key, checkpoints.public_key_path(key)


def test_checkpoint_command_creates_a_private_key_signs_and_prints(
        registry_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import stat as stat_mod

    _history_of_releases(registry_path)
    cps = tmp_path / "checkpoints.jsonl"
    base = ["--registry", str(registry_path), "audit"]
    assert cli.main([*base, "checkpoint", "--checkpoints", str(cps)]) == 0
    printed = capsys.readouterr().out.strip()
    key, pub = _key_files(tmp_path)
    assert stat_mod.S_IMODE(key.stat().st_mode) == 0o600 and pub.is_file()
    line = json.loads(printed)
    assert line["entries"] == 9 and cps.read_text().strip() == printed
    with Registry(registry_path) as reg:
        reg.promote("churn", 3, "production", "more")
    assert cli.main([*base, "checkpoint", "--checkpoints", str(cps)]) == 0
    capsys.readouterr()
    assert len(cps.read_text().splitlines()) == 2
    assert cli.main([*base, "--verify", "--checkpoints", str(cps), "--public-key", str(pub)]) == 0
    assert "2 signed checkpoints hold" in capsys.readouterr().out
    key.chmod(0o644)
    assert cli.main([*base, "checkpoint", "--checkpoints", str(cps)]) == 2
    assert "readable or writable by others" in capsys.readouterr().err


def test_a_rewritten_or_cut_history_is_caught_by_checkpoints_even_with_every_hash_recomputed(
        registry_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    _history_of_releases(registry_path)
    cps = tmp_path / "checkpoints.jsonl"
    base = ["--registry", str(registry_path), "audit"]
    assert cli.main([*base, "checkpoint", "--checkpoints", str(cps)]) == 0
    _, pub = _key_files(tmp_path)
    pristine = tmp_path / "pristine.db"
    shutil.copy(registry_path, pristine)
    verify = [*base, "--verify", "--checkpoints", str(cps), "--public-key", str(pub)]
    attacks = {
        "rewritten": ["UPDATE audit SET actor='mallory' WHERE id=7",
                      "UPDATE alias_history SET actor='mallory' WHERE id=1"],
        "cut": ["DELETE FROM audit WHERE id=9", "UPDATE versions SET tags='{}' WHERE version=2"],
    }
    for kind, sql in attacks.items():
        shutil.copy(pristine, registry_path)
        _recompute_chain(registry_path, *sql)
        if kind == "rewritten":  # the row hashes in the entries still match the rows: recompute those too
            with Registry(registry_path) as reg:
                fixed = reg._row_ref("alias_history", 1)
            _recompute_chain(registry_path, f"UPDATE audit SET after=json_set(after, '$._row.sha256', "
                                            f"'{fixed['sha256']}') WHERE id=7")
        assert "intact" in _verify(registry_path), kind  # the chain alone cannot tell
        assert cli.main(verify) == 1, kind
        err = capsys.readouterr().err
        assert "BROKEN" in err and ("was rewritten" if kind == "rewritten" else "history was cut") in err, err


def test_forged_foreign_or_missing_checkpoints_do_not_vouch(registry_path: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _history_of_releases(registry_path)
    cps = tmp_path / "checkpoints.jsonl"
    base = ["--registry", str(registry_path), "audit"]
    assert cli.main([*base, "checkpoint", "--checkpoints", str(cps)]) == 0
    _, pub = _key_files(tmp_path)
    verify = [*base, "--verify", "--checkpoints", str(cps), "--public-key", str(pub)]
    line = json.loads(cps.read_text())
    cps.write_text(json.dumps({**line, "entries": 3}) + "\n")  # edited: the signature no longer matches
    assert cli.main(verify) == 1 and "signature does not verify" in capsys.readouterr().err
    cps.write_text(json.dumps({**line, "registry": "0" * 32}) + "\n")
    assert cli.main(verify) == 1 and "no checkpoint of this registry" in capsys.readouterr().err
    cps.write_text("not json\n")
    assert cli.main(verify) == 2 and "line 1: not a checkpoint" in capsys.readouterr().err


@pytest.mark.live
def test_every_report_run_signs_a_checkpoint_and_the_next_one_catches_a_rewrite(
        tmp_path: Path, registry_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.core import checkpoints, report

    monkeypatch.setenv("MODELDECK_AUDIT_KEY", str(tmp_path / "keys" / "audit.pem"))
    _history_of_releases(registry_path)
    s = _settings(tmp_path, {"registry": str(registry_path)})
    first = report.collect(s, sample=0)
    assert first.audit_ok and "checkpoint 9 signed" in first.audit_text
    assert (tmp_path / "keys" / "audit.pem").is_file()
    report.collect(s, sample=0)
    assert len(checkpoints.read(checkpoints.default_file(registry_path))) == 2
    _recompute_chain(registry_path, "UPDATE audit SET reason='nothing happened' WHERE id=8")
    third = report.collect(s, sample=0)
    assert not third.audit_ok and third.exit_code == 2 and "rewritten" in third.audit_text
    assert len(checkpoints.read(checkpoints.default_file(registry_path))) == 2  # a broken chain is never signed


# ---------------------------------------------------------------------------------------------
# 11. thousands of refused endpoints in --report: one connection attempt each, no client each


@pytest.mark.live
def test_a_refused_endpoint_costs_the_report_one_connection_attempt(tmp_path: Path, registry_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The work per refused endpoint, counted on the real transport: the report's bound holds
    at 10,000 of them (benchmarks/bench_report.py measures it) only because a refused endpoint
    costs one connection attempt in all, and no httpx client or pool."""
    import socket

    from modeldeck.core import http11, report

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections to it are refused
    attempts: list[tuple[str, int]] = []
    checkout = http11.PlainHTTP1Transport._checkout

    async def counted(self: Any, key: tuple[str, int]) -> Any:
        attempts.append(key)
        return await checkout(self, key)

    clients: list[Any] = []
    real_client = httpx.AsyncClient

    def counted_client(*a: Any, **kw: Any) -> Any:
        clients.append(1)
        return real_client(*a, **kw)

    monkeypatch.setattr(http11.PlainHTTP1Transport, "_checkout", counted)
    monkeypatch.setattr(http11.httpx, "AsyncClient", counted_client)
    with Registry(registry_path) as reg:
        reg.register("m", "s3://m/1")
    n = 300
    s = _settings(tmp_path, {"registry": str(registry_path), "poll": {"timeout": 2.0},
                             "endpoints": [{"name": f"e{i}", "model": "m", "url": f"http://127.0.0.1:{port}/e{i}"}
                                           for i in range(n)]})
    r = report.collect(s, sample=0.2)
    assert [e.snapshot.reason for e in r.endpoints] == ["connection refused"] * n
    assert len(attempts) == n, f"{len(attempts)} connection attempts for {n} refused endpoints"
    assert len(clients) <= 1  # the default headers' one, not one per endpoint



def test_concurrent_first_use_of_the_audit_key_makes_one_whole_key(tmp_path: Path) -> None:
    """Two cron reports starting together on a new machine: every caller gets the same complete
    key (the file never appears half-written: the old create-then-write lost this race), 0600."""
    import sys
    import threading

    from modeldeck.core import checkpoints

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to open the race wide
    try:
        for round_ in range(30):
            key = tmp_path / f"r{round_}" / "audit-key.pem"
            start, ids, errors = threading.Barrier(8), [], []

            def first_use(key: Path, start: threading.Barrier, ids: list[str], errors: list[str]) -> None:
                start.wait()
                try:
                    ids.append(checkpoints.key_id(checkpoints.load_or_create_key(key).public_key()))
                except Exception as e:  # the test reports what any caller saw
                    errors.append(str(e))

            threads = [threading.Thread(target=first_use, args=(key, start, ids, errors)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert errors == [] and len(set(ids)) == 1 and len(ids) == 8, (round_, errors, ids)
            assert key.stat().st_mode & 0o777 == 0o600
            assert not [p for p in key.parent.iterdir() if p.name.startswith(".audit-key-")]
    finally:
        sys.setswitchinterval(old)


def _one_line_slow(text: object, limit: int = 200) -> str:
    """one_line without its fast path: every substitution, always."""
    from modeldeck.core.textfmt import _CONTROL, _USERINFO, visible

    s = _CONTROL.sub(lambda m: visible(m.group()), str(text))
    s = _USERINFO.sub(r"\1", " ".join(s.split()))
    return s if len(s) <= limit else s[: limit - 1] + "…"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=60) | st.sampled_from(
    ["ready", " ready", "a  b", "http://u:p@h/x", "x\u202ey", "\x1b[31m", "a\u00a0b", "a\u2028b", "p95 12 ms"]),
    st.integers(min_value=1, max_value=80))
def test_one_line_fast_path_changes_nothing(text: str, limit: int) -> None:
    from modeldeck.core.textfmt import one_line

    assert one_line(text, limit) == _one_line_slow(text, limit)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9), st.booleans(), st.none()))
def test_finite_fast_path_for_floats(value: object) -> None:
    import math

    from modeldeck.core.textfmt import finite

    got = finite(value)
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        assert got is None
    else:
        assert got == float(value) and type(got) is float  # type: ignore[arg-type]
