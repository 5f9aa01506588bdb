"""A Prometheus that goes wrong: unreachable, slow, 4xx/5xx, error JSON, not JSON, too large,
partial answers with warnings. Every affected endpoint says so in its reason; --report makes
it a WARNING finding; the TUI keeps running; header values never reach output or logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.poller import Poller
from modeldeck.core.registry import Registry
from modeldeck.core.snapshot import DEGRADED, UP
from modeldeck.tui.cli import run_report
from tests.faultservers import ENDLESS, HANG, FaultServer, Reply, refused_url

SECRET = "s3cret-token-do-not-print"
QUERY = "/api/v1/query"


def _settings(tmp_path: Path, url: str, *, timeout: float = 0.5, max_bytes: int | None = None,
              endpoint_url: str | None = None, discover: bool = False) -> config.Settings:
    prom: dict = {"url": url, "timeout": timeout, "headers": {"Authorization": "Bearer ${PROM_TOKEN}",
                                                               "X-Scope-OrgID": "team-a"}}
    if max_bytes:
        prom["max_bytes"] = max_bytes
    ep = {"name": "churn-prod", "model": "churn", "metrics": "prometheus", "metrics_profile": "mlserver",
          "selector": '{service="churn"}'}
    if endpoint_url:
        ep["url"] = endpoint_url
    data: dict = {"registry": str(tmp_path / "registry.db"), "prometheus": prom, "endpoints": [ep]}
    if discover:
        data["discover"] = [{"profile": "mlserver", "model_label": "model", "group_by": ["model"]}]
    return config.parse(data, tmp_path / "modeldeck.toml")


def _poll_once(settings: config.Settings):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with Poller(settings, aliases={}) as p:
            return await p.poll_once()

    return asyncio.run(main())


@pytest.fixture
def prom_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_TOKEN", SECRET)


def _vector(value: float = 1.0, warnings: list[str] | None = None) -> str:
    body: dict = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"service": "churn", "model": "churn", "version": "2"}, "value": [1.7e9, str(value)]}]}}
    if warnings:
        body["warnings"] = warnings
    return json.dumps(body)


def healthy(settings: config.Settings, warnings: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A fake Prometheus answer per query of the endpoint's profile: 4 requests/s, none failed,
    p95 120 ms, 1 s old."""
    from urllib.parse import parse_qs

    from modeldeck.core.promql import PromFleet

    assert settings.prometheus is not None
    queries, _ = PromFleet(settings.prometheus).queries_for("mlserver", list(settings.endpoints))
    values = {"errors": 0.0, "lat_sum": 0.2, "lat_count": 4.0, "p50": 0.05, "p95": 0.12,
              "p99": 0.2, "versions": 4.0, "up": 1.0, "age": 1.0}
    by_text = {q: values[k] for k, q in queries.items()}

    def answer(path: str, body: bytes) -> Reply | None:
        if path != QUERY:
            return None
        q = parse_qs(body.decode())["query"][0]
        return Reply(200, _vector(by_text[q], warnings), "application/json")

    return answer


CASES = [
    (HANG, "prometheus: query timed out after 0.5 s"),
    (Reply(500, json.dumps({"status": "error", "errorType": "internal", "error": "boom"}), "application/json"),
     "prometheus: HTTP 500: internal: boom"),
    (Reply(400, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}),
           "application/json"), "prometheus: HTTP 400: bad_data: parse error at char 3"),
    (Reply(200, json.dumps({"status": "error", "errorType": "timeout", "error": "query timed out in "
                                                                                 "expression evaluation"}),
           "application/json"), "prometheus: HTTP 200: timeout: query timed out in expression evaluation"),
    (Reply(502, "<html>Bad Gateway</html>", "text/html"), "prometheus: the answer is not JSON (HTTP 502, text/html)"),
    (Reply(200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
           "application/json"), "prometheus: the answer is not an instant vector"),
    (Reply(200, '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": 3}]}}',
           "application/json"), "prometheus: a series in the answer is malformed"),
]


