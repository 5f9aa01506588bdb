"""Prometheus as the metrics source (core/promql.py): config, selectors, the per-profile PromQL
against a real Prometheus, scraping a loopback fake fleet and serving exact data loaded with
promtool; the snapshots the poller makes of them."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeck.core import config
from modeldeck.core.errors import ConfigError
from modeldeck.core.poller import Poller
from modeldeck.core.promql import (
    Matcher,
    PromClient,
    PromError,
    PromFleet,
    SelectorError,
    _parse_selector,
    made_selector,
    parse_selector,
    selector_text,
)
from modeldeck.core.snapshot import DEGRADED, DOWN, UP
from tests.faultservers import FaultServer
from tests.promserver import PromServer, backfill, skip_reason

# ---------------------------------------------------------------------------------------------
# config and selectors (no server)


def _parse(tmp_path: Path, data: dict) -> config.Settings:
    return config.parse(data, tmp_path / "modeldeck.toml")


def test_selector_parse_and_text() -> None:
    ms = parse_selector('{namespace="prod", service=~"churn|fraud", pod!="x\\"y"}')
    assert [(m.name, m.op, m.value) for m in ms] == [("namespace", "=", "prod"), ("service", "=~", "churn|fraud"),
                                                       ("pod", "!=", 'x"y')]
    assert parse_selector(selector_text(ms)) == ms
    assert ms[1].matches({"service": "churn"}) and not ms[1].matches({"service": "churn2"})
    assert parse_selector("") == ()
    for bad in ('{namespace="prod"', "namespace=prod", '{__name__="up"}', '{a=~"("}'):
        with pytest.raises(SelectorError):
            parse_selector(bad)


_LABEL = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True).filter(lambda n: n != "__name__")


@given(st.lists(st.tuples(_LABEL, st.text(max_size=20)), max_size=4))
def test_made_selector_gives_back_what_parsing_its_text_gives(pairs: list[tuple[str, str]]) -> None:
    """Discovery's selectors are remembered with their matchers, not parsed again: the matchers
    handed back are those the text parses to (quotes, backslashes, control characters, any
    Unicode in the values)."""
    ms = [Matcher(name, "=", value) for name, value in pairs]
    text = made_selector(ms)
    assert parse_selector(text) == tuple(ms) == _parse_selector(text)


def test_prometheus_config(tmp_path: Path) -> None:
    s = _parse(tmp_path, {
        "prometheus": {"url": "http://127.0.0.1:9/mimir/prometheus/", "window": "1m30s", "timeout": 2.5,
                       "headers": {"X-Scope-OrgID": "team-a", "Authorization": "Bearer ${PROM_TOKEN}"}},
        "endpoints": [{"name": "a", "model": "churn", "metrics": "prometheus", "metrics_profile": "mlserver",
                       "selector": '{namespace="prod",service="churn"}'},
                      {"name": "b", "model": "churn", "url": "http://127.0.0.1:8080"}]})
    assert s.prometheus is not None
    assert s.prometheus.url == "http://127.0.0.1:9/mimir/prometheus"  # the path prefix is kept
    assert s.prometheus.window_seconds == 90.0 and s.prometheus.timeout == 2.5
    a, b = s.endpoints
    assert a.via_prometheus and a.url == "" and a.metrics_url == ""
    assert a.selector == '{namespace="prod", service="churn"}'
    assert not b.via_prometheus and b.metrics_url == "http://127.0.0.1:8080/metrics"


@pytest.mark.parametrize("data, where", [
    ({"endpoints": [{"name": "a", "model": "m", "metrics": "prometheus", "metrics_profile": "mlserver"}]},
     "endpoints[0].metrics: is \"prometheus\" but the config has no [prometheus]"),
    ({"prometheus": {"url": "http://p"}, "endpoints": [{"name": "a", "model": "m", "metrics": "prometheus"}]},
     "endpoints[0]: endpoint 'a': metrics = \"prometheus\" needs metrics_profile (one of mlserver, triton, "
     "torchserve, bentoml, kserve), or a selector to detect it from"),
    ({"prometheus": {"url": "http://p"}, "endpoints": [{"name": "a", "model": "m", "metrics": "pull"}]},
     'endpoints[0].metrics: must be "scrape" or "prometheus"'),
    ({"endpoints": [{"name": "a", "model": "m"}]}, "endpoints[0]: missing required key 'url'"),
    ({"prometheus": {"url": "http://p"}, "endpoints": [{"name": "a", "model": "m", "metrics": "prometheus",
                                                        "metrics_profile": "mlserver", "selector": "{a=b}"}]},
     "endpoints[0].selector: not a label matcher"),
    ({"prometheus": {"url": "http://p", "window": "1 minute"}}, "prometheus.window: must be a PromQL duration"),
    ({"prometheus": {"url": "http://p", "timeot": 1}}, "prometheus.timeot: unknown key (did you mean 'timeout'?)"),
    ({"prometheus": {}}, "prometheus: missing required key 'url'"),
    ({"endpoints": [{"name": "a", "model": "m", "url": "http://x", "selector": '{a="b"}'}]},
     'endpoints[0].selector: only applies with metrics = "prometheus"'),
    ({"endpoints": [{"name": "a", "model": "m", "url": "http://x", "metrics_profile": "tfserving"}]},
     "endpoints[0].metrics_profile: unknown metrics profile 'tfserving'"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, data: dict, where: str) -> None:
    with pytest.raises(ConfigError) as e:
        _parse(tmp_path, data)
    assert str(e.value).startswith(str(tmp_path / "modeldeck.toml") + ": " + where), str(e.value)


def test_one_query_per_quantity_for_every_endpoint() -> None:
    cfg = config.PrometheusConfig(url="http://127.0.0.1:9", window="1m")
    eps = [config.EndpointConfig(name=f"e{i}", model=f"m{i}", url="", metrics="prometheus",
                                 metrics_profile="mlserver", selector=f'{{namespace="prod", service="s{i}"}}')
           for i in range(50)]
    queries, plans = PromFleet(cfg).queries_for("mlserver", eps)
    # the request rate is the successes per version (also the served versions) plus the failures
    assert set(queries) == {"errors", "lat_sum", "lat_count", "p50", "p95", "p99", "versions", "up", "age"}
    q = queries["versions"]
    # the shared matcher as it is, the per-endpoint values as one set, grouped by both labels and the model
    assert 'namespace="prod"' in q and 'service=~"s0|s1|s10|' in q and "by (service, model, version, model_version)" in q
    assert 'model=~"m0|m1|' in q
    assert len(plans) == 50


# ---------------------------------------------------------------------------------------------
# a real Prometheus scraping a loopback fleet


needs_prometheus = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@pytest.fixture(scope="session")
def scraped(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    churn = FaultServer("churn", ["3"], metrics_version="3").start()
    fraud = FaultServer("fraud", ["7"], metrics_version="7").start()
    prom = PromServer(tmp_path_factory.mktemp("prom-scrape"), scrape_interval=0.5)
    prom.set_targets([(f"127.0.0.1:{churn.port}", {"service": "churn", "namespace": "prod"}),
                      (f"127.0.0.1:{fraud.port}", {"service": "fraud", "namespace": "prod"})])
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            churn.stats.observe(40, 0.03, failed=1)
            fraud.stats.observe(10, 0.3)
            stop.wait(0.25)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        prom.start()
        # a few scrapes of both, so rates over 10 s a second ago exist
        prom.wait_for('count_over_time(model_infer_request_success_total[10s]) >= 4', at_least=2, timeout=60)
        prom.wait_for('count_over_time(model_infer_request_failure_total{service="churn"}[10s]) >= 4', timeout=60)
        yield prom, churn, fraud
    finally:
        stop.set()
        prom.stop()
        churn.close()
        fraud.close()


def _settings(tmp_path: Path, prom_url: str, endpoints: list[dict], **prom: object) -> config.Settings:
    return _parse(tmp_path, {"registry": str(tmp_path / "none.db"),
                             "prometheus": {"url": prom_url, "window": "10s", "timeout": 5.0, **prom},
                             "endpoints": endpoints})


def _poll(settings: config.Settings, at: float, aliases: dict | None = None):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with Poller(settings, clock=lambda: at, aliases=aliases or {}) as p:
            snaps = await p.poll_once()
            return snaps, p._prom.client.queries

    return asyncio.run(main())


@pytest.mark.live
def test_mlserver_through_real_prometheus(scraped, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prom, _churn, _fraud = scraped
    settings = _settings(tmp_path, prom.url, [
        {"name": "churn-prod", "model": "churn", "metrics": "prometheus", "metrics_profile": "mlserver",
         "selector": '{namespace="prod", service="churn"}'},
        {"name": "fraud-prod", "model": "fraud", "metrics": "prometheus", "metrics_profile": "mlserver",
         "selector": '{namespace="prod", service="fraud"}'}])
    at = time.time() - 1.0
    (churn, fraud), queries = _poll(settings, at, {("churn", "production"): 3, ("fraud", "production"): 6})
    assert queries == 9  # one query per quantity for both endpoints
    s = '{service="churn"}'
    ok = prom.value(f"sum(rate(model_infer_request_success_total{s}[10s]))", at)
    bad = prom.value(f"sum(rate(model_infer_request_failure_total{s}[10s]))", at)
    assert ok and bad
    assert churn.status == UP, churn.reason
    assert churn.request_rate == pytest.approx(ok + bad)
    assert churn.error_ratio == pytest.approx(bad / (ok + bad))
    p95 = prom.value('histogram_quantile(0.95, sum by (le) (rate(rest_server_request_duration_seconds_bucket'
                     '{service="churn", path=~".*/infer"}[10s])))', at)
    assert churn.latency_p95_ms == pytest.approx(p95 * 1000)
    mean = prom.value(f"sum(rate(model_infer_request_duration_sum{s}[10s])) / "
                      f"sum(rate(model_infer_request_duration_count{s}[10s]))", at)
    assert churn.latency_mean_ms == pytest.approx(mean * 1000)
    assert churn.served_versions == ("3",) and churn.served_version == "3"
    assert churn.live is True and churn.metrics_window == 10.0
    assert churn.metrics_age is not None and churn.profile == "mlserver"
    # the version label says 7, the alias 6: a mismatch, as direct scraping would say
    assert fraud.status == DEGRADED and "serves version 7" in fraud.reason
    assert fraud.error_ratio == 0.0  # no failure series yet: 0 failures, never unknown


@pytest.mark.live
def test_prometheus_endpoint_with_url_polls_health_directly(scraped, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prom, churn_server, _ = scraped
    settings = _settings(tmp_path, prom.url, [
        {"name": "churn-prod", "model": "churn", "metrics": "prometheus", "metrics_profile": "mlserver",
         "selector": '{service="churn"}', "url": churn_server.url}])
    before = churn_server.hits["/metrics"]
    (snap,), _ = _poll(settings, time.time() - 1.0, {("churn", "production"): 3})
    assert snap.status == UP and snap.model_ready is True and snap.request_rate
    assert churn_server.hits["/v2/models/churn"] >= 1  # OIP metadata asked directly
    # modeldeck itself never scraped it (Prometheus did, once a second)
    assert churn_server.hits["/metrics"] - before <= 3


@pytest.mark.live
def test_no_series_is_down_with_the_selector(scraped, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prom, _, _ = scraped
    settings = _settings(tmp_path, prom.url, [
        {"name": "ghost", "model": "ghost", "metrics": "prometheus", "metrics_profile": "mlserver",
         "selector": '{service="ghost"}'}])
    (snap,), _ = _poll(settings, time.time())
    assert snap.status == DOWN and 'no series in Prometheus match {service="ghost"}' in snap.reason


# ---------------------------------------------------------------------------------------------
# exact data loaded with promtool


STEP = 15  # seconds between samples
STEPS = 9


def _om_mlserver(t0: int) -> str:
    """Two MLServer endpoints, per step: churn 100 requests (2 failed; 50 <= 0.1 s, 45 more
    <= 0.25 s, 5 more <= 0.5 s; 2 s spent), fraud 30 requests, no failure series at all."""
    lines = []
    for i in range(STEPS):
        t = t0 + i * STEP
        c = 'namespace="prod",service="churn",model="churn",version="3"'
        lines += [f"model_infer_request_success_total{{{c}}} {98 * i} {t}",
                  f"model_infer_request_failure_total{{{c}}} {2 * i} {t}",
                  f"model_infer_request_duration_sum{{{c}}} {2.0 * i} {t}",
                  f"model_infer_request_duration_count{{{c}}} {100 * i} {t}"]
        r = 'namespace="prod",service="churn",path="/v2/models/{model_name}/infer"'
        for le, n in (("0.1", 50), ("0.25", 95), ("0.5", 100), ("+Inf", 100)):
            lines.append(f'rest_server_request_duration_seconds_bucket{{{r},le="{le}"}} {n * i} {t}')
        h = 'namespace="prod",service="churn",path="/v2/health/ready"'  # slow health checks do not count
        for le, n in (("0.1", 0), ("0.25", 0), ("0.5", 0), ("+Inf", 10)):
            lines.append(f'rest_server_request_duration_seconds_bucket{{{h},le="{le}"}} {n * i} {t}')
        f = 'namespace="prod",service="fraud",model="fraud",version="7"'
        lines.append(f"model_infer_request_success_total{{{f}}} {30 * i} {t}")
        # broken: every request fails (no success series at all); calm: 3 failures long ago, none since
        b = 'namespace="prod",service="broken",model="broken",version="1"'
        lines.append(f"model_infer_request_failure_total{{{b}}} {6 * i} {t}")
        q = 'namespace="prod",service="calm",model="calm",version="2"'
        lines += [f"model_infer_request_success_total{{{q}}} {15 * i} {t}",
                  f"model_infer_request_failure_total{{{q}}} 3 {t}"]
        for svc in ("churn", "fraud", "broken", "calm"):
            lines.append(f'up{{namespace="prod",service="{svc}",job="fleet"}} 1 {t}')
        # search: two pods of one endpoint, 100 requests each a step; pod a all <= 0.1 s, pod b
        # 20 <= 0.25 s and 80 more <= 0.5 s
        for pod, buckets in (("a", (100, 100, 100, 100)), ("b", (0, 20, 100, 100))):
            m = f'namespace="prod",service="search",pod="{pod}"'
            lines.append(f'model_infer_request_success_total{{{m},model="search",version="1"}} {100 * i} {t}')
            for le, n in zip(("0.1", "0.25", "0.5", "+Inf"), buckets):
                lines.append(f'rest_server_request_duration_seconds_bucket{{{m},path="/v2/models/search/infer",'
                             f'le="{le}"}} {n * i} {t}')
            lines.append(f'up{{{m},job="fleet"}} 1 {t}')
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    t0 = int(time.time()) - 3600
    text = _om_mlserver(t0)
    server = backfill(tmp_path_factory.mktemp("prom-exact"), text)
    with server:
        yield server, t0 + (STEPS - 1) * STEP


def _exact_settings(tmp_path: Path, url: str, *services: str) -> config.Settings:
    """An MLServer endpoint per service of the exact data, named and modelled after it."""
    return _parse(tmp_path, {
        "registry": str(tmp_path / "none.db"), "prometheus": {"url": url, "window": "1m", "timeout": 5.0},
        "endpoints": [{"name": n, "model": n, "metrics": "prometheus", "metrics_profile": "mlserver",
                       "selector": f'{{namespace="prod", service="{n}"}}'} for n in services]})


@pytest.mark.live
def test_mlserver_exact_values(exact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    settings = _exact_settings(tmp_path, prom.url, "churn", "fraud")
    (churn, fraud), _ = _poll(settings, at, {("churn", "production"): 3, ("fraud", "production"): 7})
    # known in advance: 100 requests / 15 s, 2 % failed, quantiles by linear interpolation
    assert churn.request_rate == pytest.approx(100 / 15)
    assert churn.error_ratio == pytest.approx(0.02)
    assert churn.latency_p50_ms == pytest.approx(100.0)
    assert churn.latency_p95_ms == pytest.approx(250.0)
    assert churn.latency_p99_ms == pytest.approx(450.0)
    assert churn.latency_mean_ms == pytest.approx(20.0)
    assert churn.status == UP and churn.served_versions == ("3",)
    assert churn.metrics_age == pytest.approx(0.0, abs=0.01)
    # and the same PromQL run directly
    assert churn.latency_p95_ms == pytest.approx(1000 * prom.value(
        'histogram_quantile(0.95, sum by (le) (rate(rest_server_request_duration_seconds_bucket'
        '{service="churn", path=~".*/infer"}[1m])))', at))
    assert fraud.request_rate == pytest.approx(2.0) and fraud.error_ratio == 0.0
    assert fraud.latency_p95_ms is None  # no route histogram for it


@pytest.mark.live
def test_mlserver_failures_counted_where_only_they_exist_or_none_happened(exact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The request rate is the successes plus the failures, and the errors query answers only
    where failures happened in the window: every request failing is a 100 % error ratio at the
    failure rate; a failure counter that did not move is 0 errors, as the guarded PromQL says."""
    prom, at = exact
    settings = _exact_settings(tmp_path, prom.url, "broken", "calm")
    (broken, calm), _ = _poll(settings, at, {("broken", "production"): 1, ("calm", "production"): 2})
    assert broken.request_rate == pytest.approx(6 / 15) and broken.error_ratio == 1.0
    assert calm.request_rate == pytest.approx(1.0) and calm.error_ratio == 0.0
    assert calm.served_versions == ("2",)
    guarded = ('sum(rate(model_infer_request_failure_total{service="calm"}[1m])) or '
               'sum(rate(model_infer_request_success_total{service="calm"}[1m])) * 0')
    assert prom.value(guarded, at) == 0.0


