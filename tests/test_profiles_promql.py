"""Every metrics profile through PromQL against exact data (promtool), and the kserve profile
when scraped directly (KServe 0.21's metrics, ``versions: null``, 501 on the version route)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from modeldeck.core import config
from modeldeck.core.metrics import detect_profile, rates_between, read_metrics
from modeldeck.core.poller import Poller
from modeldeck.core.snapshot import UP
from tests.faultservers import FaultServer, Reply
from tests.promserver import backfill, skip_reason

STEP = 15
STEPS = 9


def _om(t0: int) -> str:
    out: list[str] = []

    def add(name: str, labels: str, per_step: float, i: int, t: int) -> None:
        out.append(f"{name}{{{labels}}} {per_step * i:g} {t}")

    for i in range(STEPS):
        t = t0 + i * STEP
        # Triton: counters without _total, quantiles from the summary_latencies summary (µs)
        tr = 'service="triton",model="resnet",version="2"'
        add("nv_inference_request_success", tr, 49, i, t)
        add("nv_inference_request_failure", tr, 1, i, t)
        add("nv_inference_request_duration_us", tr, 49 * 10_000, i, t)
        for q, us in (("0.5", 8000), ("0.9", 15000), ("0.95", 20000), ("0.99", 30000)):
            out.append(f'nv_inference_request_summary_us{{{tr},quantile="{q}"}} {us} {t}')
        # TorchServe: per-model requests, host-wide 5XX
        ts = 'service="torch",model_name="bert",model_version="1.0"'
        add("ts_inference_requests_total", ts, 30, i, t)
        add("ts_inference_latency_microseconds_total", ts, 30 * 50_000, i, t)
        add("Requests2XX_total", 'service="torch",Level="Host"', 29, i, t)
        add("Requests5XX_total", 'service="torch",Level="Host"', 1, i, t)
        # BentoML: status codes, health routes excluded
        for code, n in (("200", 40), ("500", 2)):
            add("bentoml_service_request_total",
                f'service="bento",service_name="iris",endpoint="/predict",http_response_code="{code}"', n, i, t)
        add("bentoml_service_request_total",
            'service="bento",service_name="iris",endpoint="/healthz",http_response_code="200"', 100, i, t)
        b = 'service="bento",service_name="iris",endpoint="/predict"'
        for le, n in (("0.05", 21), ("0.1", 42), ("+Inf", 42)):
            add("bentoml_service_request_duration_seconds_bucket", f'{b},le="{le}"', n, i, t)
        add("bentoml_service_request_duration_seconds_sum", b, 42 * 0.06, i, t)
        add("bentoml_service_request_duration_seconds_count", b, 42, i, t)
        # KServe's own model server: request_predict_seconds only, no failure counter
        k = 'service="kserve",model_name="sklearn-iris"'
        for le, n in (("0.01", 10), ("0.05", 20), ("+Inf", 20)):
            add("request_predict_seconds_bucket", f'{k},le="{le}"', n, i, t)
        add("request_predict_seconds_sum", k, 20 * 0.02, i, t)
        add("request_predict_seconds_count", k, 20, i, t)
        # KServe on Knative: queue-proxy (ms, response_code_class) and the model server in one revision
        r = 'service="flowers",revision_name="flowers-00001"'
        add("revision_app_request_count", f'{r},response_code_class="2xx"', 45, i, t)
        add("revision_app_request_count", f'{r},response_code_class="5xx"', 5, i, t)
        for le, n in (("100", 25), ("500", 50), ("+Inf", 50)):
            add("revision_app_request_latencies_bucket", f'{r},le="{le}"', n, i, t)
        add("revision_app_request_latencies_sum", r, 50 * 150, i, t)
        add("revision_app_request_latencies_count", r, 50, i, t)
        add("request_predict_seconds_count", f'{r},model_name="flowers"', 48, i, t)
        add("request_predict_seconds_sum", f'{r},model_name="flowers"', 48 * 0.01, i, t)
        for svc in ("triton", "torch", "bento", "kserve", "flowers"):
            out.append(f'up{{service="{svc}",job="fleet"}} 1 {t}')
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    t0 = int(time.time()) - 3600
    with backfill(tmp_path_factory.mktemp("prom-profiles"), _om(t0)) as server:
        yield server, t0 + (STEPS - 1) * STEP


ENDPOINTS = [("resnet", "triton", "triton"), ("bert", "torchserve", "torch"), ("iris", "bentoml", "bento"),
             ("sklearn-iris", "kserve", "kserve"), ("flowers", "kserve", "flowers")]


@pytest.fixture(scope="module")
def snaps(exact, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    prom, at = exact
    tmp = tmp_path_factory.mktemp("profiles-cfg")
    settings = config.parse({
        "registry": str(tmp / "none.db"), "prometheus": {"url": prom.url, "window": "1m", "timeout": 5.0},
        "endpoints": [{"name": m, "model": m, "metrics": "prometheus", "metrics_profile": p,
                       "selector": f'{{service="{s}"}}'} for m, p, s in ENDPOINTS]}, tmp / "modeldeck.toml")

    async def main():  # type: ignore[no-untyped-def]
        async with Poller(settings, clock=lambda: at, aliases={("resnet", "production"): 2}) as p:
            out = await p.poll_once()
            return {s.endpoint: s for s in out}, p._prom.client.queries

    got, queries = asyncio.run(main())
    # one query per quantity per profile, whatever the number of endpoints: triton 8 (the request
    # rate and the mean's count from the successes per version), torchserve 5 (no quantiles; the
    # requests per version), bentoml 9 and kserve 9 (no version label)
    assert queries == 8 + 5 + 9 + 9
    return got


@pytest.mark.live
def test_triton(snaps, exact) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    s = snaps["resnet"]
    assert s.request_rate == pytest.approx(50 / 15)
    assert s.error_ratio == pytest.approx(0.02)
    assert s.latency_mean_ms == pytest.approx(10.0)
    assert (s.latency_p50_ms, s.latency_p95_ms, s.latency_p99_ms) == pytest.approx((8.0, 20.0, 30.0))
    assert s.served_versions == ("2",) and s.status == UP and s.profile == "triton"
    assert s.request_rate == pytest.approx(prom.value(
        'sum(rate(nv_inference_request_success{service="triton"}[1m])) + '
        'sum(rate(nv_inference_request_failure{service="triton"}[1m]))', at))


@pytest.mark.live
def test_torchserve(snaps, exact) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    s = snaps["bert"]
    assert s.request_rate == pytest.approx(2.0)
    assert s.error_ratio == pytest.approx(1 / 30)  # host-wide 5XX over the model's requests
    assert s.latency_mean_ms == pytest.approx(50.0)
    assert s.latency_p95_ms is None  # TorchServe exports no latency distribution
    assert s.served_versions == ("1.0",)
    assert s.error_ratio == pytest.approx(prom.value(
        'sum(rate(Requests5XX_total{service="torch"}[1m])) / sum(rate(ts_inference_requests_total{service="torch"}[1m]))',
        at))


@pytest.mark.live
def test_bentoml(snaps, exact) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    s = snaps["iris"]
    assert s.request_rate == pytest.approx(42 / 15)  # /healthz not counted
    assert s.error_ratio == pytest.approx(2 / 42)
    assert s.latency_p50_ms == pytest.approx(50.0)
    assert s.latency_p95_ms == pytest.approx(95.0)
    assert s.latency_mean_ms == pytest.approx(60.0)
    assert s.latency_p95_ms == pytest.approx(1000 * prom.value(
        'histogram_quantile(0.95, sum by (le) (rate(bentoml_service_request_duration_seconds_bucket'
        '{service="bento", endpoint="/predict"}[1m])))', at))


@pytest.mark.live
def test_kserve_model_server(snaps, exact) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    s = snaps["sklearn-iris"]
    assert s.request_rate == pytest.approx(20 / 15)
    assert s.error_ratio is None and "errors not reported by kserve" in s.reason  # never 0
    assert s.latency_p50_ms == pytest.approx(10.0)
    assert s.latency_p95_ms == pytest.approx(46.0)
    assert s.latency_mean_ms == pytest.approx(20.0)
    assert s.served_versions == () and s.status == UP
    assert s.latency_p95_ms == pytest.approx(1000 * prom.value(
        'histogram_quantile(0.95, sum by (le) (rate(request_predict_seconds_bucket{service="kserve"}[1m])))', at))


@pytest.mark.live
def test_kserve_on_knative_reads_queue_proxy(snaps, exact) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    s = snaps["flowers"]
    assert s.request_rate == pytest.approx(50 / 15)  # queue-proxy's count, not the model server's 48
    assert s.error_ratio == pytest.approx(0.1)
    assert s.latency_p50_ms == pytest.approx(100.0)  # queue-proxy latencies are milliseconds
    assert s.latency_p95_ms == pytest.approx(460.0)
    assert s.latency_mean_ms == pytest.approx(150.0)
    assert s.error_ratio == pytest.approx(prom.value(
        'sum(rate(revision_app_request_count{service="flowers", response_code_class="5xx"}[1m])) / '
        'sum(rate(revision_app_request_count{service="flowers"}[1m]))', at))


# ---------------------------------------------------------------------------------------------
# kserve scraped directly


def kserve_metrics(model: str, count: int) -> str:
    """KServe 0.21's /metrics: only request_predict_seconds, labelled model_name."""
    lines = ["# HELP request_predict_seconds predict latency", "# TYPE request_predict_seconds histogram"]
    for le, share in (("0.005", 0.2), ("0.01", 0.6), ("0.05", 1.0), ("+Inf", 1.0)):
        lines.append(f'request_predict_seconds_bucket{{le="{le}",model_name="{model}"}} {count * share}')
    lines += [f'request_predict_seconds_count{{model_name="{model}"}} {float(count)}',
              f'request_predict_seconds_sum{{model_name="{model}"}} {count * 0.008}',
              f'request_predict_seconds_created{{model_name="{model}"}} 1.7e9']
    return "\n".join(lines) + "\n"