@pytest.mark.live
@pytest.mark.parametrize("reply, reason", CASES)
def test_each_fault_is_the_endpoints_reason(tmp_path: Path, prom_token: None, caplog: pytest.LogCaptureFixture,
                                            reply: object, reason: str) -> None:
    caplog.set_level(logging.DEBUG)
    with FaultServer() as prom:
        prom.routes[QUERY] = reply  # type: ignore[assignment]
        (snap,) = _poll_once(_settings(tmp_path, prom.url, timeout=0.5 if reply is HANG else 5.0))
        assert prom.hits[QUERY] == 9  # one per quantity, each failed the same way
        seen = prom.headers_seen[-1]
    assert snap.status == DEGRADED
    assert snap.reason == reason
    assert snap.request_rate is None and snap.error_ratio is None
    assert seen["authorization"] == f"Bearer {SECRET}" and seen["x-scope-orgid"] == "team-a"
    assert SECRET not in caplog.text and SECRET not in json.dumps(snap.to_dict())


@pytest.mark.live
def test_unreachable(tmp_path: Path, prom_token: None) -> None:
    url = refused_url()
    (snap,) = _poll_once(_settings(tmp_path, url))
    assert snap.status == DEGRADED
    assert snap.reason == f"prometheus: {url.removeprefix('http://')}: connection refused"


@pytest.mark.live
def test_too_large_an_answer_is_cut_off(tmp_path: Path, prom_token: None) -> None:
    with FaultServer() as prom:
        prom.routes[QUERY] = ENDLESS
        (snap,) = _poll_once(_settings(tmp_path, prom.url, timeout=5.0, max_bytes=4096))
    assert snap.reason == "prometheus: answer larger than 4 KiB"


@pytest.mark.live
def test_partial_answer_with_warnings_is_noted(tmp_path: Path, prom_token: None) -> None:
    with FaultServer() as prom:
        settings = _settings(tmp_path, prom.url, timeout=5.0)  # nothing hangs here
        prom.handler = healthy(settings, ["partial response: store 3 unavailable"])
        (snap,) = _poll_once(settings)
    assert snap.status == DEGRADED  # the values may be incomplete
    assert snap.reason == "prometheus warning: partial response: store 3 unavailable"
    assert snap.request_rate == 4.0 and snap.latency_p95_ms == pytest.approx(120.0)
    assert snap.served_versions == ("2",)


@pytest.mark.live
def test_healthy_fake_answers(tmp_path: Path, prom_token: None) -> None:
    with FaultServer() as prom:
        settings = _settings(tmp_path, prom.url, timeout=5.0)  # nothing hangs here
        prom.handler = healthy(settings)
        (snap,) = _poll_once(settings)
    assert snap.status == UP and snap.reason == "ready"
    assert (snap.request_rate, snap.error_ratio, snap.latency_mean_ms) == (4.0, 0.0, pytest.approx(50.0))
    assert snap.live is True and snap.metrics_age == pytest.approx(1.0, abs=0.5)


@pytest.mark.live
def test_missing_token_variable_is_named_never_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROM_TOKEN", raising=False)
    with FaultServer() as prom:
        prom.routes[QUERY] = Reply(200, _vector(), "application/json")
        (snap,) = _poll_once(_settings(tmp_path, prom.url))
        assert prom.hits[QUERY] == 0  # nothing is sent without its headers
    assert snap.reason == "prometheus: header Authorization: environment variable PROM_TOKEN is not set"


@pytest.mark.live
def test_prometheus_down_with_oip_health_up(tmp_path: Path, prom_token: None) -> None:
    with FaultServer("churn") as model, FaultServer() as prom:
        prom.routes[QUERY] = HANG
        (snap,) = _poll_once(_settings(tmp_path, prom.url, endpoint_url=model.url))
    assert snap.status == DEGRADED and snap.model_ready is True  # the model answers; its metrics are unknown
    assert snap.reason == "prometheus: query timed out after 0.5 s"