@pytest.mark.live
def test_client_query_against_exact_data(exact) -> None:  # type: ignore[no-untyped-def]
    prom, at = exact
    cfg = config.PrometheusConfig(url=prom.url, timeout=5.0)

    async def main():  # type: ignore[no-untyped-def]
        c = PromClient(cfg)
        try:
            return await c.query('sum by (service) (rate(model_infer_request_success_total[1m]))', at=at)
        finally:
            await c.aclose()

    r = asyncio.run(main())
    got = {s.labels["service"]: s.value for s in r.series}
    assert got == pytest.approx({"churn": 98 / 15, "fraud": 2.0, "search": 200 / 15, "calm": 1.0})


@pytest.mark.live
def test_infinities_and_nan_as_prometheus_writes_them(exact) -> None:  # type: ignore[no-untyped-def]
    """Prometheus writes +Inf, -Inf and NaN as "+Inf", "-Inf", "NaN"; the decoder reads them
    as floats, and a label value "+Inf" (a bucket's le) stays as it is."""
    prom, at = exact
    cfg = config.PrometheusConfig(url=prom.url, timeout=5.0)
    q = ('label_replace(vector(1) / 0, "k", "pos", "", "") or label_replace(vector(-1) / 0, "k", "neg", "", "")'
         ' or label_replace(vector(0) / 0, "k", "nan", "", "")'
         ' or label_replace(label_replace(vector(2), "le", "+Inf", "", ""), "k", "le", "", "")')

    async def main():  # type: ignore[no-untyped-def]
        c = PromClient(cfg)
        try:
            return await c.query(q, at=at)
        finally:
            await c.aclose()

    got = {s.labels["k"]: s for s in asyncio.run(main()).series}
    assert got["pos"].value == math.inf and got["neg"].value == -math.inf and math.isnan(got["nan"].value)
    assert got["le"].labels["le"] == "+Inf" and got["le"].value == 2.0


