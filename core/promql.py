"""Prometheus as the metrics source: the HTTP API client, per-profile PromQL, fleet discovery.

Endpoints with ``metrics = "prometheus"`` get their request rate, error ratio, p50/p95/p99,
mean latency, ``up``, scrape age and served version(s) from the ``[prometheus]`` server (or
Thanos, Mimir, VictoriaMetrics: the same ``/api/v1/query``). :class:`PromFleet` asks **one
query per quantity for all endpoints of a profile together** (``sum by (labels) (...)``, the
labels being those the endpoints' selectors name plus the profile's model label), then hands
each endpoint the series its selector matches (an index on the equality matchers, so 5,000
endpoints cost one pass over the answer, not 5,000). What it makes of them is a
:class:`PromReading` per endpoint; ``core.poller`` turns readings into the same
:class:`~modeldeck.core.snapshot.EndpointSnapshot` values direct scraping makes.

Rules worth knowing:

- rates are Prometheus' ``rate()`` over ``[prometheus] window``; the error ratio is errors /
  requests of the same window; mean latency is Σsum / Σcount; a quantile is
  ``histogram_quantile`` over the endpoint's buckets summed by ``le``: where an endpoint's
  selector spans several groups of the fleet query (its pods, or a regex matcher, while other
  endpoints' selectors name more labels), its quantiles come from extra queries grouped by the
  labels its selector pins (:func:`merged_quantile_queries`, at most 3 more per 50 selector
  shapes), so p95 is the whole endpoint's, never its highest pod's (Triton's summary quantiles
  cannot be merged: there it is the highest series');
- served versions are the ``version`` (or ``model_version``) label values with requests in the
  window (idle, with exactly one version series: that one; else unknown); that query is a rate,
  and summed it is the request rate where a profile has no query of its own for it (MLServer and
  Triton: the successes, plus the failures of an ``errors`` query that answers only where some
  happened, 0 elsewhere);
- ``up`` is the worst of the endpoint's scrape targets when its selector matches any; the scrape
  age is the newest sample's;
- a query that fails (unreachable, slow, 4xx/5xx, an error JSON, too large) becomes the reason of
  every endpoint it concerns (``prometheus: query timed out after 2.0 s``); warnings in an
  answer (a partial result) are noted on the endpoints of that profile.

Discovery (``[[discover]]``): one ``group by (...)`` query per block over the profile's request
families turns label sets into endpoints (:func:`discovered_endpoints`).

Header values (``${VAR}`` expanded) go only into requests: never into messages or logs. Every
answer has a time bound (``timeout``, also passed to Prometheus) and a size bound
(``max_bytes``, enforced while streaming).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import json
import logging
import math
import operator
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from modeldeck.core.errors import ModeldeckError
from modeldeck.core.frozen import quick_init
from modeldeck.core.metrics import ERRORS_UNREPORTED
from modeldeck.core.textfmt import duration, one_line

if TYPE_CHECKING:  # httpx loads only when a client is made (config parsing imports this module)
    import httpx

    from modeldeck.core.config import DiscoverConfig, EndpointConfig, PrometheusConfig, Settings

log = logging.getLogger("modeldeck.promql")

MESSAGE_LIMIT = 140
SOURCE_LABEL = "modeldeck_source"  # set by label_replace where a profile reads two kinds of series
MODEL_LABELS = {"mlserver": "model", "demo": "model", "triton": "model", "torchserve": "model_name",
                "bentoml": None, "kserve": "model_name"}
VERSION_LABELS = ("version", "model_version")
NO_VERSION = ("", "None", "none", "null")
QUANTITIES = ("requests", "errors", "lat_sum", "lat_count", "p50", "p95", "p99", "versions", "up", "age")
QUANTILES = ("p50", "p95", "p99")
# profiles whose "versions" query counts successes only, and whose "errors" query answers only
# where failures happened: their request rate is the two added, with 0 failures where "errors" has
# no series (the failure series may not exist yet). A profile without a "requests" query takes its
# request rate from "versions" summed, and without a "lat_count" its mean's count too.
SUCCESS_COUNTERS = frozenset({"mlserver", "demo", "triton"})
# profiles whose quantiles come from histograms, whose buckets add up across series (Triton's are
# summary quantiles, which do not: an endpoint spanning several of its series gets the highest)
MERGED_QUANTILES = ("mlserver", "demo", "bentoml", "kserve")
GROUP_LABEL = "modeldeck_group"  # set by label_replace on the merged-quantile queries
GROUPS_PER_QUERY = 50
PREFETCH_FOR = 10.0  # seconds a prefetched answer waits for its refresh (PromFleet.prefetch)


# ---------------------------------------------------------------------------------------------
# selectors


class SelectorError(ValueError):
    """A selector that is not a list of PromQL label matchers."""


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)


@quick_init  # two made per endpoint found by discovery
@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = _regex(self.value).fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def text(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


_REGEXES: dict[str, re.Pattern[str]] = {}


def _regex(value: str) -> re.Pattern[str]:
    r = _REGEXES.get(value)
    if r is None:
        if len(_REGEXES) > 4096:
            _REGEXES.clear()
        r = _REGEXES[value] = re.compile(value, re.S)
    return r


@functools.lru_cache(maxsize=1 << 16)
def quote(value: str) -> str:
    """A PromQL string literal."""
    return json.dumps(value, ensure_ascii=False)


# selectors made here from their matchers (discovery makes 5,000 at once): not parsed again
_MADE: dict[str, tuple[Matcher, ...]] = {}


def parse_selector(text: str) -> tuple[Matcher, ...]:
    """``'{namespace="prod", service=~"churn|fraud"}'`` (braces optional) -> matchers (cached:
    every refresh asks again for every endpoint)."""
    made = _MADE.get(text)
    return made if made is not None else _parse_selector(text)


@functools.lru_cache(maxsize=1 << 16)
def _parse_selector(text: str) -> tuple[Matcher, ...]:
    s = text.strip()
    if s.startswith("{"):
        if not s.endswith("}"):
            raise SelectorError("a selector that opens with '{' must close with '}'")
        s = s[1:-1].strip()
    out: list[Matcher] = []
    pos = 0
    while pos < len(s):
        m = _MATCHER.match(s, pos)
        if m is None:
            raise SelectorError(f"not a label matcher at {one_line(s[pos:pos + 30], 40)!r} "
                                '(want name="value", name!="value", name=~"regex" or name!~"regex")')
        name, op, raw = m.group(1), m.group(2), m.group(3)
        if name == "__name__":
            raise SelectorError("a selector picks series by labels; the metric names come from the profile")
        try:
            value = json.loads(f'"{raw}"') if "\\" in raw else raw
        except ValueError:
            raise SelectorError(f"bad escape in the value of {name}") from None
        if op in ("=~", "!~"):
            try:
                _regex(value)
            except re.error as e:
                raise SelectorError(f"the regex of {name} is invalid: {e}") from None
        out.append(Matcher(name, op, value))
        pos = m.end()
    return tuple(out)


def selector_text(matchers: Sequence[Matcher]) -> str:
    return "{" + ", ".join(m.text() for m in matchers) + "}" if matchers else ""


def made_selector(matchers: Sequence[Matcher]) -> str:
    """:func:`selector_text`, remembered so that :func:`parse_selector` gives these matchers
    back without parsing the text (kept for 65,536 selectors)."""
    text = selector_text(matchers)
    if any(m.name == "__name__" for m in matchers):
        return text  # not a selector parse_selector accepts: it says so when asked
    if len(_MADE) >= 1 << 16:
        _MADE.clear()
    _MADE[text] = tuple(matchers)
    return text


def _regex_escape(value: str) -> str:
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


# ---------------------------------------------------------------------------------------------
# per-profile PromQL


class _Q:
    """Builds one profile's queries for a set of endpoints: ``sel(names, *extra)`` is a vector
    selector with the endpoints' common matchers, ``by`` their grouping labels."""

    def __init__(self, window: str, common: Sequence[str], model_common: Sequence[str], by: Sequence[str],
                 model_label: str | None = None) -> None:
        self.model_label = model_label
        self.w = window
        self.common = list(common)
        self.model_common = list(model_common)
        self.by_list = list(by)
        self.by = f"by ({', '.join(by)})"

    def sel(self, names: str, *extra: str, model: bool = True) -> str:
        ms = [f"__name__=~{quote(names)}", *self.common, *(self.model_common if model else ()), *extra]
        return "{" + ", ".join(ms) + "}"

    def by_plus(self, *more: str) -> str:
        return f"by ({', '.join([*self.by_list, *more])})"

    def rate(self, sel: str) -> str:
        return f"sum {self.by} (rate({sel}[{self.w}]))"

    def guarded(self, bad: str, ok: str) -> str:
        """Failures, or 0 where the failure series does not exist yet (MLServer creates it at
        the first failure)."""
        return f"({self.rate(bad)} or {self.rate(ok)} * 0)"

    def hq(self, q: float, bucket_sel: str, scale: str = "") -> str:
        return f"histogram_quantile({q}, sum {self.by_plus('le')} (rate({bucket_sel}[{self.w}]))){scale}"

    def versions(self, ok: str) -> str:
        """The request rate per version label value: the served versions, and (summed) the
        endpoint's request rate where the profile has no ``requests`` query of its own."""
        return f"sum {self.by_plus(*VERSION_LABELS)} (rate({ok}[{self.w}]))"

    def failures(self, bad: str) -> str:
        """Failures where any happened in the window: where none did, or the failure series does
        not exist yet (MLServer creates it at the first failure), the reading counts 0 for an
        endpoint with requests (the guard ``or rate(ok) * 0``, applied to the answer; healthy
        endpoints cost nothing to send)."""
        return f"{self.rate(bad)} > 0"

    def age(self, ok: str) -> str:
        up = "{" + ", ".join(["__name__=\"up\"", *self.common]) + "}"
        # the scrape's age where the endpoint has no request series yet; ``up`` has no model
        # label, so ``or`` matches on the other labels (else every endpoint came back twice)
        on = ", ".join(b for b in self.by_list if b != self.model_label)
        return (f"(time() - max {self.by} (timestamp({ok}))) or on({on}) "
                f"(time() - max {self.by} (timestamp({up})))")

    def up(self) -> str:
        return "min " + self.by + " ({" + ", ".join(["__name__=\"up\"", *self.common]) + "})"