def _registry(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry.db") as reg:
        reg.register("churn", "s3://m/1.pkl")
        reg.register("churn", "s3://m/2.pkl")
        reg.approve("churn", 2, "ok")
        reg.promote("churn", 2, "production", "the version the fake Prometheus reports")


@pytest.mark.live
def test_report_makes_unknown_metrics_a_warning(tmp_path: Path, prom_token: None) -> None:
    _registry(tmp_path)
    with FaultServer() as prom:
        prom.routes[QUERY] = HANG
        out, err = io.StringIO(), io.StringIO()
        code = run_report(_settings(tmp_path, prom.url, discover=True), fmt="json", sample=5.0,
                          stdout=out, stderr=err)
    doc = json.loads(out.getvalue())
    assert code == 1 and doc["status"] == "WARNING", doc
    messages = [f["message"] for f in doc["findings"] if f["severity"] == "WARNING"]
    assert "churn-prod: degraded: prometheus: query timed out after 0.5 s" in messages
    assert "discover discover[0]: prometheus: query timed out after 0.5 s" in messages
    assert SECRET not in out.getvalue() + err.getvalue()
    # and as a Prometheus textfile: unknown values are left out, not zero
    out = io.StringIO()
    with FaultServer() as prom:
        prom.routes[QUERY] = Reply(503, "unavailable")
        code = run_report(_settings(tmp_path, prom.url), fmt="prometheus", sample=0.0, stdout=out,
                          stderr=io.StringIO())
    assert code == 1
    assert 'modeldeck_endpoint_up{endpoint="churn-prod"' not in out.getvalue() or "NaN" not in out.getvalue()
    assert "modeldeck_report_status 1" in out.getvalue()


@pytest.mark.live
async def test_tui_keeps_running_while_prometheus_hangs(tmp_path: Path, prom_token: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.tui.app import ModeldeckApp
    from modeldeck.tui.source import PollerSource
    from modeldeck.tui.widgets.livetable import LiveTable

    monkeypatch.chdir(tmp_path)
    _registry(tmp_path)
    with FaultServer() as prom:
        prom.routes[QUERY] = HANG
        settings = _settings(tmp_path, prom.url)
        source = PollerSource(settings)
        app = ModeldeckApp(settings, source=source)
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.screen.query_one("#fleet-table", LiveTable)
            for _ in range(100):  # the first refresh times out after 0.5 s
                await pilot.pause(0.1)
                if str(table.get_cell("churn-prod", "status")) == "DEGRADED":
                    break
            assert str(table.get_cell("churn-prod", "status")) == "DEGRADED"
            detail = str(app.screen.query_one("#fleet-detail").render())
            assert "prometheus: query timed out after 0.5 s" in detail
            await pilot.press("p")  # still answering keys
            await pilot.pause()
            assert source.paused
            prom.routes.clear()
            prom.handler = healthy(settings)
            await pilot.press("p", "r")
            for _ in range(100):
                await pilot.pause(0.1)
                if str(table.get_cell("churn-prod", "status")) == "UP":
                    break
            assert str(table.get_cell("churn-prod", "status")) == "UP", str(app.screen.query_one("#fleet-detail").render())


@pytest.mark.live
def test_one_failing_query_keeps_the_others(tmp_path: Path, prom_token: None) -> None:
    from urllib.parse import parse_qs

    with FaultServer() as prom:
        settings = _settings(tmp_path, prom.url, timeout=5.0)  # nothing hangs here
        good = healthy(settings)

        def answer(path: str, body: bytes) -> Reply | str | None:
            if "histogram_quantile(0.95" in parse_qs(body.decode())["query"][0]:
                return Reply(422, json.dumps({"status": "error", "errorType": "execution",
                                              "error": "too many samples"}), "application/json")
            return good(path, body)

        prom.handler = answer
        (snap,) = _poll_once(settings)
    assert snap.status == DEGRADED
    assert snap.reason == "prometheus: p95 query: HTTP 422: execution: too many samples"
    assert snap.request_rate == 4.0 and snap.latency_p95_ms is None and snap.latency_p50_ms == pytest.approx(50.0)


def test_a_proxy_that_applies_keeps_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeck.core.http11 import env_proxied as _proxied

    for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(k, raising=False)
    assert not _proxied("http://prom.internal:9090")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert _proxied("http://prom.internal:9090")
    monkeypatch.setenv("NO_PROXY", "prom.internal")
    assert not _proxied("http://prom.internal:9090")