def test_kserve_direct_reading() -> None:
    a = kserve_metrics("sklearn-iris", 100)
    assert detect_profile(a) is not None and detect_profile(a).name == "kserve"  # type: ignore[union-attr]
    r1, p = read_metrics(a, model="sklearn-iris", at=0.0)
    r2, _ = read_metrics(kserve_metrics("sklearn-iris", 300), model="sklearn-iris", at=10.0)
    assert p is not None and p.name == "kserve" and r1 is not None and r2 is not None
    assert r1.errors is None  # no failure counter: unknown, never 0
    rates = rates_between(r1, r2)
    assert rates.request_rate == pytest.approx(20.0) and rates.error_ratio is None
    assert rates.mean_ms == pytest.approx(8.0)
    other, _ = read_metrics(a, model="another", at=0.0)
    assert other is not None and other.requests == 0


@pytest.mark.live
def test_kserve_direct_version_unknown_not_a_mismatch(tmp_path: Path) -> None:
    model = "sklearn-iris"
    with FaultServer(model) as srv:
        srv.routes[f"/v2/models/{model}"] = Reply(200, json.dumps({"name": model, "versions": None,
                                                                  "platform": "sklearn"}), "application/json")
        srv.routes[f"/v2/models/{model}/versions/3/ready"] = Reply(501, '{"error": "not implemented"}')
        srv.routes["/metrics"] = Reply(200, kserve_metrics(model, 100))
        settings = config.parse({"registry": str(tmp_path / "none.db"), "endpoints": [
            {"name": "iris", "model": model, "url": srv.url, "metrics_profile": "kserve"}]},
            tmp_path / "modeldeck.toml")

        async def main():  # type: ignore[no-untyped-def]
            async with Poller(settings, aliases={(model, "production"): 3}) as p:
                await p.poll_once()
                srv.routes["/metrics"] = Reply(200, kserve_metrics(model, 150))
                await asyncio.sleep(0.2)
                return (await p.poll_once())[0]

        s = asyncio.run(main())
    assert s.status == UP, s.reason
    assert s.served_version is None and not s.version_mismatch
    assert "version unknown" in s.reason and "answered 501" in s.reason
    assert "errors not reported by kserve" in s.reason
    assert s.error_ratio is None and s.request_rate and s.request_rate > 0
    assert s.profile == "kserve"