@pytest.mark.parametrize("body, error", [
    (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"+Inf"},"value":[1,"+Inf"]},'
     b'{"metric":{},"value":[1,"-Inf"]},{"metric":{"b":"x"},"value":[1,"1e-3"]}]},"warnings":["w",7]}', None),
    (b'[1, 2]', "prometheus: the answer is not a JSON object (HTTP 200)"),
    (b'{"status":"success","data":null}', "prometheus: the answer is not an instant vector"),
    (b'{"status":"success"}', "prometheus: the answer is not an instant vector"),
    (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"2"]}]}}',
     "prometheus: a series in the answer is malformed"),
    (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"two"]}]}}',
     "prometheus: a series in the answer is malformed"),
    (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}',
     "prometheus: a series in the answer is malformed"),
    (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]',
     "prometheus: the answer is not JSON (HTTP 200, application/json)"),
    (rb'{"status":"error","errorType":{"x":1},"error":["a\u001b[31m"]}', None),
])
def test_answers_are_decoded_or_refused_in_one_line(body: bytes, error: str | None) -> None:
    from modeldeck.core.promql import _decode

    if body.startswith(b'{"status":"error"'):
        with pytest.raises(PromError) as e:
            _decode(body, 422, "application/json")
        assert str(e.value).startswith("prometheus: HTTP 422: ") and "\x1b" not in str(e.value)
        assert str(e.value).isprintable()
        return
    if error is not None:
        with pytest.raises(PromError, match="^" + re.escape(error) + "$"):
            _decode(body, 200, "application/json")
        return
    r = _decode(body, 200, "application/json")
    assert [(s.labels, s.value) for s in r.series] == [({"a": "+Inf"}, math.inf), ({}, -math.inf), ({"b": "x"}, 0.001)]
    assert r.warnings == ("w",)


