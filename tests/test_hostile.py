"""Issue 13, a hostile test: what modeldeck does with input written to hurt it. Secrets echoed by
a webhook, CR/LF in headers and URLs, control characters in files and names, tampered audit
logs, huge, endless, nested and corrupt files. Real SQLite files, real loopback servers (marked
``live``), the real command line in-process (``cli.main``) or as a subprocess."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

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