def _tag(expr: str, source: str) -> str:
    return f'label_replace({expr}, "{SOURCE_LABEL}", "{source}", "", "")'


QS = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
_INFER_ROUTE = 'path=~"/v2/models/[^/]+(/versions/[^/]+)?/infer/?"'
_BENTO_NOT_HEALTH = 'endpoint!~"/(healthz|livez|readyz|metrics|docs|docs.json|ping|v2/health/.*)"'


def _mlserver(q: _Q) -> dict[str, str]:
    ok = q.sel("model_infer_request_success(_total)?")
    bad = q.sel("model_infer_request_failure(_total)?")
    route = q.sel("rest_server_request_duration_seconds_bucket", _INFER_ROUTE, model=False)
    out = {"versions": q.versions(ok), "errors": q.failures(bad),  # requests = successes + failures
           "lat_sum": q.rate(q.sel("model_infer_request_duration_sum")),
           "lat_count": q.rate(q.sel("model_infer_request_duration_count")),
           "up": q.up(), "age": q.age(ok)}
    out.update({k: q.hq(v, route) for k, v in QS})
    return out


def _triton(q: _Q) -> dict[str, str]:
    ok = q.sel("nv_inference_request_success")
    bad = q.sel("nv_inference_request_failure")
    # requests = successes (per version) + failures; the duration counter's count is the successes
    out = {"versions": q.versions(ok), "errors": q.failures(bad),
           "lat_sum": f"{q.rate(q.sel('nv_inference_request_duration_us'))} / 1e6",
           "up": q.up(), "age": q.age(ok)}
    # Triton's counters have no _total; its quantiles exist only with --metrics-config
    # summary_latencies=true, as the nv_inference_request_summary_us summary (microseconds).
    for k, v in QS:
        out[k] = f"max {q.by} ({q.sel('nv_inference_request_summary_us', f'quantile={quote(str(v))}')}) / 1e6"
    return out


def _torchserve(q: _Q) -> dict[str, str]:
    req = q.sel("ts_inference_requests(_total)?")
    e5 = q.sel("Requests5XX(_total)?", model=False)
    ok2 = q.sel("Requests2XX(_total)?", model=False)
    # requests (and the latency counter's count) = the requests per version, summed
    return {"versions": q.versions(req), "errors": q.guarded(e5, ok2),
            "lat_sum": f"{q.rate(q.sel('ts_inference_latency_microseconds(_total)?'))} / 1e6",
            "up": q.up(), "age": q.age(req)}


def _bentoml(q: _Q) -> dict[str, str]:
    req = q.sel("bentoml_service_request(_total)?", _BENTO_NOT_HEALTH, model=False)
    bad = q.sel("bentoml_service_request(_total)?", _BENTO_NOT_HEALTH, 'http_response_code=~"5.."', model=False)
    bucket = q.sel("bentoml_service_request_duration_seconds_bucket", _BENTO_NOT_HEALTH, model=False)
    out = {"requests": q.rate(req), "errors": q.guarded(bad, req),
           "lat_sum": q.rate(q.sel("bentoml_service_request_duration_seconds_sum", _BENTO_NOT_HEALTH, model=False)),
           "lat_count": q.rate(q.sel("bentoml_service_request_duration_seconds_count", _BENTO_NOT_HEALTH,
                                     model=False)),
           "up": q.up(), "age": q.age(req)}
    out.update({k: q.hq(v, bucket) for k, v in QS})
    return out