@pytest.mark.live
def test_quantiles_of_an_endpoint_over_several_pods_merge_their_buckets(exact, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An endpoint whose selector spans several series groups of the fleet query (its pods, while
    another endpoint's selector names the pod; or a regex matcher) gets the quantile of its
    buckets summed by le, not its slowest pod's."""
    prom, at = exact

    def ep(name: str, selector: str) -> dict:
        return {"name": name, "model": "search", "metrics": "prometheus", "metrics_profile": "mlserver",
                "selector": selector}

    settings = _parse(tmp_path, {
        "registry": str(tmp_path / "none.db"), "prometheus": {"url": prom.url, "window": "1m", "timeout": 5.0},
        "endpoints": [ep("search", '{namespace="prod", service="search"}'),
                      ep("search-a", '{namespace="prod", service="search", pod="a"}'),
                      ep("search-ab", '{service="search", pod=~"a|b"}'),
                      {**ep("churn", '{namespace="prod", service="churn"}'), "model": "churn"}]})
    (search, search_a, search_ab, churn), queries = _poll(settings, at)
    assert queries == 9 + 3  # the fleet's queries, and one merged query per quantile
    # known in advance: merged 200 a step, 100 <= 0.1 s, 120 <= 0.25 s, 200 <= 0.5 s
    assert search.latency_p95_ms == pytest.approx(250 + (190 - 120) / 80 * 250)  # 468.75; pod b alone: 484.4
    assert search.latency_p50_ms == pytest.approx(100.0)  # pod b alone: 343.75
    assert search.latency_p99_ms == pytest.approx(250 + (198 - 120) / 80 * 250)
    direct = prom.value('histogram_quantile(0.95, sum by (le) (rate(rest_server_request_duration_seconds_bucket'
                        '{service="search", path=~".*/infer"}[1m])))', at)
    assert search.latency_p95_ms == pytest.approx(1000 * direct)
    assert search_ab.latency_p95_ms == pytest.approx(1000 * direct)
    assert search.request_rate == pytest.approx(200 / 15) and search_a.request_rate == pytest.approx(100 / 15)
    assert search_a.latency_p95_ms == pytest.approx(95.0)  # its own pod's
    assert churn.latency_p95_ms == pytest.approx(250.0)  # no pod label: the same either way


@pytest.mark.live
def test_the_age_query_answers_once_per_endpoint(exact) -> None:  # type: ignore[no-untyped-def]
    # its fallback on `up` (which has no model label) matches on the labels up has: before, an
    # endpoint with request series came back twice, once from each side of the `or`
    prom, at = exact
    cfg = config.PrometheusConfig(url=prom.url, timeout=5.0)
    endpoints = [config.EndpointConfig(name=n, model=n, url="", metrics="prometheus", metrics_profile="mlserver",
                                       selector=f'{{namespace="prod", service="{n}"}}') for n in ("churn", "fraud")]

    async def main():  # type: ignore[no-untyped-def]
        fleet = PromFleet(cfg)
        try:
            queries, _ = fleet.queries_for("mlserver", endpoints)
            return queries["age"], await fleet.client.query(queries["age"], at=at)
        finally:
            await fleet.aclose()

    expr, r = asyncio.run(main())
    services = sorted(s.labels.get("service") for s in r.series)
    assert services == ["churn", "fraud"], (expr, [s.labels for s in r.series])
    assert all(s.value == pytest.approx(0.0, abs=0.01) for s in r.series)


@pytest.mark.live
def test_a_prefetch_answers_the_next_refresh_of_the_same_endpoints_once(exact, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The poller's first refresh after discovery uses the answers prefetched for its endpoints:
    each query is sent once, the readings are those of a plain refresh. A prefetch made for other
    endpoints, or one older than PREFETCH_FOR, is not used: that refresh asks again."""
    import modeldeck.core.promql as promql

    prom, at = exact
    cfg = config.PrometheusConfig(url=prom.url, timeout=5.0)

    def ep(n: str) -> config.EndpointConfig:
        return config.EndpointConfig(name=n, model=n, url="", metrics="prometheus", metrics_profile="mlserver",
                                     selector=f'{{namespace="prod", service="{n}"}}')

    both = [ep("churn"), ep("fraud")]

    async def main():  # type: ignore[no-untyped-def]
        fleet = PromFleet(cfg, clock=lambda: at)
        try:
            per_refresh = len(fleet.queries_for("mlserver", both)[0])
            sent = []
            fleet.prefetch("mlserver", both)
            await asyncio.sleep(0.3)  # the poller makes other endpoints meanwhile: the answers come in
            first = await fleet.refresh(both)
            sent.append(fleet.client.queries)
            plain = await fleet.refresh(both)
            sent.append(fleet.client.queries)
            fleet.prefetch("mlserver", both[:1])  # for churn alone: the refresh of both asks again
            other = await fleet.refresh(both)
            sent.append(fleet.client.queries)
            monkeypatch.setattr(promql, "PREFETCH_FOR", 0.0)
            fleet.prefetch("mlserver", both)
            await asyncio.sleep(0.01)
            stale = await fleet.refresh(both)
            sent.append(fleet.client.queries)
            return per_refresh, sent, (first, plain, other, stale), fleet._prefetched
        finally:
            await fleet.aclose()

    per_refresh, sent, readings, left = asyncio.run(main())
    assert sent[0] == per_refresh and sent[1] == 2 * per_refresh
    assert sent[2] >= 3 * per_refresh  # (and churn's own queries, where they went out before the cancel)
    assert sent[3] - sent[2] == 2 * per_refresh  # the stale prefetch went out, and was asked again
    assert not left
    for got in readings:
        assert got["churn"].p95_ms == pytest.approx(250.0)
        assert got["churn"].request_rate == pytest.approx(100 / 15)
        assert got["fraud"].request_rate == pytest.approx(2.0)
        assert got["churn"].error is None and got["fraud"].error is None
        assert got == readings[1]


@pytest.mark.parametrize(("url", "headers", "sent"), [
    ("http://127.0.0.1:{port}", {}, "identity"),
    ("http://localhost:{port}", {}, "identity"),
    ("http://127.0.0.1:{port}", {"Accept-Encoding": "gzip"}, "gzip"),  # the config's own header wins
])
def test_a_loopback_prometheus_is_asked_for_uncompressed_answers(url: str, headers: dict, sent: str) -> None:
    with FaultServer() as server:
        port = server.url.rsplit(":", 1)[1].split("/")[0]
        cfg = config.PrometheusConfig(url=url.format(port=port), headers=headers, timeout=5.0)

        async def main() -> None:
            c = PromClient(cfg)
            try:
                with pytest.raises(PromError):  # not a Prometheus: only the request is looked at
                    await c.query("up")
            finally:
                await c.aclose()

        asyncio.run(main())
        assert server.headers_seen and server.headers_seen[-1].get("accept-encoding") == sent


def test_loopback_hosts() -> None:
    from modeldeck.core.promql import _loopback

    assert _loopback("http://127.0.0.1:9090") and _loopback("http://[::1]:9090/prom") and _loopback("http://localhost")
    assert not _loopback("https://prometheus.example:9090") and not _loopback("http://10.0.0.5:9090")
    assert not _loopback("http://[bad")
