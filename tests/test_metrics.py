"""core.metrics: PromQL histogram_quantile, the built-in profiles on recorded scrapes, rates,
counter resets, and the prefix filter in front of prometheus-client's parser."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modeldeck.core import metrics
from modeldeck.core.metrics import (
    MetricsError,
    RateWindow,
    Reading,
    detect_profile,
    histogram_quantile,
    rates_between,
    read_metrics,
)

SCRAPES = Path(__file__).parent / "data" / "scrapes"


def scrape(name: str) -> str:
    return (SCRAPES / name).read_text()


def close(a: float | None, b: float, rel: float = 1e-9) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# histogram_quantile


INF = math.inf


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    b = [(0.1, 10), (0.2, 20), (INF, 20)]
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert histogram_quantile(0.75, b) == pytest.approx(0.15)
    assert histogram_quantile(1.0, b) == pytest.approx(0.2)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.9, [(0.1, 5), (0.5, 6), (INF, 10)]) == 0.5


def test_quantile_lowest_bucket_starts_at_zero() -> None:
    assert histogram_quantile(0.5, [(1.0, 10), (INF, 10)]) == pytest.approx(0.5)
    assert histogram_quantile(0.25, [(2.0, 8), (4.0, 8), (INF, 8)]) == pytest.approx(0.5)


def test_quantile_lowest_bucket_with_non_positive_bound_returns_that_bound() -> None:
    assert histogram_quantile(0.2, [(-1.0, 5), (1.0, 10), (INF, 10)]) == -1.0
    assert histogram_quantile(0.2, [(0.0, 5), (1.0, 10), (INF, 10)]) == 0.0


@pytest.mark.parametrize("buckets", [
    [(0.1, 1), (0.2, 2)],  # no +Inf bucket
    [(INF, 5)],  # fewer than two buckets
    [(0.1, 0), (INF, 0)],  # no observations
    [],
])
def test_quantile_undefined_is_nan(buckets: list[tuple[float, float]]) -> None:
    assert math.isnan(histogram_quantile(0.5, buckets))


def test_quantile_out_of_range_q() -> None:
    b = [(0.1, 1), (INF, 1)]
    assert histogram_quantile(-0.1, b) == -INF
    assert histogram_quantile(1.1, b) == INF
    assert math.isnan(histogram_quantile(math.nan, b))


def test_quantile_non_monotonic_buckets_are_raised_to_the_running_maximum() -> None:
    # 10, 8, 20 becomes 10, 10, 20 (as Prometheus' ensureMonotonic does)
    b = [(0.1, 10), (0.2, 8), (0.4, 20), (INF, 20)]
    assert histogram_quantile(0.6, b) == pytest.approx(0.24)


def test_quantile_sorts_and_coalesces_equal_bounds() -> None:
    b = [(0.2, 10), (INF, 10), (0.1, 3), (0.1, 2)]  # two series' 0.1 buckets summed: 5
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert histogram_quantile(0.75, b) == pytest.approx(0.15)


def test_quantile_ignores_float_noise_between_buckets() -> None:
    b = [(0.1, 10.0), (0.2, 10.0 + 1e-14), (INF, 20.0)]
    # the noise is flattened: rank 10 is found in the first bucket, not interpolated to 0.2
    assert histogram_quantile(0.5, b) == pytest.approx(0.1)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.floats(0, 1))
def test_quantile_stays_within_the_bucket_bounds(increments: list[int], q: float) -> None:
    bounds = [0.005 * 2 ** i for i in range(len(increments))]
    counts, total = [], 0
    for inc in increments:
        total += inc
        counts.append(total)
    b = [*zip(bounds, counts), (INF, total)]
    v = histogram_quantile(q, b)
    if total == 0 or (q == 0 and counts[0] == 0):  # 0/0 in the first non-empty bucket: NaN
        assert math.isnan(v)
    else:
        assert 0 <= v <= bounds[-1]
        assert histogram_quantile(min(1.0, q + 0.1), b) >= v - 1e-12


# ---------------------------------------------------------------------------------------------
# MLServer (real scrapes of MLServer 1.7.1 serving an sklearn model, see tests/data/scrapes)


def test_mlserver_scrape_is_detected_and_read_for_the_model() -> None:
    reading, profile = read_metrics(scrape("mlserver.txt"), model="iris", at=0.0)
    assert profile is not None and profile.name == "mlserver"
    assert reading is not None
    # success + failure over both label sets (version="None" for unversioned routes, "3")
    assert reading.requests == 455 + 1 + 37 + 0
    assert reading.errors == 37
    assert reading.latency_count == 492 + 1
    assert reading.versions == ("3",)


def _infer_bucket_total(text: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("rest_server_request_duration_seconds_bucket") and 'le="+Inf"' in line \
                and "/infer" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_mlserver_latency_histogram_counts_inference_routes_only() -> None:
    text = scrape("mlserver.txt")
    assert 'path="/v2/models/{model_name}/ready"' in text  # health checks are in the histogram
    reading, _ = read_metrics(text, model="iris", at=0.0)
    assert reading is not None
    buckets = dict(reading.buckets)
    assert buckets[INF] == _infer_bucket_total(text)
    assert buckets[INF] < sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("rest_server_request_duration_seconds_bucket")
                              and 'le="+Inf"' in line)


def test_mlserver_rates_between_two_real_scrapes() -> None:
    a, _ = read_metrics(scrape("mlserver.txt"), model="iris", at=100.0)
    b, _ = read_metrics(scrape("mlserver-later.txt"), model="iris", at=110.0)
    assert a is not None and b is not None
    r = rates_between(a, b)
    requests = (861 + 101 + 50 + 5) - (455 + 1 + 37)
    assert not r.restarted
    assert r.requests == requests
    assert close(r.request_rate, requests / 10.0)
    assert close(r.error_ratio, (50 + 5 - 37) / requests)
    assert r.p50_ms is not None and r.p95_ms is not None and r.p99_ms is not None
    assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms <= 10_000
    d_sum = (0.7999225359985758 + 0.06766054799970789) - (0.5509098009987383 + 0.0007390330000589529)
    assert close(r.mean_ms, d_sum / ((911 + 106) - (492 + 1)) * 1000)


def test_mlserver_restart_is_a_reset_not_a_negative_rate() -> None:
    a, _ = read_metrics(scrape("mlserver-later.txt"), model="iris", at=100.0)
    b, _ = read_metrics(scrape("mlserver-restarted.txt"), model="iris", at=120.0)
    assert a is not None and b is not None
    r = rates_between(a, b)
    assert r.restarted
    assert r.requests == b.requests == 8 + 28 + 0 + 4  # everything since the restart
    assert r.request_rate is not None and r.request_rate > 0
    assert close(r.error_ratio, 4 / 40)
    assert r.p95_ms is not None and r.p95_ms > 0


def test_demo_profile_reads_mlserver_names() -> None:
    reading, profile = read_metrics(scrape("mlserver.txt"), model="iris", at=0.0, profile="demo")
    assert profile is not None and profile.name == "demo"
    assert reading is not None and reading.requests == 493


def test_another_models_series_are_left_out() -> None:
    reading, _ = read_metrics(scrape("mlserver.txt"), model="other", at=0.0)
    assert reading is not None
    assert reading.requests == 0 and reading.errors == 0 and reading.latency_count is None
    # the route histogram is labelled by template ({model_name}): it cannot be split by model
    assert reading.buckets


# ---------------------------------------------------------------------------------------------
# Triton, TorchServe, BentoML


def test_triton_per_model_counts_and_mean_from_the_duration_counter() -> None:
    a, profile = read_metrics(scrape("triton.txt"), model="churn", at=0.0)
    b, _ = read_metrics(scrape("triton-later.txt"), model="churn", at=10.0)
    assert profile is not None and profile.name == "triton"
    assert a is not None and b is not None
    assert a.requests == 1840 + 12 + 40 and a.errors == 40
    assert a.versions == ("2", "3")
    r = rates_between(a, b)
    assert close(r.request_rate, (600 + 30) / 10.0)
    assert close(r.error_ratio, 30 / 630)
    assert close(r.mean_ms, 1_800_000 / 600 / 1000)  # Δduration µs / Δsuccesses
    assert r.p95_ms is None  # no histogram: percentiles unknown, not made up
    d, _ = read_metrics(scrape("triton.txt"), model="densenet_onnx", at=0.0)
    assert d is not None and d.requests == 96 + 7 and d.errors == 7


def test_torchserve_per_model_requests_host_errors_and_mean() -> None:
    a, profile = read_metrics(scrape("torchserve.txt"), model="churn", at=0.0)
    b, _ = read_metrics(scrape("torchserve-later.txt"), model="churn", at=20.0)
    assert profile is not None and profile.name == "torchserve"
    assert a is not None and b is not None
    assert a.requests == 400 and a.errors == 4
    r = rates_between(a, b)
    assert close(r.request_rate, 200 / 20.0)
    assert close(r.error_ratio, 10 / 200)
    assert close(r.mean_ms, 2_400_000 / 200 / 1000)
    other, _ = read_metrics(scrape("torchserve.txt"), model="resnet18", at=0.0)
    assert other is not None and other.requests == 3


def test_torchserve_without_any_5xx_yet_counts_zero_errors() -> None:
    text = "\n".join(line for line in scrape("torchserve.txt").splitlines()
                     if not line.startswith("Requests5XX{"))
    reading, _ = read_metrics(text, model="churn", at=0.0)
    assert reading is not None and reading.errors == 0


def test_bentoml_counts_api_routes_and_5xx() -> None:
    a, profile = read_metrics(scrape("bentoml.txt"), model="iris_classifier", at=0.0)
    assert profile is not None and profile.name == "bentoml"
    assert a is not None
    assert a.requests > 0
    assert a.errors is not None and a.errors > 0
    assert a.buckets and a.buckets[-1][0] == INF
    b, _ = read_metrics(scrape("bentoml-later.txt"), model="iris_classifier", at=10.0)
    assert b is not None
    r = rates_between(a, b)
    assert not r.restarted and r.request_rate is not None and r.request_rate > 0
    assert r.p50_ms is not None and r.p99_ms is not None and r.p50_ms <= r.p99_ms


@pytest.mark.parametrize(("name", "expected"), [
    ("mlserver.txt", "mlserver"), ("triton.txt", "triton"), ("torchserve.txt", "torchserve"),
    ("bentoml.txt", "bentoml"),
])
def test_profiles_are_detected_from_the_names_present(name: str, expected: str) -> None:
    p = detect_profile(scrape(name))
    assert p is not None and p.name == expected


def test_a_fresh_mlserver_without_requests_is_detected_by_its_type_lines() -> None:
    text = "# HELP model_infer_request_success_total x\n# TYPE model_infer_request_success_total counter\n" \
           "process_open_fds 12.0\n"
    reading, profile = read_metrics(text, model="iris", at=0.0)
    assert profile is not None and profile.name == "mlserver"
    assert reading is not None and reading.requests == 0 and reading.found


def test_unknown_names_give_no_reading_and_a_configured_profile_says_not_found() -> None:
    text = "process_open_fds 12.0\nprocess_max_fds 1024.0\n"
    assert read_metrics(text, model="m", at=0.0) == (None, None)
    reading, profile = read_metrics(text, model="m", at=0.0, profile="triton")
    assert profile is not None and reading is not None and not reading.found


def test_unknown_profile_name() -> None:
    with pytest.raises(MetricsError, match="unknown metrics profile 'nope'"):
        read_metrics("", model="m", at=0.0, profile="nope")


# ---------------------------------------------------------------------------------------------
# malformed text and the prefix filter


def test_html_is_malformed_metrics_text() -> None:
    with pytest.raises(MetricsError, match="metrics text malformed: line 1: <html>"):
        read_metrics("<html><body>Login</body></html>\n", model="m", at=0.0)


def test_a_broken_line_of_a_needed_family_is_reported_with_its_line_number() -> None:
    text = scrape("mlserver.txt").replace('model_infer_request_failure_total{model="iris",version="None"} 37.0',
                                          'model_infer_request_failure_total{model="iris",version="None" 37.0')
    line_no = next(i for i, line in enumerate(text.splitlines(), 1)
                   if line.startswith('model_infer_request_failure_total{model="iris",version="None" '))
    with pytest.raises(MetricsError, match=f"line {line_no}: model_infer_request_failure_total"):
        read_metrics(text, model="iris", at=0.0)


def test_binary_garbage_and_non_numbers() -> None:
    with pytest.raises(MetricsError, match="not UTF-8"):
        read_metrics(b"\xff\xfe\x00junk", model="m", at=0.0)
    with pytest.raises(MetricsError, match="malformed"):
        read_metrics('model_infer_request_success_total{model="m"} many\n', model="m", at=0.0)


def test_only_the_needed_lines_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = metrics._parse

    def spy(lines, text):  # type: ignore[no-untyped-def]
        seen.extend(line for line, _ in lines)
        return real(lines, text)

    monkeypatch.setattr(metrics, "_parse", spy)
    text = scrape("mlserver.txt")
    read_metrics(text, model="iris", at=0.0)
    assert len(text.splitlines()) > 200
    assert 0 < len(seen) < 70
    assert not any(line.startswith(("#", "python_", "process_", "grpc_", "rest_server_requests_"))
                   for line in seen)
    assert not any("/ready" in line for line in seen)
    assert not any("_created" in line.split("{")[0] for line in seen)
    # a broken line in a family nobody needs does not matter
    read_metrics(text.replace("process_open_fds ", "process_open_fds{ "), model="iris", at=0.0)


@pytest.mark.parametrize(("name", "model"), [
    ("mlserver.txt", "iris"), ("mlserver-later.txt", "iris"), ("mlserver-restarted.txt", "iris"),
    ("triton.txt", "churn"), ("torchserve.txt", "churn"), ("bentoml.txt", "iris_classifier"),
])
def test_the_fast_path_reads_exactly_what_prometheus_client_reads(
        name: str, model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = scrape(name)
    fast, _ = read_metrics(text, model=model, at=0.0)
    monkeypatch.setattr(metrics, "FAST_PATH", False)
    slow, _ = read_metrics(text, model=model, at=0.0)
    assert fast == slow


def test_lines_the_fast_path_does_not_take_go_to_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = metrics.text_string_to_metric_families

    def spy(text: str):  # type: ignore[no-untyped-def]
        calls.append(text)
        return real(text)

    monkeypatch.setattr(metrics, "text_string_to_metric_families", spy)
    text = ('model_infer_request_success_total{model="m",version="1"} 3.0\n'
            'model_infer_request_success_total{model="m", version="2"} 4.0 1700000000000\n'  # a space
            'model_infer_request_failure_total{model="m",version="a\\\\b"} 1.0\n')  # an escape
    reading, _ = read_metrics(text, model="m", at=0.0, profile="mlserver")
    assert reading is not None and reading.requests == 8 and reading.errors == 1
    assert len(calls) == 1 and calls[0].count("\n") == 2


def test_escaped_label_values_parse() -> None:
    text = ('# TYPE model_infer_request_success_total counter\n'
            'model_infer_request_success_total{model="m",version="a\\"b"} 4.0\n')
    reading, _ = read_metrics(text, model="m", at=0.0)
    assert reading is not None and reading.requests == 4 and reading.versions == ('a"b',)


# ---------------------------------------------------------------------------------------------
# rates and the window


def R(at: float, requests: float, errors: float = 0.0, **kw: object) -> Reading:
    return Reading(profile="mlserver", at=at, requests=requests, errors=errors, **kw)  # type: ignore[arg-type]


def test_no_requests_means_zero_rate_and_unknown_ratio() -> None:
    r = rates_between(R(0, 10, 1), R(5, 10, 1))
    assert r.request_rate == 0 and r.error_ratio is None and r.p95_ms is None and not r.restarted


def test_any_counter_going_down_is_a_restart() -> None:
    b1 = ((0.1, 5.0), (INF, 5.0))
    b0 = ((0.1, 9.0), (INF, 9.0))
    r = rates_between(R(0, 10, 0, buckets=b0), R(5, 12, 0, buckets=b1))
    assert r.restarted
    assert r.requests == 12 and r.p50_ms is not None and r.p50_ms > 0
    r = rates_between(R(0, 10, 3), R(5, 11, 1))
    assert r.restarted and r.error_ratio == pytest.approx(1 / 11)


def test_window_compares_with_the_oldest_reading_inside_it() -> None:
    w = RateWindow(window=10.0)
    assert w.add(R(0, 0)) is None
    assert w.add(R(2, 20)).request_rate == pytest.approx(10)  # type: ignore[union-attr]
    w.add(R(4, 20))
    r = w.add(R(6, 20))
    assert r is not None and r.window == 6 and r.request_rate == pytest.approx(20 / 6)
    r = w.add(R(14, 20))  # the reading at 0 and 2 fell out: compared with 4
    assert r is not None and r.window == 10 and r.request_rate == 0


def test_window_with_readings_further_apart_than_the_window_uses_the_previous_one() -> None:
    w = RateWindow(window=10.0)
    w.add(R(0, 0))
    r = w.add(R(30, 60))
    assert r is not None and r.window == 30 and r.request_rate == pytest.approx(2)


def test_window_restarts_after_a_reset() -> None:
    w = RateWindow(window=10.0)
    w.add(R(0, 100))
    w.add(R(2, 120))
    r = w.add(R(4, 5))
    assert r is not None and r.restarted and r.requests == 5
    r = w.add(R(6, 9))
    assert r is not None and not r.restarted and r.requests == 4 and r.window == 2


def test_mlserver_counters_by_version_label_give_each_versions_own_rates() -> None:
    """Real MLServer scrapes label their counters by version (``None`` for the unversioned
    route): version 3's requests and failures are read apart from the rest."""
    a, _ = read_metrics(scrape("mlserver.txt"), model="iris", at=100.0)
    b, _ = read_metrics(scrape("mlserver-later.txt"), model="iris", at=110.0)
    assert a is not None and b is not None
    assert b.by_version == (("3", 106.0, 5.0),)
    r = rates_between(a, b)
    ((version, rate, ratio),) = r.by_version
    assert version == "3" and close(rate, (106 - 1) / 10.0) and close(ratio, 5 / 105)
    assert not close(ratio, r.error_ratio)  # the whole model's ratio is another number
