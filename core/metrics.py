"""Prometheus text -> request rate, error ratio, latency percentiles, for one model.

A scrape is read into a :class:`Reading` (the cumulative counters of one model at one moment);
two readings give :class:`Rates` (what happened between them). :class:`RateWindow` keeps the
last few readings of an endpoint and answers the rates over a short window.

Reading is cheap on purpose: the text is first cut down with a prefix filter to the lines of the
families the profile needs (for path-labelled histograms, only inference routes; for
model-labelled series, only lines naming the model). Those lines, when in the plain form
servers write (no escapes), are read with a strict regular expression (about 4 µs a line);
every other line goes through prometheus-client's ``text_string_to_metric_families``, which
also decides what is malformed. (prometheus-client alone costs 25-35 µs a line: 1.1-1.4 ms for
the ~40 lines a real MLServer scrape needs, 4-5 ms for all of its 250 lines; at 200 endpoints a
second that alone would be a quarter of a core.) Samples are matched by name with any
``_total`` suffix removed, so typed (``# TYPE x counter``) and untyped lines read the same.

Built-in profiles, chosen automatically from the names present (``metrics_profile`` in the
config picks one by name):

- ``mlserver`` (Seldon MLServer 1.x, and ``demo``, the embedded demo fleet): requests =
  ``model_infer_request_success`` + ``model_infer_request_failure`` of the model (labels
  ``model``/``version`` in 1.7, ``model_name``/``model_version`` accepted too); errors = failures;
  percentiles from ``rest_server_request_duration_seconds`` on inference routes only
  (``/v2/models/{m}/infer``, ``/v2/models/{m}/versions/{v}/infer``; MLServer labels the route
  template, so on a multi-model server they cover all its models); mean latency from the
  ``model_infer_request_duration`` summary (per model).
- ``triton``: ``nv_inference_request_success`` / ``_failure``; mean latency =
  Δ``nv_inference_request_duration_us`` / Δsuccesses (Triton exports duration as a counter).
- ``torchserve``: ``ts_inference_requests_total``; mean latency = Δ``ts_inference_latency_microseconds``
  / Δrequests; errors = Δ``Requests5XX`` (host-wide: exact for a server with one model).
- ``bentoml``: ``bentoml_service_request_total`` (errors: ``http_response_code`` 5xx) and the
  ``bentoml_service_request_duration_seconds`` histogram, health and metrics routes excluded.
- ``kserve``: KServe's own model server (0.21) exports only the ``request_predict_seconds``
  histogram labelled ``model_name``: requests = its count, percentiles and mean from it, errors
  not reported (``None``, never 0). Knative's queue-proxy (``revision_app_request_count`` with
  ``response_code_class``, ``revision_app_request_latencies`` in milliseconds) is used instead
  when present: errors = 5xx.

Counter resets (a value went down: the server restarted) never give negative rates: as
Prometheus' ``rate()`` does, the new value counts as the increase since the restart, and the
result says ``restarted``.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from modeldeck.core.frozen import quick_init

__all__ = [
    "ERRORS_UNREPORTED",
    "PROFILES",
    "MetricsError",
    "Profile",
    "RateWindow",
    "Rates",
    "Reading",
    "detect_profile",
    "get_profile",
    "histogram_quantile",
    "is_inference_path",
    "rates_between",
    "read_metrics",
]

MODEL_LABELS = ("model_name", "model")
VERSION_LABELS = ("model_version", "version")
_METRIC_LINE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{|[ \t]+\S)")
_INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer/?$")
_MODEL_KEYS = ("{model=", ",model=", "{model_name=", ",model_name=")
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/ping",
                 "/v2/health/live", "/v2/health/ready")


class MetricsError(ValueError):
    """The metrics text cannot be read; the message is one short line for a status reason."""


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Reading:
    """One model's cumulative counters from one scrape. Latency values are in seconds."""

    profile: str
    at: float  # when the scrape was read (a monotonic clock), for rates
    requests: float = 0.0  # inference requests so far (0 while the series does not exist yet)
    errors: float | None = 0.0  # failed requests so far; None when the profile cannot tell
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound in s, cumulative count), sorted
    latency_sum: float | None = None  # seconds spent, cumulative
    latency_count: float | None = None  # requests the sum covers
    versions: tuple[str, ...] = ()  # model versions named in this model's series labels
    found: bool = True  # whether any of the profile's families appear in the text
    # (version, requests, errors) so far, per version label, where the server labels its counters
    # by version (MLServer's ``version``): what a bake judges when one server holds two versions
    by_version: tuple[tuple[str, float, float], ...] = ()