@pytest.mark.live
def test_profile_detected_without_metrics_profile(snaps, exact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """metrics = "prometheus" without metrics_profile: the profile is detected from the families
    Prometheus has for the selector (one query), and the values are those of the declared one;
    a selector matching no known server's families says so in one line, naming what to set."""
    prom, at = exact
    settings = config.parse({
        "registry": str(tmp_path / "none.db"), "prometheus": {"url": prom.url, "window": "1m", "timeout": 5.0},
        "endpoints": [*({"name": m, "model": m, "metrics": "prometheus", "selector": f'{{service="{s}"}}'}
                        for m, _p, s in ENDPOINTS),
                      {"name": "ghost", "model": "ghost", "metrics": "prometheus", "selector": '{service="ghost"}'}]},
        tmp_path / "modeldeck.toml")

    async def main():  # type: ignore[no-untyped-def]
        async with Poller(settings, clock=lambda: at, aliases={("resnet", "production"): 2}) as p:
            first = {s.endpoint: s for s in await p.poll_once()}
            n = p._prom.client.queries
            await p.poll_once()
            return first, n, p._prom.client.queries - n

    got, queries, again = asyncio.run(main())
    assert queries == 1 + 8 + 5 + 9 + 9  # the detection, then as when declared
    assert again == 8 + 5 + 9 + 9  # detected once
    for m, profile, _s in ENDPOINTS:
        declared, detected = snaps[m], got[m]
        assert detected.profile == profile, (m, detected.reason)
        assert (detected.status, detected.request_rate, detected.error_ratio, detected.latency_p95_ms) == \
            (declared.status, declared.request_rate, declared.error_ratio, declared.latency_p95_ms)
    ghost = got["ghost"]
    assert ghost.status != UP
    assert ("prometheus: no series of kserve, triton, mlserver, torchserve, bentoml match {service=\"ghost\"}: "
            "set metrics_profile") in ghost.reason