def _kserve(q: _Q) -> dict[str, str]:
    # Knative's queue-proxy (milliseconds, response_code_class) where it runs; else KServe's own
    # request_predict_seconds histogram (model_name; no failure counter: errors not reported).
    qp = q.sel("revision_app_request_count(_total)?", model=False)
    qp5 = q.sel("revision_app_request_count(_total)?", 'response_code_class="5xx"', model=False)
    ks = q.sel("request_predict_seconds_count")
    qpb = q.sel("revision_app_request_latencies_bucket", model=False)
    ksb = q.sel("request_predict_seconds_bucket")
    qp_, ks_ = "queue-proxy", "kserve"
    out = {"requests": f"{_tag(q.rate(qp), qp_)} or {_tag(q.rate(ks), ks_)}",
           "errors": _tag(q.guarded(qp5, qp), qp_),
           "lat_sum": f"{_tag(q.rate(q.sel('revision_app_request_latencies_sum', model=False)) + ' / 1000', qp_)} or "
                      f"{_tag(q.rate(q.sel('request_predict_seconds_sum')), ks_)}",
           "lat_count": f"{_tag(q.rate(q.sel('revision_app_request_latencies_count', model=False)), qp_)} or "
                        f"{_tag(q.rate(ks), ks_)}",
           "up": q.up(), "age": f"{q.age(qp)} or {q.age(ks)}"}
    for k, v in QS:
        out[k] = f"{_tag(q.hq(v, qpb, ' / 1000'), qp_)} or {_tag(q.hq(v, ksb), ks_)}"
    return out


PROMQL: dict[str, Callable[[_Q], dict[str, str]]] = {
    "mlserver": _mlserver, "demo": _mlserver, "triton": _triton, "torchserve": _torchserve,
    "bentoml": _bentoml, "kserve": _kserve}

# The families whose series make an endpoint for [[discover]] (an endpoint exists once it is scraped).
DISCOVER_NAMES = {
    "mlserver": "model_infer_request_(success|failure)(_total)?|model_infer_request_duration_count",
    "triton": "nv_inference_request_success|nv_inference_count",
    "torchserve": "ts_inference_requests(_total)?",
    "bentoml": "bentoml_service_request(_total)?",
    "kserve": "request_predict_seconds_count|revision_app_request_count(_total)?",
}
DISCOVER_NAMES["demo"] = DISCOVER_NAMES["mlserver"]
# an endpoint without metrics_profile is the first of these whose request families it has
DETECT_ORDER = ("kserve", "triton", "mlserver", "torchserve", "bentoml")


def profile_queries(profile: str, window: str, selectors: Sequence[Sequence[Matcher]],
                    served_models: Sequence[str] = (), group_by: Sequence[str] | None = None,
                    ) -> tuple[dict[str, str], tuple[str, ...]]:
    """The queries of ``profile`` for endpoints with these selectors, and the labels they group by
    (every label a selector names, unless ``group_by`` says which; the profile's model label is
    added). Matchers every selector shares go into the queries as they are; equality matchers on
    a label every selector names become one ``=~"a|b"`` (up to 200 values); the rest is matched
    here."""
    model_label = MODEL_LABELS.get(profile)
    common, by = common_matchers(selectors, model_label)
    if group_by is not None:
        by = list(group_by)
    model_common: list[str] = []
    if model_label and model_label not in by:
        by.append(model_label)
    if model_label and served_models and 0 < len(set(served_models)) <= 200:
        values = sorted(set(served_models))
        model_common.append(f"{model_label}={quote(values[0])}" if len(values) == 1 else
                            f"{model_label}=~{quote('|'.join(_regex_escape(v) for v in values))}")
    q = _Q(window, common, model_common, by, model_label)
    return PROMQL[profile](q), tuple(by)


def pinned_labels(selectors: Sequence[Sequence[Matcher]]) -> frozenset[str]:
    """The labels every selector pins to the same value with its only matcher on that label:
    the queries keep them as matchers but do not group by them (an answer's series would all
    carry the same value: at 5,000 endpoints, a third of what is decoded and indexed)."""
    if not selectors:
        return frozenset()
    out = set()
    for m in selectors[0]:
        if m.op == "=" and all(sum(1 for x in sel if x.name == m.name) == 1 and m in sel for sel in selectors):
            out.add(m.name)
    return frozenset(out)


def common_matchers(selectors: Sequence[Sequence[Matcher]], model_label: str | None = None,
                    ) -> tuple[list[str], list[str]]:
    """The matchers every query of these selectors carries, and the labels it groups by (those
    the selectors name, but for the :func:`pinned_labels`). Matchers on ``model_label`` are left
    to the model's own families (``up`` and server-wide series carry no model label)."""
    pinned = pinned_labels(selectors)
    names: list[str] = []
    for sel in selectors:
        for m in sel:
            if m.name not in names and m.name not in pinned:
                names.append(m.name)
    common: list[str] = []
    if selectors:
        shared = set(selectors[0])
        for sel in selectors[1:]:
            shared &= set(sel)
        common = [m.text() for m in selectors[0] if m in shared and m.name != model_label]
        for name in names:
            if name == model_label or any(m.name == name and m in shared for m in selectors[0]):
                continue
            values = set()
            for sel in selectors:
                eq = [m.value for m in sel if m.name == name and m.op == "="]
                if not eq:
                    values = set()
                    break
                values.add(eq[0])
            if 1 < len(values) <= 200:
                common.append(f"{name}=~{quote('|'.join(_regex_escape(v) for v in sorted(values)))}")
    return common, names


# ---------------------------------------------------------------------------------------------
# the HTTP API client


class PromError(ModeldeckError):
    """A query that failed; the message is one line starting with ``prometheus:``."""


class _Sample(msgspec.Struct, array_like=True, gc=False):
    """A series' ``[time, "value"]``: the value read leniently from its string ("0.25", "NaN",
    "-Inf"; "+Inf" is rewritten to "Inf" first, see :func:`_decode`)."""

    at: float
    value: float


class Series(msgspec.Struct, gc=False, rename={"labels": "metric", "sample": "value"}):
    """One series of an instant vector, decoded by msgspec straight from the answer's JSON (an
    answer holds tens of thousands: no Python call per series, none tracked by the collector;
    3x faster than orjson.loads and a pass making tuples of its dicts)."""

    labels: dict[str, str]
    sample: _Sample

    @property
    def value(self) -> float:
        return self.sample.value


_labels_of, _second = operator.attrgetter("labels"), operator.itemgetter(1)


class _Answer(msgspec.Struct):
    status: Any = None
    data: msgspec.Raw = msgspec.Raw()
    warnings: Any = None
    error: Any = None
    errorType: Any = None


class _Data(msgspec.Struct):
    resultType: Any = None
    result: msgspec.Raw = msgspec.Raw()


_ANSWER = msgspec.json.Decoder(_Answer)
_DATA = msgspec.json.Decoder(_Data)
_VECTOR = msgspec.json.Decoder(list[Series], strict=False)


@dataclass(frozen=True)
class QueryResult:
    series: list[Series]
    warnings: tuple[str, ...] = ()