@quick_init  # one made per endpoint per refresh
@dataclass(frozen=True)
class Rates:
    """What happened between two readings. ``None`` where it cannot be told (no requests in
    the window: no error ratio and no latency)."""

    window: float  # seconds between the two readings
    request_rate: float | None  # requests per second
    error_ratio: float | None  # failed / all requests, 0..1
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    restarted: bool = False  # a counter went down: the server restarted in the window
    requests: float = 0.0  # requests in the window
    # (version, requests per second, error ratio or None) per version label (Reading.by_version)
    by_version: tuple[tuple[str, float, float | None], ...] = ()


@dataclass(frozen=True)
class Profile:
    """How one kind of model server names its metrics."""

    name: str
    detect: tuple[str, ...]  # any of these in the text selects the profile
    prefixes: tuple[str, ...]  # sample-name prefixes of the lines to parse
    reader: Callable[[list[_Sample], str | None, str, float], Reading] = field(repr=False)
    path_prefixes: tuple[str, ...] = ()  # of those, families labelled by route: keep inference routes
    model_prefixes: tuple[str, ...] = ()  # of those, families labelled by model: keep this model's


# ---------------------------------------------------------------------------------------------
# histogram_quantile, as PromQL computes it for classic histograms


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """PromQL's ``histogram_quantile(q, ...)`` over (upper bound, cumulative count) pairs.

    Linear interpolation inside the bucket holding the rank; the lowest bucket starts at 0
    (unless its upper bound is <= 0, which is then returned); a rank in the +Inf bucket gives
    the highest finite bound. NaN when there are no observations, fewer than two buckets, or
    no +Inf bucket. Equal bounds are merged, float noise below 1e-12 relative is ignored and
    decreasing counts are raised to the running maximum, as Prometheus does."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    return _quantile(q, _prepared(buckets))


def _prepared(buckets: Iterable[tuple[float, float]]) -> list[list[float]] | None:
    """Buckets sorted, equal bounds merged, precision noise and non-monotonic counts fixed;
    None when no quantile is defined (no +Inf bucket, fewer than two buckets)."""
    bs = sorted(((float(u), float(c)) for u, c in buckets), key=lambda b: b[0])
    if not bs or not math.isinf(bs[-1][0]) or bs[-1][0] < 0:
        return None
    merged: list[list[float]] = []
    for u, c in bs:
        if merged and merged[-1][0] == u:
            merged[-1][1] += c
        else:
            merged.append([u, c])
    prev = merged[0][1]
    for b in merged[1:]:
        cur = b[1]
        delta = abs(cur - prev)
        if delta == 0:
            continue
        if cur != 0 and delta / cur <= 1e-12:
            b[1] = prev
        else:
            prev = cur
    top = merged[0][1]
    for b in merged[1:]:
        if b[1] > top:
            top = b[1]
        elif b[1] < top:
            b[1] = top
    return merged if len(merged) >= 2 else None


def _quantile(q: float, merged: list[list[float]] | None) -> float:
    if merged is None:
        return math.nan
    observations = merged[-1][1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    counts = [b[1] for b in merged[:-1]]
    i = bisect_left(counts, rank)  # first bucket whose count >= rank (counts are monotonic)
    if i == len(merged) - 1:
        return merged[-2][0]
    if i == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[i][0], merged[i][1]
    if i > 0:
        start = merged[i - 1][0]
        count -= merged[i - 1][1]
        rank -= merged[i - 1][1]
    if count == 0:  # only q == 0 with empty leading buckets: 0/0, NaN in Prometheus too
        return math.nan
    return start + (end - start) * (rank / count)


# ---------------------------------------------------------------------------------------------
# reading


class _Sample:
    __slots__ = ("labels", "name", "value")

    def __init__(self, name: str, labels: dict[str, str], value: float) -> None:
        self.name = name[:-6] if name.endswith("_total") else name
        self.labels = labels
        self.value = float(value)


def is_inference_path(path: str, model: str | None = None) -> bool:
    """An OIP v2 inference route: ``/v2/models/{m}/infer`` or ``/v2/models/{m}/versions/{v}/infer``.
    With ``model``, a route naming another model literally is not this model's (a templated
    ``{model_name}`` segment matches every model)."""
    m = _INFER_PATH.match(path)
    if not m:
        return False
    name = m.group(1)
    return model is None or name == model or (name.startswith("{") and name.endswith("}"))


def _model_of(labels: dict[str, str]) -> str | None:
    for k in MODEL_LABELS:
        if k in labels:
            return labels[k]
    return None


def _version_of(labels: dict[str, str]) -> str | None:
    for k in VERSION_LABELS:
        v = labels.get(k)
        if v and v != "None":
            return v
    return None


def _mine(s: _Sample, model: str | None) -> bool:
    if not model:
        return True
    m = _model_of(s.labels)
    return m is None or m == model


def _le(s: _Sample) -> float | None:
    le = s.labels.get("le")
    if le is None:
        return None
    try:
        return float(le)  # accepts "+Inf"
    except ValueError:
        return None


def _fold_buckets(samples: Iterable[_Sample]) -> tuple[tuple[float, float], ...]:
    """sum by (le): the buckets of all given series added up per upper bound."""
    acc: dict[float, float] = {}
    for s in samples:
        le = _le(s)
        if le is not None:
            acc[le] = acc.get(le, 0.0) + s.value
    return tuple(sorted(acc.items()))


def _versions(samples: Iterable[_Sample]) -> tuple[str, ...]:
    return tuple(sorted({v for s in samples if (v := _version_of(s.labels))}))


def _read_mlserver(samples: list[_Sample], model: str | None, name: str, at: float) -> Reading:
    success = failure = 0.0
    lat_sum = lat_count = None
    bucket_samples: list[_Sample] = []
    mine: list[_Sample] = []
    per: dict[str, tuple[float, float]] = {}  # version -> (requests, errors)
    for s in samples:
        n = s.name
        if n.startswith("rest_server_request_duration_seconds"):
            path = s.labels.get("path", "")
            if n.endswith("_bucket") and is_inference_path(path, model):
                bucket_samples.append(s)
            continue
        if not _mine(s, model):
            continue
        if n == "model_infer_request_success":
            success += s.value
            mine.append(s)
            if (v := _version_of(s.labels)) is not None:
                per[v] = (per.get(v, (0.0, 0.0))[0] + s.value, per.get(v, (0.0, 0.0))[1])
        elif n == "model_infer_request_failure":
            failure += s.value
            mine.append(s)
            if (v := _version_of(s.labels)) is not None:
                # a failure counts as a request of its version too (requests = success + failure)
                per[v] = (per.get(v, (0.0, 0.0))[0] + s.value, per.get(v, (0.0, 0.0))[1] + s.value)
        elif n == "model_infer_request_duration_sum":
            lat_sum = (lat_sum or 0.0) + s.value
        elif n == "model_infer_request_duration_count":
            lat_count = (lat_count or 0.0) + s.value
    return Reading(profile=name, at=at, requests=success + failure, errors=failure,
                   buckets=_fold_buckets(bucket_samples), latency_sum=lat_sum, latency_count=lat_count,
                   versions=_versions(mine), by_version=tuple((v, r, e) for v, (r, e) in sorted(per.items())))


def _read_triton(samples: list[_Sample], model: str | None, name: str, at: float) -> Reading:
    success = failure = 0.0
    duration_us: float | None = None
    mine: list[_Sample] = []
    for s in samples:
        if not _mine(s, model):
            continue
        if s.name == "nv_inference_request_success":
            success += s.value
            mine.append(s)
        elif s.name == "nv_inference_request_failure":
            failure += s.value
            mine.append(s)
        elif s.name == "nv_inference_request_duration_us":
            duration_us = (duration_us or 0.0) + s.value
    return Reading(profile=name, at=at, requests=success + failure, errors=failure,
                   latency_sum=None if duration_us is None else duration_us / 1e6,
                   latency_count=success if duration_us is not None else None, versions=_versions(mine))


def _read_torchserve(samples: list[_Sample], model: str | None, name: str, at: float) -> Reading:
    requests = 0.0
    errors: float | None = None
    latency_us: float | None = None
    mine: list[_Sample] = []
    for s in samples:
        if s.name == "Requests5XX":  # host-level: no model label
            errors = (errors or 0.0) + s.value
            continue
        if not _mine(s, model):
            continue
        if s.name == "ts_inference_requests":
            requests += s.value
            mine.append(s)
        elif s.name == "ts_inference_latency_microseconds":
            latency_us = (latency_us or 0.0) + s.value
    if errors is None and any(s.name == "Requests2XX" for s in samples):
        errors = 0.0  # the frontend counts requests, and none failed yet
    return Reading(profile=name, at=at, requests=requests, errors=errors,
                   latency_sum=None if latency_us is None else latency_us / 1e6,
                   latency_count=requests if latency_us is not None else None, versions=_versions(mine))


def _bentoml_route(s: _Sample) -> bool:
    ep = s.labels.get("endpoint", "")
    return not ep.startswith(_HEALTH_PATHS)


def _read_bentoml(samples: list[_Sample], model: str | None, name: str, at: float) -> Reading:
    requests = errors = 0.0
    lat_sum = lat_count = None
    bucket_samples: list[_Sample] = []
    services = {s.labels.get("service_name") for s in samples}
    only = model if model and model in services else None  # no model label: the service may be named so
    for s in samples:
        if not _bentoml_route(s) or (only and s.labels.get("service_name") != only):
            continue
        n = s.name
        if n == "bentoml_service_request":
            requests += s.value
            if s.labels.get("http_response_code", "").startswith("5"):
                errors += s.value
        elif n == "bentoml_service_request_duration_seconds_bucket":
            bucket_samples.append(s)
        elif n == "bentoml_service_request_duration_seconds_sum":
            lat_sum = (lat_sum or 0.0) + s.value
        elif n == "bentoml_service_request_duration_seconds_count":
            lat_count = (lat_count or 0.0) + s.value
    return Reading(profile=name, at=at, requests=requests, errors=errors,
                   buckets=_fold_buckets(bucket_samples), latency_sum=lat_sum, latency_count=lat_count)


def _read_kserve(samples: list[_Sample], model: str | None, name: str, at: float) -> Reading:
    qp = [s for s in samples if s.name.startswith("revision_app_request_")]
    if qp:  # Knative queue-proxy in front of the model: it sees every request and its status
        requests = errors = 0.0
        lat_sum = lat_count = None
        buckets: dict[float, float] = {}
        for s in qp:
            n = s.name
            if n == "revision_app_request_count":
                requests += s.value
                if s.labels.get("response_code_class", "") == "5xx":
                    errors += s.value
            elif n == "revision_app_request_latencies_bucket":
                le = _le(s)
                if le is not None:
                    buckets[le / 1000.0] = buckets.get(le / 1000.0, 0.0) + s.value
            elif n == "revision_app_request_latencies_sum":
                lat_sum = (lat_sum or 0.0) + s.value / 1000.0
            elif n == "revision_app_request_latencies_count":
                lat_count = (lat_count or 0.0) + s.value
        return Reading(profile=name, at=at, requests=requests, errors=errors, buckets=tuple(sorted(buckets.items())),
                       latency_sum=lat_sum, latency_count=lat_count)
    count = 0.0
    lat_sum = None
    bucket_samples: list[_Sample] = []
    for s in samples:
        if not _mine(s, model):
            continue
        if s.name == "request_predict_seconds_count":
            count += s.value
        elif s.name == "request_predict_seconds_sum":
            lat_sum = (lat_sum or 0.0) + s.value
        elif s.name == "request_predict_seconds_bucket":
            bucket_samples.append(s)
    return Reading(profile=name, at=at, requests=count, errors=None, buckets=_fold_buckets(bucket_samples),
                   latency_sum=lat_sum, latency_count=count if lat_sum is not None else None)


_MLSERVER = dict(
    detect=("model_infer_request_success",),
    prefixes=("model_infer_request_success", "model_infer_request_failure",
              "model_infer_request_duration", "rest_server_request_duration_seconds_bucket"),
    reader=_read_mlserver,
    path_prefixes=("rest_server_request_duration_seconds",),
    model_prefixes=("model_infer_request_",),
)

PROFILES: dict[str, Profile] = {
    "mlserver": Profile(name="mlserver", **_MLSERVER),  # type: ignore[arg-type]
    "triton": Profile(
        name="triton", detect=("nv_inference_request_success",),
        prefixes=("nv_inference_request_success", "nv_inference_request_failure",
                  "nv_inference_request_duration_us"),
        reader=_read_triton, model_prefixes=("nv_inference_request_",)),
    "torchserve": Profile(
        name="torchserve", detect=("ts_inference_requests_total",),
        prefixes=("ts_inference_requests_total", "ts_inference_latency_microseconds", "Requests5XX",
                  "Requests2XX"),
        reader=_read_torchserve, model_prefixes=("ts_inference_",)),
    "bentoml": Profile(
        name="bentoml", detect=("bentoml_service_request_total",),
        prefixes=("bentoml_service_request_total", "bentoml_service_request_duration_seconds"),
        reader=_read_bentoml),
    "kserve": Profile(
        name="kserve", detect=("request_predict_seconds", "revision_app_request_count"),
        prefixes=("request_predict_seconds_bucket", "request_predict_seconds_sum", "request_predict_seconds_count",
                  "revision_app_request_count", "revision_app_request_latencies"),
        reader=_read_kserve, model_prefixes=("request_predict_seconds",)),
    # The embedded demo fleet exports MLServer's names.
    "demo": Profile(name="demo", **_MLSERVER),  # type: ignore[arg-type]
}
# Profiles whose servers export no failure counter: their error ratio is unknown, never 0.
ERRORS_UNREPORTED = {"kserve": "errors not reported by kserve (no failure counter)"}
_DETECT_ORDER = ("mlserver", "triton", "torchserve", "bentoml", "kserve")


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise MetricsError(f"unknown metrics profile {name!r} (known: {', '.join(PROFILES)})") from None


def detect_profile(text: str) -> Profile | None:
    """The built-in profile whose metric names appear in ``text`` (HELP/TYPE lines count: a
    labelled counter with no samples yet is still announced), or None."""
    for name in _DETECT_ORDER:
        p = PROFILES[name]
        if any(d in text for d in p.detect):
            return p
    return None


def _short(line: str, limit: int = 80) -> str:
    s = " ".join("".join(ch if ch.isprintable() else " " for ch in line).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


_FIRST_SAMPLE = re.compile(r"^[ \t]*([^#\s][^\n]*)", re.M)
_LINE_RES: dict[str, re.Pattern[str]] = {}


def _line_re(profile: Profile) -> re.Pattern[str]:
    """One regular expression finding the profile's lines: its families' samples, without
    ``_created`` ones, and for route-labelled families only lines naming an inference route."""
    r = _LINE_RES.get(profile.name)
    if r is None:
        alts = []
        for p in profile.prefixes:
            not_created = r"(?![a-zA-Z0-9_:]*_created[{ \t])"
            if p.startswith(profile.path_prefixes or ("\0",)):
                alts.append(rf"{re.escape(p)}{not_created}[^\n]*/infer[^\n]*")
            else:
                alts.append(rf"{re.escape(p)}{not_created}[^\n]*")
        r = _LINE_RES[profile.name] = re.compile(rf"^[ \t]*((?:{'|'.join(alts)}))", re.M)
    return r


def _line_number(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _select(text: str, profile: Profile, model: str | None) -> list[tuple[str, int]]:
    """The lines worth parsing, with their offsets in ``text``. The scan for them runs in the
    regex engine, not line by line in Python. Raises MetricsError when the first sample line is
    not Prometheus text at all (an HTML page, JSON, ...)."""
    first = _FIRST_SAMPLE.search(text)
    if first is not None and not _METRIC_LINE.match(first.group(1).strip()):
        raise MetricsError(f"metrics text malformed: line {_line_number(text, first.start())}: "
                           f"{_short(first.group(1))}")
    quoted = f'"{model}"' if model and not any(c in model for c in '"\\\n') else None
    model_prefixes = profile.model_prefixes if quoted else ()
    out: list[tuple[str, int]] = []
    for m in _line_re(profile).finditer(text):
        line = m.group(1).rstrip()
        if model_prefixes and quoted not in line and line.startswith(model_prefixes):
            brace = line.find("{")
            if brace != -1 and any(k in line[brace:] for k in _MODEL_KEYS):
                continue  # another model's series
        out.append((line, m.start(1)))
    return out


# A sample line in the plain form servers write: no escapes, no spaces inside the braces. Such
# lines are read with two regular expressions (~4 µs a line); any other line goes through
# prometheus-client's parser (~25 µs a line, and the judge of what is malformed).
_SIMPLE_LINE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*)\})?'
    r'[ \t]+([-+]?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|inf|NaN|nan))'
    r'(?:[ \t]+-?[0-9]+)?[ \t]*$')
_SIMPLE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')
FAST_PATH = True  # False: every line through prometheus-client (benchmarks, tests compare both)


def text_string_to_metric_families(text: str) -> Iterator[Any]:
    """prometheus-client's parser, imported on first use: 47 ms to import, and only the lines the
    fast path declines need it."""
    from prometheus_client.parser import text_string_to_metric_families as parse

    return parse(text)


def _parse(lines: list[tuple[str, int]], text: str) -> list[_Sample]:
    out: list[_Sample] = []
    slow: list[tuple[str, int]] = []
    if FAST_PATH:
        for line, n in lines:
            m = _SIMPLE_LINE.match(line)
            if m is None:
                slow.append((line, n))
                continue
            pairs = _SIMPLE_LABEL.findall(m.group(2) or "")
            labels = dict(pairs)
            if len(labels) != len(pairs):  # a repeated label name: let the real parser judge
                slow.append((line, n))
                continue
            out.append(_Sample(m.group(1), labels, float(m.group(3))))
    else:
        slow = lines
    if not slow:
        return out
    chunk = "\n".join(line for line, _ in slow) + "\n"
    try:
        out += [_Sample(s.name, s.labels, s.value)
                for fam in text_string_to_metric_families(chunk) for s in fam.samples]
        return out
    except Exception:
        pass
    # Find the offending line for the message (the error path only).
    for line, n in slow:
        try:
            for fam in text_string_to_metric_families(line + "\n"):
                for s in fam.samples:
                    float(s.value)
        except Exception:
            raise MetricsError(f"metrics text malformed: line {_line_number(text, n)}: {_short(line)}") from None
    raise MetricsError("metrics text malformed")


def read_metrics(text: str | bytes, *, model: str | None, at: float,
                 profile: str | Profile | None = None) -> tuple[Reading | None, Profile | None]:
    """Read one scrape for ``model`` (the model's name on the server; None: every series).

    Returns the reading and the profile used; (None, None) when no profile was given and no
    built-in one matches the names present. Raises MetricsError when the text is not
    Prometheus text or a line the profile needs is malformed."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MetricsError("metrics text malformed: not UTF-8 text") from None
    if isinstance(profile, str):
        profile = get_profile(profile)
    if profile is None:
        profile = detect_profile(text)
        if profile is None:
            _select(text, PROFILES["mlserver"], None)  # still reject garbage (HTML, JSON)
            return None, None
    lines = _select(text, profile, model)
    samples = _parse(lines, text) if lines else []
    reading = profile.reader(samples, model, profile.name, at)
    if not samples and not any(d in text for d in profile.detect):
        reading = _replace_found(reading)
    return reading, profile


def _replace_found(r: Reading) -> Reading:
    return Reading(profile=r.profile, at=r.at, requests=r.requests, errors=r.errors, buckets=r.buckets,
                   latency_sum=r.latency_sum, latency_count=r.latency_count, versions=r.versions,
                   found=False)


# ---------------------------------------------------------------------------------------------
# rates


def _went_down(prev: Reading, cur: Reading) -> bool:
    if cur.requests < prev.requests:
        return True
    if prev.errors is not None and cur.errors is not None and cur.errors < prev.errors:
        return True
    if prev.latency_count is not None and cur.latency_count is not None and cur.latency_count < prev.latency_count:
        return True
    if prev.latency_sum is not None and cur.latency_sum is not None and cur.latency_sum < prev.latency_sum:
        return True
    before = dict(prev.buckets)
    return any(c < before[u] for u, c in cur.buckets if u in before)


def _none_if_nan(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) or math.isinf(x) else x


def rates_between(prev: Reading, cur: Reading, *, restarted: bool | None = None) -> Rates:
    """Rates from ``prev`` to ``cur`` (two readings of the same model, ``cur`` later). After a
    counter reset the current values are the increase since the restart."""
    window = cur.at - prev.at
    if restarted is None:
        restarted = _went_down(prev, cur)
    if restarted:
        base = Reading(profile=prev.profile, at=prev.at, errors=0.0 if prev.errors is not None else None,
                       latency_sum=0.0 if prev.latency_sum is not None else None,
                       latency_count=0.0 if prev.latency_count is not None else None)
    else:
        base = prev
    requests = cur.requests - base.requests
    rate = requests / window if window > 0 else None
    errors = None
    if cur.errors is not None and base.errors is not None:
        errors = cur.errors - base.errors
    error_ratio = None
    if errors is not None and requests > 0:
        error_ratio = min(1.0, max(0.0, errors / requests))
    elif errors is not None and errors > 0:
        error_ratio = 1.0  # errors but no counted requests (host-wide 5XX counters)
    p50 = p95 = p99 = None
    if cur.buckets:
        before = dict(base.buckets)
        prepared = _prepared([(u, c - before.get(u, 0.0)) for u, c in cur.buckets])
        p50, p95, p99 = (_ms(_quantile(q, prepared)) for q in (0.5, 0.95, 0.99))
    mean = None
    if cur.latency_sum is not None and cur.latency_count is not None:
        d_count = cur.latency_count - (base.latency_count or 0.0)
        d_sum = cur.latency_sum - (base.latency_sum or 0.0)
        if d_count > 0:
            mean = _none_if_nan(d_sum / d_count * 1000.0)
    return Rates(window=window, request_rate=_none_if_nan(rate) if rate is not None else None,
                 error_ratio=_none_if_nan(error_ratio) if error_ratio is not None else None,
                 p50_ms=p50, p95_ms=p95, p99_ms=p99, mean_ms=mean, restarted=restarted,
                 requests=max(0.0, requests), by_version=_version_rates(prev, cur, window, restarted))


def _version_rates(prev: Reading, cur: Reading, window: float,
                   restarted: bool) -> tuple[tuple[str, float, float | None], ...]:
    """Per version label: requests per second and error ratio between the two readings (a
    version first seen in ``cur`` counts from zero, as after a restart)."""
    if not cur.by_version or window <= 0:
        return ()
    before = {} if restarted else {v: (r, e) for v, r, e in prev.by_version}
    out = []
    for v, r, e in cur.by_version:
        r0, e0 = before.get(v, (0.0, 0.0))
        n, bad = max(0.0, r - r0), max(0.0, e - e0)
        out.append((v, n / window, min(1.0, bad / n) if n > 0 else None))
    return tuple(out)


def _ms(seconds: float) -> float | None:
    v = _none_if_nan(seconds)
    return None if v is None else v * 1000.0


class RateWindow:
    """The recent readings of one endpoint, and the rates over up to ``window`` seconds.

    ``add()`` compares the new reading with the oldest one kept that is at most ``window``
    seconds old, or with the previous one when that is older (so two readings ``--sample``
    seconds apart always give rates). A reset (the server restarted) drops what came before
    it. Not thread-safe: one poller task owns each window."""

    def __init__(self, window: float = 10.0, keep: int = 64) -> None:
        self.window = window
        self._readings: deque[Reading] = deque(maxlen=keep)

    def __len__(self) -> int:
        return len(self._readings)

    def clear(self) -> None:
        self._readings.clear()

    def add(self, reading: Reading) -> Rates | None:
        rs = self._readings
        if rs and (reading.profile != rs[-1].profile):
            rs.clear()
        if not rs:
            rs.append(reading)
            return None
        prev = rs[-1]
        if _went_down(prev, reading):
            result = rates_between(prev, reading, restarted=True)
            rs.clear()
            rs.append(reading)
            return result
        while len(rs) > 1 and reading.at - rs[0].at > self.window:
            rs.popleft()
        base = rs[0]  # within the window, or else the previous reading
        rs.append(reading)
        # no reset since the base: every reading kept is at least the one before it
        return rates_between(base, reading, restarted=False)


def quantiles_ms(buckets: Sequence[tuple[float, float]], qs: Sequence[float] = (0.5, 0.95, 0.99)) -> list[float | None]:
    """Quantiles (ms) of cumulative buckets in seconds; None where undefined."""
    prepared = _prepared(buckets)
    return [_ms(_quantile(q, prepared)) if 0 <= q <= 1 else None for q in qs]