def _seconds(t: float) -> str:
    return f"{t:.1f} s" if t < 10 else duration(t)


class PromClient:
    """The Prometheus HTTP API (``POST {url}/api/v1/query``) over one ``httpx.AsyncClient``.
    Belongs to the event loop that first uses it."""

    def __init__(self, cfg: PrometheusConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._header_error: str | None = None
        self.queries = 0  # queries sent (benchmarks, tests)

    def _ensure(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            try:
                headers = self.cfg.resolved_headers()  # names a missing variable, never a value
                self._header_error = None
            except ModeldeckError as e:
                self._header_error = one_line(f"prometheus: {e}", MESSAGE_LIMIT)
                headers = {}
            if not any(k.lower() == "accept-encoding" for k in headers) and _loopback(self.cfg.url):
                # on this machine compression only costs: Prometheus spent 50-100 ms gzipping each
                # 240 kB fleet answer (half a query's time) and the client unzipping it
                headers = {**headers, "Accept-Encoding": "identity"}
            # every query of a refresh at once (about 10 per profile): none waits for a connection
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            transport = self._transport
            from modeldeck.core.http11 import LazyFallback, PlainHTTP1Transport, env_proxied, ssl_context

            if transport is None and not env_proxied(self.cfg.url):
                # the lean keep-alive transport for plain http (https goes to httpx's own, made when
                # first needed: its TLS context costs 50 ms that a plain-http report need not pay);
                # with an HTTP_PROXY that applies, httpx's own transport and its proxy handling
                transport = PlainHTTP1Transport(
                    LazyFallback(lambda: httpx.AsyncHTTPTransport(limits=limits, verify=ssl_context())), max_idle=64)
            self._client = httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout, limits=limits,
                                             transport=transport, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def query(self, expr: str, *, at: float | None = None) -> QueryResult:
        """An instant query; raises :class:`PromError` (one line) on any failure."""
        timeout = self.cfg.timeout
        try:
            return await asyncio.wait_for(self._query(expr, at), timeout)
        except asyncio.TimeoutError:
            raise PromError(f"prometheus: query timed out after {_seconds(timeout)}") from None

    async def _query(self, expr: str, at: float | None) -> QueryResult:
        import httpx

        from modeldeck.core.http11 import describe_error

        client = self._ensure()
        if self._header_error is not None:
            self._client = None  # the variable may be set by the next try
            await client.aclose()
            raise PromError(self._header_error)
        form = {"query": expr, "timeout": f"{self.cfg.timeout:g}s"}
        if at is not None:
            form["time"] = f"{at:.3f}"
        self.queries += 1
        limit = self.cfg.max_bytes
        try:
            async with client.stream("POST", self.cfg.url + "/api/v1/query", data=form) as r:
                chunks: list[bytes] = []
                n = 0
                async for chunk in r.aiter_bytes():
                    n += len(chunk)
                    if n > limit:
                        raise PromError(f"prometheus: answer larger than {_size(limit)}")
                    chunks.append(chunk)
                status, ctype = r.status_code, r.headers.get("content-type", "")
        except PromError:
            raise
        except httpx.HTTPError as e:
            where = one_line(httpx.URL(self.cfg.url).netloc.decode("ascii", "replace"), 60)
            raise PromError(f"prometheus: {where}: {describe_error(e)}") from None
        return _decode(b"".join(chunks), status, ctype)


def _loopback(url: str) -> bool:
    """The URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress
    import urllib.parse

    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _size(n: int) -> str:
    from modeldeck.core.textfmt import size

    return size(n)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a stretch that allocates many objects and makes no
    cycles (an answer of 50,000 series; the readings of 5,000 endpoints): in a process that holds
    a fleet's snapshots, every collection those allocations trigger walks all of them too
    (measured at 5,000 endpoints: the collections cost 2-3x the work itself)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _decode(body: bytes, status: int, ctype: str) -> QueryResult:
    try:
        data = _ANSWER.decode(body)
    except msgspec.ValidationError:
        raise PromError(f"prometheus: the answer is not a JSON object (HTTP {status})") from None
    except msgspec.DecodeError:
        what = f"HTTP {status}" + (f", {one_line(ctype.split(';')[0], 40)}" if ctype else "")
        raise PromError(f"prometheus: the answer is not JSON ({what})") from None
    if data.status != "success":
        kind = one_line(data.errorType or "", 30)
        err = one_line(data.error or "no error message", 90)
        raise PromError(one_line(f"prometheus: HTTP {status}: {kind + ': ' if kind else ''}{err}", MESSAGE_LIMIT))
    if status != 200:
        raise PromError(f"prometheus: HTTP {status}")
    try:
        d = _DATA.decode(data.data) if data.data else None
    except msgspec.DecodeError:
        d = None
    if d is None or d.resultType not in ("vector", "scalar"):
        raise PromError("prometheus: the answer is not an instant vector")
    warnings = data.warnings if isinstance(data.warnings, list) else []
    notes = tuple(one_line(w, 100) for w in warnings if isinstance(w, str))[:5]
    if d.resultType == "scalar":
        return QueryResult([], notes)
    raw = bytes(d.result) if d.result else b"[]"
    if b'"+Inf"]' in raw:  # a value of +Inf (never a label: inside a JSON string '"' is escaped)
        raw = raw.replace(b',"+Inf"]', b',"Inf"]')
    try:
        with gc_paused():
            return QueryResult(_VECTOR.decode(raw), notes)
    except msgspec.DecodeError:
        raise PromError("prometheus: a series in the answer is malformed") from None


# ---------------------------------------------------------------------------------------------
# readings


@quick_init  # one made per endpoint per refresh
@dataclass(frozen=True)
class PromReading:
    """What Prometheus said about one endpoint at one refresh. ``None``: not known."""

    taken_at: float  # epoch seconds
    window: float  # seconds the rates cover
    error: str | None = None  # the refresh failed for this endpoint (a whole-query failure)
    problem: str | None = None  # some of its queries failed (values from the others stand)
    notes: tuple[str, ...] = ()  # warnings of a partial answer, errors not reported
    found: bool = False  # any series of the endpoint's profile matched
    up: bool | None = None  # every matched scrape target up (None: no up series matched)
    targets: int = 0  # scrape targets matched
    age: float | None = None  # seconds since the newest sample
    request_rate: float | None = None
    error_ratio: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    versions: tuple[str, ...] = ()
    profile: str | None = None  # the metrics profile detected (endpoints without metrics_profile)


class _Derive(NamedTuple):
    """What a reading computes from other answers where its profile has no query of its own."""

    requests: bool = False  # the request rate: the "versions" answer summed
    lat_count: bool = False  # the mean latency's count: the same sum
    failures: bool = False  # plus "errors" (SUCCESS_COUNTERS), 0 where it has no series


class _Router:
    """Hands each series of an answer to the endpoints whose selectors match it: one dict
    lookup per series, on the values of the labels the endpoints select with equality
    matchers (5,000 endpoints cost one pass over the answer, not 5,000)."""

    def __init__(self, plans: Sequence[_Plan]) -> None:
        self.plans = plans
        # per shape (the labels pinned), the plans by their values (one label: the bare value)
        self.shapes: dict[tuple[str, ...], dict[Any, list[int]]] = {}
        self.checks = [(p.model_label, p.served, p.rest) for p in plans]
        for i, p in enumerate(plans):
            key = p.values[0] if len(p.shape) == 1 else p.values
            self.shapes.setdefault(p.shape, {}).setdefault(key, []).append(i)

    def route(self, series: Sequence[Series]) -> dict[int, list[Series]]:
        out: dict[int, list[Series]] = {}
        checks = self.checks
        for shape, index in self.shapes.items():
            if not shape:
                every = index.get(())
                pairs: Iterable[tuple[Series, list[int] | None]] = \
                    zip(series, itertools.repeat(every)) if every else ()
            elif len(shape) == 1:  # the usual case: C-level maps to each series' plans
                keys = map(operator.methodcaller("get", shape[0], ""), map(_labels_of, series))
                pairs = filter(_second, zip(series, map(index.get, keys)))
            else:
                keys = [tuple([labels.get(n, "") for n in shape]) for labels in map(_labels_of, series)]
                pairs = filter(_second, zip(series, map(index.get, keys)))
            for s, hits in pairs:
                labels = s.labels
                for i in hits:  # type: ignore[union-attr]
                    model_label, served, rest = checks[i]
                    if model_label is not None:
                        m = labels.get(model_label)
                        if m and m != served:
                            continue
                    if rest and not all(x.matches(labels) for x in rest):
                        continue
                    got = out.get(i)
                    if got is None:
                        out[i] = [s]
                    else:
                        got.append(s)
        return out


@dataclass
class _Plan:
    cfg: EndpointConfig
    shape: tuple[str, ...]
    values: tuple[str, ...]
    rest: tuple[Matcher, ...]
    model_label: str | None
    served: str
    merged: tuple[str, int] | None = None  # its quantiles: (the merged-quantile chunk's key suffix, its group)



def _plan(cfg: EndpointConfig, profile: str, pinned: frozenset[str] = frozenset()) -> _Plan:
    """How one endpoint picks its series from a fleet answer: the values of the labels its
    selector pins with ``=`` (the index key), its other matchers, and its model. ``pinned``: the
    labels every endpoint of the query pins alike (not grouped by: no answer carries them). The
    profile's model label is matched leniently: a series without it (``up``, MLServer's
    server-wide latency histogram) is the endpoint's too, one naming another model is not."""
    matchers = parse_selector(cfg.selector) if cfg.selector else ()
    eq = sorted((m.name, m.value) for m in matchers if m.op == "=")
    names = tuple(n for n, _ in eq)
    if len(set(names)) != len(names):  # the same label twice with "=": keep the rest generic
        eq, names = [], ()
    rest = tuple(m for m in matchers if not (m.op == "=" and m.name in names))
    model_label = MODEL_LABELS.get(profile)
    served = cfg.served_model or cfg.model
    if model_label is not None and model_label in names:
        served = dict(eq)[model_label]  # the selector names the model its series carry
    key = [(n, v) for n, v in eq if n != model_label and n not in pinned]
    return _Plan(cfg, tuple(n for n, _ in key), tuple(v for _, v in key), rest, model_label, served)


def _preferred(series: list[Series]) -> list[Series]:
    """Where a profile reads two kinds of series (kserve: queue-proxy, else the model server),
    only the first kind present."""
    if len(series) < 2 or SOURCE_LABEL not in series[0].labels:
        return series
    first = series[0].labels.get(SOURCE_LABEL)
    if all(s.labels.get(SOURCE_LABEL) == first for s in series):
        return series
    best = "queue-proxy" if any(s.labels.get(SOURCE_LABEL) == "queue-proxy" for s in series) else first
    return [s for s in series if s.labels.get(SOURCE_LABEL) == best]


def _finite(x: float) -> float | None:
    return x if -math.inf < x < math.inf else None  # NaN compares false


_NONE: list[Series] = []


def _sum(series: list[Series]) -> float | None:
    if len(series) == 1:  # (.sample.value, not the property: 50,000 calls a refresh at 5,000 endpoints)
        v = series[0].sample.value
        return v if -math.inf < v < math.inf else None
    vals = [v for s in _preferred(series) if (v := _finite(s.value)) is not None]
    return sum(vals) if vals else None


def _max(series: list[Series]) -> float | None:
    if len(series) == 1:
        v = series[0].sample.value
        return v if -math.inf < v < math.inf else None
    vals = [v for s in _preferred(series) if (v := _finite(s.value)) is not None]
    return max(vals) if vals else None


def _versions(series: list[Series]) -> tuple[str, ...]:
    if len(series) == 1:  # one version series (the usual case)
        s = series[0]
        v = next((s.labels[k] for k in VERSION_LABELS if s.labels.get(k) not in (None, *NO_VERSION)), None)
        return (v if len(v) <= 40 and v.isprintable() else one_line(v, 40),) if v is not None else ()
    active: set[str] = set()
    every: set[str] = set()
    for s in series:
        v = next((s.labels[k] for k in VERSION_LABELS if s.labels.get(k) not in (None, *NO_VERSION)), None)
        if v is None:
            continue
        every.add(v)
        if s.value > 0 and not math.isnan(s.value):
            active.add(v)
    if active:
        return tuple(sorted(one_line(v, 40) for v in active))
    return (one_line(next(iter(every)), 40),) if len(every) == 1 else ()


_NO_QUANTILES: dict[str, list[Series]] = {k: _NONE for k in QUANTILES}


def merged_quantile_queries(profile: str, window: str, plans: Sequence[_Plan],
                            selectors: Sequence[Sequence[Matcher]], by: Sequence[str]) -> dict[str, str]:
    """The quantile queries (``p95@0``, ...) for the endpoints whose selector spans several
    groups of the fleet query (``by`` names labels it does not pin with ``=``): per selector
    shape (the labels pinned, the other matchers), the buckets summed by those labels and
    ``le`` only, each shape's answer tagged with GROUP_LABEL; GROUPS_PER_QUERY shapes a query.
    Marks those plans (``merged``); the others' quantiles stay the fleet query's."""
    model_label = MODEL_LABELS.get(profile)
    grouped = [b for b in by if b != model_label]
    shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
    for i, p in enumerate(plans):
        p.merged = None
        if set(grouped) <= set(p.shape):
            continue
        shapes.setdefault((p.shape, tuple(sorted(m.text() for m in p.rest))), []).append(i)
    out: dict[str, str] = {}
    parts: dict[str, list[str]] = {k: [] for k in QUANTILES}
    chunk = 0
    for g, ((shape, _rest), members) in enumerate(shapes.items()):
        if g and g % GROUPS_PER_QUERY == 0:
            out.update({f"{k}@{chunk}": " or ".join(v) for k, v in parts.items()})
            parts, chunk = {k: [] for k in QUANTILES}, chunk + 1
        sels = [selectors[i] for i in members]
        served = [plans[i].served for i in members] if model_label else []
        qs, _ = profile_queries(profile, window, sels, served, group_by=shape)
        for k in QUANTILES:
            parts[k].append(f'label_replace(({qs[k]}), "{GROUP_LABEL}", "{g}", "", "")')
        for i in members:
            plans[i].merged = (str(chunk), g)
    if shapes:
        out.update({f"{k}@{chunk}": " or ".join(v) for k, v in parts.items()})
    return out


def _route_merged(plans: Sequence[_Plan], results: Mapping[str, QueryResult]) -> dict[int, dict[str, list[Series]]]:
    """The merged-quantile answers, to the plans they are for: plan index -> quantity -> series."""
    members: dict[int, list[int]] = {}
    for i, p in enumerate(plans):
        if p.merged is not None:
            members.setdefault(p.merged[1], []).append(i)
    by_group: dict[str, dict[str, list[Series]]] = {}  # group -> quantity -> series
    for key, r in results.items():
        k, _, _chunk = key.partition("@")
        if not _chunk:
            continue
        for s in r.series:
            by_group.setdefault(s.labels.get(GROUP_LABEL, ""), {}).setdefault(k, []).append(s)
    out: dict[int, dict[str, list[Series]]] = {}
    for g, idx in members.items():
        answers = by_group.get(str(g))
        if not answers:
            continue
        # the shape's other matchers are in its query already (its series have lost those labels)
        router = _Router([replace(plans[i], rest=()) for i in idx])
        for k, series in answers.items():
            for j, got in router.route(series).items():
                out.setdefault(idx[j], {})[k] = got
    return out


class PromFleet:
    """Reads every Prometheus-backed endpoint with one query per quantity per profile.
    Belongs to one event loop (its client's)."""

    def __init__(self, cfg: PrometheusConfig, *, client: PromClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.client = client or PromClient(cfg)
        self.clock = clock
        self.last_refresh_ms: float | None = None
        self._planned: dict[str, tuple[tuple[tuple[str, str, str], ...], dict[str, str], list[_Plan]]] = {}
        self._routers: dict[str, _Router] = {}
        self._discovered: dict[str, dict[tuple[tuple[str, str], ...], EndpointConfig | None]] = {}
        # per block: the block, the label sets its last answer held and the endpoints they made
        self._last_found: dict[str, tuple[DiscoverConfig, list[dict[str, str]], list[EndpointConfig]]] = {}
        self._detected: dict[str, tuple[str, str | None, float]] = {}  # name -> (selector, profile, when)
        # awaited before routing each answer and between chunks of 250 endpoints: a caller's
        # chance to let more urgent work in its process run first (Poller.breathe)
        self.breathe: Callable[[], Awaitable[None]] | None = None
        # profile -> (plans, taken_at, sent at (monotonic), the answers' task): see prefetch()
        self._prefetched: dict[str, tuple[list[_Plan], float, float, asyncio.Future[list[Any]]]] = {}

    async def aclose(self) -> None:
        for pre in self._prefetched.values():
            pre[3].cancel()
        self._prefetched.clear()
        await self.client.aclose()

    def prefetch(self, profile: str, cfgs: Sequence[EndpointConfig]) -> None:
        """Send ``profile``'s queries for ``cfgs`` now, for a refresh of exactly these endpoints
        that follows within PREFETCH_FOR seconds. The poller's first refresh does this for each
        profile as soon as its discovery blocks are done, so Prometheus evaluates one profile's
        queries while the poller still makes the endpoints of the next. A refresh of any other
        set of endpoints asks again (the answers are used once, and only for the same plans)."""
        profile = profile.lower()
        old = self._prefetched.pop(profile, None)
        if old is not None:
            old[3].cancel()
        if profile not in PROMQL or not cfgs:
            return
        queries, plans = self.queries_for(profile, cfgs)
        taken_at = self.clock()
        task = asyncio.ensure_future(self._ask(queries, taken_at))
        self._prefetched[profile] = (plans, taken_at, time.monotonic(), task)

    async def _ask(self, queries: Mapping[str, str], taken_at: float) -> list[Any]:
        """Every query at once; each answer or its exception, in the order of ``queries``."""
        return await asyncio.gather(*(self.client.query(q, at=taken_at) for q in queries.values()),
                                    return_exceptions=True)

    async def refresh(self, endpoints: Iterable[EndpointConfig]) -> dict[str, PromReading]:
        """A reading per endpoint name (every endpoint given gets one, failures included)."""
        t0 = time.perf_counter()
        groups: dict[str, list[EndpointConfig]] = {}
        undeclared: list[EndpointConfig] = []
        for cfg in endpoints:
            if cfg.metrics_profile:
                groups.setdefault(cfg.metrics_profile.lower(), []).append(cfg)
            else:
                undeclared.append(cfg)
        out: dict[str, PromReading] = {}
        if undeclared:  # no metrics_profile: detected from the families Prometheus has for them
            out.update(await self._detect(undeclared))
            for cfg in undeclared:
                if cfg.name not in out:
                    groups.setdefault(self._detected[cfg.name][1] or "", []).append(cfg)
        results = await asyncio.gather(*(self._refresh_profile(p, cfgs) for p, cfgs in groups.items()))
        for r in results:
            out.update(r)
        for cfg in undeclared:
            r = out.get(cfg.name)
            if r is not None and r.error is None:
                out[cfg.name] = replace(r, profile=self._detected[cfg.name][1])
        self.last_refresh_ms = (time.perf_counter() - t0) * 1000.0
        return out

    async def _detect(self, cfgs: Sequence[EndpointConfig]) -> dict[str, PromReading]:
        """Detect the profile of endpoints without ``metrics_profile`` (one query for all, the
        first refresh, again every ``discover_interval`` for those not found); the readings of
        those that cannot be read (the query failed, no known families match)."""
        now = time.monotonic()
        todo = [c for c in cfgs if (d := self._detected.get(c.name)) is None or d[0] != c.selector
                or (d[1] is None and now - d[2] >= self.cfg.discover_interval)]
        out: dict[str, PromReading] = {}
        taken_at = self.clock()
        if todo:
            selectors = [parse_selector(c.selector) if c.selector else () for c in todo]
            common, by = common_matchers(selectors)
            names = "|".join(f"(?:{DISCOVER_NAMES[p]})" for p in DETECT_ORDER)
            expr = (f"count by (__name__{''.join(', ' + b for b in by)}) "
                    f"({{{', '.join([f'__name__=~{quote(names)}', *common])}}})")
            try:
                result = await self.client.query(expr, at=taken_at)
            except PromError as e:
                return {c.name: PromReading(taken_at, self.cfg.window_seconds, error=str(e)) for c in todo}
            pinned = pinned_labels(selectors)
            plans = [_plan(c, "", pinned) for c in todo]
            routed = _Router(plans).route(result.series)
            for i, c in enumerate(todo):
                present = {s.labels.get("__name__", "") for s in routed.get(i, _NONE)}
                found = next((p for p in DETECT_ORDER if any(_regex(DISCOVER_NAMES[p]).fullmatch(n)
                                                               for n in present)), None)
                self._detected[c.name] = (c.selector, found, now)
        for c in cfgs:
            if self._detected[c.name][1] is None:
                sel = c.selector or "{}"
                out[c.name] = PromReading(taken_at, self.cfg.window_seconds, error=one_line(
                    f"prometheus: no series of {', '.join(DETECT_ORDER)} match {sel}: set metrics_profile",
                    MESSAGE_LIMIT + 60))
        return out

    def queries_for(self, profile: str, cfgs: Sequence[EndpointConfig]) -> tuple[dict[str, str], list[_Plan]]:
        """The profile's queries for these endpoints and how each endpoint picks its series;
        made again only when the set of endpoints (names, selectors, served models) changed."""
        key = tuple((c.name, c.selector, c.served_model or c.model) for c in cfgs)
        hit = self._planned.get(profile)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        selectors = [parse_selector(c.selector) if c.selector else () for c in cfgs]
        pinned = pinned_labels(selectors)
        plans = [_plan(c, profile, pinned) for c in cfgs]
        served = [p.served for p in plans] if MODEL_LABELS.get(profile) else []
        queries, by = profile_queries(profile, self.cfg.window, selectors, served)
        if profile in MERGED_QUANTILES:
            queries.update(merged_quantile_queries(profile, self.cfg.window, plans, selectors, by))
        self._planned[profile] = (key, queries, plans)
        return queries, plans

    async def _refresh_profile(self, profile: str, cfgs: list[EndpointConfig]) -> dict[str, PromReading]:
        taken_at = self.clock()
        window = self.cfg.window_seconds
        if profile not in PROMQL:
            err = f"prometheus: no PromQL for metrics profile {one_line(profile, 30)}"
            return {c.name: PromReading(taken_at, window, error=err) for c in cfgs}
        queries, plans = self.queries_for(profile, cfgs)
        keys = list(queries)
        pre = self._prefetched.pop(profile, None)
        if pre is not None and pre[0] is plans and time.monotonic() - pre[2] <= PREFETCH_FOR:
            taken_at = pre[1]
            answers = await pre[3]
        else:
            if pre is not None:
                pre[3].cancel()
            answers = await self._ask(queries, taken_at)
        results: dict[str, QueryResult] = {}
        failures: dict[str, str] = {}
        warnings: list[str] = []
        for k, a in zip(keys, answers):
            if isinstance(a, PromError):
                failures[k] = str(a)
            elif isinstance(a, BaseException):
                if isinstance(a, asyncio.CancelledError):
                    raise a
                log.warning("prometheus query %s failed: %s", k, one_line(a, 200))
                failures[k] = one_line(f"prometheus: {type(a).__name__}: {a}", MESSAGE_LIMIT)
            else:
                results[k] = a
                warnings += [w for w in a.warnings if w not in warnings]
        key = "requests" if "requests" in queries else "versions"  # the request rate's query
        if key in failures:
            err = failures[key]
            return {c.name: PromReading(taken_at, window, error=err) for c in cfgs}
        problem = None
        if failures:
            k, msg = next(iter(failures.items()))
            others = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            problem = one_line(msg.replace("prometheus: ", f"prometheus: {k} query: ", 1) + others, MESSAGE_LIMIT)
        elif warnings:  # a partial answer (a Thanos store down, a limit hit): the values may be incomplete
            problem = one_line("prometheus warning: " + "; ".join(warnings[:2]), MESSAGE_LIMIT)
        notes: list[str] = []
        unreported = ERRORS_UNREPORTED.get(profile)
        derive = _Derive("requests" not in queries, "lat_count" not in queries, profile in SUCCESS_COUNTERS)
        out: dict[str, PromReading] = {}
        breathe = self.breathe
        with gc_paused():
            router = self._routers.get(profile)
            if router is None or router.plans is not plans:
                router = self._routers[profile] = _Router(plans)
            routed = {}
            for k, r in results.items():
                if "@" not in k:
                    if breathe is not None:
                        await breathe()
                    routed[k] = router.route(r.series)
            merged = _route_merged(plans, results) if "p95@0" in queries else {}
            for i, plan in enumerate(plans):
                if breathe is not None and i % 250 == 249:
                    await breathe()
                got = {k: r.get(i, _NONE) for k, r in routed.items()}
                if plan.merged is not None:  # its quantiles over its buckets summed (failed: not known)
                    got.update(_NO_QUANTILES)
                    got.update(merged.get(i, _NO_QUANTILES))
                out[plan.cfg.name] = self._reading(plan, got, taken_at, window, problem, notes, unreported,
                                                   derive)
        return out

    @staticmethod
    def _reading(plan: _Plan, got: Mapping[str, list[Series]], taken_at: float, window: float,
                 problem: str | None, notes: list[str], unreported: str | None,
                 derive: _Derive = _Derive()) -> PromReading:
        req = got.get("versions" if derive.requests else "requests", _NONE)
        rate = ok = _sum(req)
        failed = got.get("errors")
        errors = None
        if failed:
            errors = _sum(failed)
        elif failed is not None and derive.failures and ok is not None:
            errors = 0.0  # no failures in the window (or no failure series yet)
        if derive.failures and errors is not None:
            rate = (ok or 0.0) + errors
        ratio = None
        extra = list(notes)
        if errors is None and rate is not None and unreported:
            extra.append(unreported)
        if errors is not None and rate:
            ratio = min(1.0, max(0.0, errors / rate))
        elif errors and not rate:
            ratio = 1.0 if errors > 0 else None
        p50, p95, p99 = _max(got.get("p50", _NONE)), _max(got.get("p95", _NONE)), _max(got.get("p99", _NONE))
        lat_sum = _sum(got.get("lat_sum", _NONE))
        lat_count = ok if derive.lat_count else _sum(got.get("lat_count", _NONE))
        mean = lat_sum / lat_count * 1000.0 if lat_sum is not None and lat_count else None
        ups = [v for s in got.get("up", _NONE) if (v := s.sample.value) == v]
        ages = [v for s in got.get("age", _NONE) if (v := _finite(s.sample.value)) is not None]
        return PromReading(
            taken_at=taken_at, window=window, problem=problem, notes=tuple(extra) if extra else (),
            found=bool(req) or bool(failed) or bool(got.get("age")), up=(min(ups) >= 1) if ups else None, targets=len(ups),
            age=max(0.0, min(ages)) if ages else None, request_rate=rate, error_ratio=ratio,
            p50_ms=None if p50 is None else p50 * 1000.0, p95_ms=None if p95 is None else p95 * 1000.0,
            p99_ms=None if p99 is None else p99 * 1000.0, mean_ms=mean,
            versions=_versions(got.get("versions", _NONE)))

    # -- discovery ------------------------------------------------------------------------------
    def discover_query(self, block: DiscoverConfig) -> str:
        labels = list(block.group_by)
        for extra in (block.model_label, block.environment_label, served_label(block)):
            if extra and extra not in labels:
                labels.append(extra)
        ms = [f"__name__=~{quote(DISCOVER_NAMES[block.profile])}",
              *(m.text() for m in (parse_selector(block.selector) if block.selector else ()))]
        return f"group by ({', '.join(labels)}) ({{{', '.join(ms)}}})"

    async def discover(self, block: DiscoverConfig) -> list[EndpointConfig]:
        """The endpoints ``block`` finds now; raises PromError when the query fails."""
        result = await self.client.query(self.discover_query(block))
        labels = list(map(_labels_of, result.series))
        last = self._last_found.get(block.name)
        if last is not None and last[0] is block and last[1] == labels:
            return last[2]  # the same series as last time (the usual case): the same endpoints
        memo = self._discovered.setdefault(block.name, {})
        if len(memo) > 4 * max(1000, len(result.series)):
            memo.clear()  # label sets that went long ago
        with gc_paused():
            found = discovered_endpoints(block, labels, memo=memo)
        self._last_found[block.name] = (block, labels, found)
        return found


def served_label(block: DiscoverConfig) -> str | None:
    return block.served_model_label or MODEL_LABELS.get(block.profile)


_FIELD = re.compile(r"\{([^{}]*)\}")


def _fill(template: str, values: Mapping[str, str]) -> str:
    return _FIELD.sub(lambda m: values.get(m.group(1), ""), template)


def discovered_endpoints(block: DiscoverConfig, label_sets: Iterable[Mapping[str, str]],
                         taken: set[str] | None = None,
                         memo: dict[tuple[tuple[str, str], ...], EndpointConfig | None] | None = None,
                         ) -> list[EndpointConfig]:
    """Endpoint configs for the label sets of ``block``'s discovery query, sorted by label set.
    A name already in ``taken`` (a configured endpoint) or made twice keeps its first owner.
    ``memo`` (label set -> config, kept by the caller for this block) makes a refresh that
    finds the same endpoints cheap, and gives them the same config objects."""
    seen = set(taken or ())
    out: list[EndpointConfig] = []
    memo = {} if memo is None else memo
    for key in sorted(tuple(sorted(d.items())) for d in label_sets):
        if key in memo:
            cfg = memo[key]
        else:
            cfg = memo[key] = _discovered(block, dict(key))
        if cfg is None or cfg.name in seen:
            continue
        seen.add(cfg.name)
        out.append(cfg)
    return out


def _discovered(block: DiscoverConfig, labels: Mapping[str, str]) -> EndpointConfig | None:
    from modeldeck.core.config import EndpointConfig

    base = parse_selector(block.selector) if block.selector else ()
    sl = served_label(block)
    model = block.model if block.model is not None else labels.get(block.model_label or "", "")
    environment = labels.get(block.environment_label, "") if block.environment_label else block.environment
    if not model.strip() or not environment.strip():
        return None  # a series without the label that names its model or environment
    values = {**labels, "model": model, "environment": environment}
    name = one_line(_fill(block.name_template, values), 120).strip()
    if not name:
        return None
    matchers = [*base, *(Matcher(g, "=", labels.get(g, "")) for g in block.group_by)]
    url = ""
    if block.url_template:
        url = _fill(block.url_template, labels).strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", url) or any(not c.isprintable() for c in url):
            url = ""
    served = labels.get(sl, "") if sl else ""
    return EndpointConfig(
        name=name, model=model, url=url, environment=environment, served_model=served or model,
        metrics_url="", metrics_profile=block.profile, thresholds=block.thresholds, metrics="prometheus",
        selector=made_selector(matchers), discovered=block.name)


# ---------------------------------------------------------------------------------------------
# discovery for one-off callers (releases, rollouts, the health gate)


def might_find(block: DiscoverConfig, model: str, environment: str) -> bool:
    """Whether ``block`` can make an endpoint of ``model`` in ``environment``."""
    return ((block.model is None or block.model == model)
            and (block.environment_label is not None or block.environment == environment))


def resolve_discovered(settings: Settings, model: str | None = None, environment: str | None = None,
                       *, timeout: float | None = None) -> Settings:
    """``settings`` with what its ``[[discover]]`` blocks find now added to ``endpoints`` (those
    of ``model`` in ``environment`` when given; configured names keep their endpoint, a name
    made twice its first block's, as in the poller), ``discovery_resolved`` set and, per block
    whose query failed, why in ``discover_errors``. One query per block, all at once, on a
    private event loop (in a thread when this one runs a loop), within ``timeout`` (default
    ``[prometheus] timeout`` + 1 s). Without blocks, or resolved already: ``settings`` itself."""
    from dataclasses import replace as _replace

    if not settings.discover or settings.discovery_resolved or settings.prometheus is None:
        return settings
    blocks = tuple(b for b in settings.discover
                   if model is None or environment is None or might_find(b, model, environment))
    cfg = settings.prometheus
    bound = cfg.timeout + 1.0 if timeout is None else timeout
    answers: list[Any] = []

    async def main() -> None:
        fleet = PromFleet(cfg)
        try:
            got = await asyncio.wait_for(asyncio.gather(*(fleet.discover(b) for b in blocks),
                                                        return_exceptions=True), bound)
            answers.extend(got)
        except asyncio.TimeoutError:
            answers.extend(PromError(f"prometheus: discovery timed out after {_seconds(bound)}") for _ in blocks)
        finally:
            await fleet.aclose()

    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if running:
        import threading

        worker = threading.Thread(target=lambda: asyncio.run(main()), name="modeldeck-discover", daemon=True)
        worker.start()
        worker.join(bound + 5.0)
    else:
        asyncio.run(main())
    errors: dict[str, str] = {}
    taken = {e.name for e in settings.endpoints}
    found: list[EndpointConfig] = []
    for i, block in enumerate(blocks):
        got = answers[i] if i < len(answers) else PromError(
            f"prometheus: discovery timed out after {_seconds(bound)}")
        if isinstance(got, BaseException):
            errors[block.name] = (str(got) if isinstance(got, PromError)
                                  else one_line(f"prometheus: {type(got).__name__}: {got}", MESSAGE_LIMIT))
            continue
        for ep in got:
            if ep.name in taken:
                continue
            taken.add(ep.name)
            if (model is None or ep.model == model) and (environment is None or ep.environment == environment):
                found.append(ep)
    return _replace(settings, endpoints=(*settings.endpoints, *found), discovery_resolved=True,
                    discover_errors=errors)


__all__ = ["PROMQL", "Matcher", "PromClient", "PromError", "PromFleet", "PromReading", "QueryResult",
           "SelectorError", "Series", "discovered_endpoints", "might_find", "parse_selector", "profile_queries", "resolve_discovered",
           "selector_text"]
