"""core.poller against real loopback servers (tests/faultservers.py): every fault gets the
right status and reason, a cycle never stalls, and the poller's threading, storage, backoff,
header handling and drift work as documented."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modeldeck.core.config import parse
from modeldeck.core.poller import Poller
from modeldeck.core.registry import Registry
from modeldeck.core.snapshot import DEGRADED, DOWN, PENDING, UP, DriftSummary, EndpointSnapshot
from tests.faultservers import CLOSE, DRIP, ENDLESS, HANG, SHORT, FaultServer, Reply, refused_url, servers

pytestmark = pytest.mark.live

TIMEOUT = 0.5


def settings(tmp_path: Path, endpoints: list[dict[str, Any]], **poll: Any):  # type: ignore[no-untyped-def]
    poll = {"interval": 0.2, "timeout": TIMEOUT, "store_interval": 0, **poll}
    eps = [{"model": "m", **e} for e in endpoints]
    return parse({"registry": str(tmp_path / "registry.db"), "poll": poll, "endpoints": eps})


def promote(tmp_path: Path, version: int, env: str = "production", model: str = "m",
            reference: str | None = None) -> None:
    with Registry(tmp_path / "registry.db") as r:
        while not r.has_model(model) or (r.model(model).latest_version or 0) < version:
            r.register(model, artifact=f"s3://models/{model}", reference=reference)
        r.approve(model, version, reason="tests pass")
        r.promote(model, version, env, reason="release", force=True)


def by_name(snaps: list[EndpointSnapshot]) -> dict[str, EndpointSnapshot]:
    return {s.endpoint: s for s in snaps}


# ---------------------------------------------------------------------------------------------
# faults


async def test_every_fault_gets_its_status_and_reason_and_the_cycle_does_not_stall(tmp_path: Path) -> None:
    with servers(14) as s:
        _ok, hang, e500, html, truncated, short, endless, drip, badm, missing, loading, notready, \
            hugem, closing = s
        hang.default = HANG
        e500.default = Reply(500, "Internal Server Error")
        html.routes["/v2/models/m"] = Reply(200, "<html><body>Sign in</body></html>", "text/html")
        truncated.routes["/v2/models/m"] = Reply(200, '{"name": "m", "versions": ["1"', "application/json")
        short.routes["/v2/models/m"] = SHORT
        endless.routes["/v2/models/m"] = ENDLESS
        drip.routes["/v2/models/m"] = DRIP
        badm.routes["/metrics"] = Reply(200, 'model_infer_request_success_total{model="m" 12\n')
        missing.model = "other"
        loading.routes["/v2/models/m/ready"] = Reply(503)
        notready.routes["/v2/health/ready"] = Reply(503)
        hugem.routes["/metrics"] = ENDLESS
        closing.routes["/v2/models/m/ready"] = CLOSE
        names = ["ok", "hang", "e500", "html", "truncated", "short", "endless", "drip", "badmetrics",
                 "missing", "loading", "notready", "hugemetrics", "closing"]
        eps = [{"name": n, "url": srv.url} for n, srv in zip(names, s)]
        eps.append({"name": "refused", "url": refused_url()})
        cfg = settings(tmp_path, eps, max_metrics_bytes=256 * 1024)
        async with Poller(cfg) as p:
            for _ in range(2):
                # no endpoint holds the cycle: a hang or a drip ends at its own timeout (the
                # reasons below), so the poll ends; the bound is a liveness guard, not a speed claim
                snaps = by_name(await asyncio.wait_for(p.poll_once(), TIMEOUT * 40))
                expect = {
                    "ok": (UP, "ready"),
                    "hang": (DOWN, "timed out after 0.5 s"),
                    "e500": (DOWN, "/v2/health/live answered 500"),
                    "html": (DOWN, "model metadata is not JSON"),
                    "truncated": (DOWN, "model metadata is not JSON"),
                    "short": (DOWN, "model metadata: connection closed in the middle of the answer"),
                    "endless": (DOWN, "model metadata: response larger than 1 MiB cut off"),
                    "drip": (DOWN, "timed out after 0.5 s"),
                    "badmetrics": (DEGRADED, 'metrics text malformed: line 1: model_infer_request_success_total'
                                             '{model="m" 12'),
                    "missing": (DOWN, "model m is not loaded (/v2/models/m/ready answered 404)"),
                    "loading": (DOWN, "/v2/models/m/ready answered 503"),
                    "notready": (DEGRADED, "server not ready (/v2/health/ready answered 503)"),
                    "hugemetrics": (DEGRADED, "metrics: response larger than 256 KiB cut off"),
                    "closing": (DOWN, "server closed the connection without answering"),
                    "refused": (DOWN, "connection refused"),
                }
                got = {n: (snaps[n].status, snaps[n].reason) for n in expect}
                assert got == expect
        assert snaps["ok"].live and snaps["ok"].ready and snaps["ok"].model_ready
        assert snaps["refused"].live is False and snaps["refused"].ready is False
        assert snaps["missing"].model_ready is False
        assert snaps["ok"].served_version == "1" and snaps["ok"].profile == "mlserver"


async def test_a_hung_endpoint_recovers_without_leaking_connections(tmp_path: Path) -> None:
    with FaultServer() as srv:
        srv.default = HANG
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}], timeout=0.3)
        async with Poller(cfg) as p:
            for _ in range(6):  # more hung requests than the connection pool holds
                (snap,) = await p.poll_once()
                assert snap.status == DOWN and snap.reason == "timed out after 0.3 s"
            srv.default = None
            (snap,) = await p.poll_once()
            assert snap.status == UP, snap.reason


async def test_a_slow_server_is_up_when_each_answer_comes_within_the_timeout(tmp_path: Path) -> None:
    with FaultServer() as srv:
        srv.delay = 0.3  # a full poll asks four things one after the other: 1.2 s in all
        async with Poller(settings(tmp_path, [{"name": "e", "url": srv.url}])) as p:
            (snap,) = await p.poll_once()
            assert snap.status == UP, snap.reason


async def test_text_from_endpoints_is_one_short_plain_line(tmp_path: Path) -> None:
    with FaultServer() as srv:
        srv.routes["/metrics"] = Reply(200, "\x1b[31mRED\x1b[0m\r\n" + "A" * 5000 + "\n")
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}])
        async with Poller(cfg) as p:
            (snap,) = await p.poll_once()
    assert snap.status == DEGRADED
    assert snap.reason.startswith("metrics text malformed: line 1: ")
    assert "\x1b" not in snap.reason and "\n" not in snap.reason and "\r" not in snap.reason
    assert len(snap.reason) <= 160


# ---------------------------------------------------------------------------------------------
# metrics: rates, thresholds, restarts


async def test_rates_thresholds_and_a_restart(tmp_path: Path) -> None:
    with servers(3) as (fine, errors, slow):
        fine.health_checks = 50  # slow health checks are not inference latency
        eps = [{"name": "fine", "url": fine.url}, {"name": "errors", "url": errors.url},
               {"name": "slow", "url": slow.url, "thresholds": {"p95_ms_warn": 100}}]
        async with Poller(settings(tmp_path, eps)) as p:
            first = by_name(await p.poll_once())
            assert first["fine"].request_rate is None  # one reading: no rate yet
            fine.stats.observe(40, 0.004)
            errors.stats.observe(40, 0.004, failed=10)
            slow.stats.observe(40, 0.3)
            second = by_name(await p.poll_once())
            assert second["fine"].status == UP and second["fine"].reason == "ready"
            assert second["fine"].request_rate is not None and second["fine"].request_rate > 0
            assert second["fine"].error_ratio == 0
            assert second["fine"].latency_p95_ms is not None and second["fine"].latency_p95_ms <= 5
            assert second["fine"].latency_mean_ms == pytest.approx(4.0)
            assert second["errors"].status == DEGRADED
            assert second["errors"].reason == "error ratio 25.0% over 5.0%"
            assert second["slow"].status == DEGRADED
            assert second["slow"].reason.startswith("p95 latency ") and second["slow"].reason.endswith(
                " ms over 100 ms")
            assert second["slow"].latency_p95_ms is not None and 250 <= second["slow"].latency_p95_ms <= 500

            # the fine server restarts: its counters start again from zero
            fine.stats = type(fine.stats)()
            fine.stats.observe(5, 0.004)
            third = by_name(await p.poll_once())
            assert third["fine"].restarted
            assert third["fine"].reason == "ready; restarted (counters reset)"
            assert third["fine"].request_rate is not None and third["fine"].request_rate > 0
            hits = fine.hits["/v2/models/m"]
            fine.stats.observe(5, 0.004)
            fourth = by_name(await p.poll_once())
            assert not fourth["fine"].restarted and fourth["fine"].reason == "ready"
            assert fine.hits["/v2/models/m"] == hits + 1  # a restart re-reads the metadata

            fine.routes["/metrics"] = Reply(500, "oops")
            fifth = by_name(await p.poll_once())
            assert fifth["fine"].status == DEGRADED and fifth["fine"].reason == "metrics: /metrics answered 500"
            assert fifth["fine"].request_rate is None and fifth["fine"].latency_p95_ms is None  # unknown now


async def test_metrics_on_their_own_interval_when_running(tmp_path: Path) -> None:
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}], interval=0.1, metrics_interval=0.5)
        p = Poller(cfg)
        task = asyncio.ensure_future(p.run())
        await asyncio.sleep(1.2)
        p.stop()
        await task
        await p.aclose()
        assert 2 <= srv.hits["/metrics"] <= 4
        assert srv.hits["/v2/models/m/ready"] >= 10


# ---------------------------------------------------------------------------------------------
# versions and metadata


async def test_version_mismatch_is_degraded_until_the_server_follows_the_alias(tmp_path: Path) -> None:
    promote(tmp_path, 2)
    with FaultServer(versions=["1"]) as srv:
        async with Poller(settings(tmp_path, [{"name": "e", "url": srv.url}])) as p:
            (snap,) = await p.poll_once()
            assert snap.status == DEGRADED
            assert snap.reason == "serves version 1, production alias is 2"
            assert snap.served_version == "1" and snap.registry_version == "2" and snap.version_mismatch
            srv.versions = ["2"]
            (snap,) = await p.poll_once()  # a mismatch re-reads the metadata every poll
            assert snap.status == UP and snap.served_version == "2" and not snap.version_mismatch


async def test_aliases_given_by_the_caller(tmp_path: Path) -> None:
    with FaultServer(versions=[]) as srv:
        srv.routes["/v2/models/m/versions/7/ready"] = Reply(200)
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}])
        async with Poller(cfg, registry_path=tmp_path / "none" / "none.db", aliases={("m", "production"): 7}) as p:
            (snap,) = await p.poll_once()
        assert snap.registry_version == "7" and snap.served_version == "7" and snap.status == UP
        assert not (tmp_path / "none").exists()


async def test_metadata_only_when_it_may_have_changed(tmp_path: Path) -> None:
    with FaultServer() as srv:
        async with Poller(settings(tmp_path, [{"name": "e", "url": srv.url}]), metadata_every=5) as p:
            for _ in range(5):
                await p.poll_once()
            assert srv.hits["/v2/models/m"] == 1
            assert srv.hits["/v2/health/live"] == 1
            assert srv.hits["/v2/models/m/ready"] == 5
            await p.poll_once()  # a full poll every 5 polls
            assert srv.hits["/v2/models/m"] == 2
            srv.routes["/v2/models/m/ready"] = Reply(503)
            (snap,) = await p.poll_once()
            assert snap.status == DOWN
            srv.routes.clear()
            (snap,) = await p.poll_once()  # after being down: full
            assert snap.status == UP and srv.hits["/v2/models/m"] == 3
            promote(tmp_path, 1)
            await asyncio.sleep(0.25)  # aliases are re-read at most every half interval
            (snap,) = await p.poll_once()  # the alias moved: full
            assert srv.hits["/v2/models/m"] == 4 and snap.registry_version == "1"


async def test_a_server_without_versions_in_its_metadata_is_asked_by_version(tmp_path: Path) -> None:
    # MLServer lists dependency versions (if any) in metadata; the model version answers on
    # /v2/models/{m}/versions/{v}/ready.
    promote(tmp_path, 3)
    with FaultServer(versions=[]) as srv:
        srv.routes["/v2/models/m"] = Reply(200, json.dumps({"name": "m", "versions": ["sklearn/1.5.0"]}),
                                           "application/json")
        srv.routes["/v2/models/m/versions/3/ready"] = Reply(200)
        async with Poller(settings(tmp_path, [{"name": "e", "url": srv.url}])) as p:
            (snap,) = await p.poll_once()
            assert snap.status == UP and snap.served_version == "3" and snap.served_versions == ("3",)
            # 404: the server has no version 3, which the registry says it serves -> DEGRADED
            srv.routes["/v2/models/m/versions/3/ready"] = Reply(404)
            p.poll_now()
            (snap,) = await p.poll_once()
            assert snap.status == DEGRADED and snap.served_version is None
            assert "does not serve version 3, the production alias" in snap.reason
            # any other answer proves nothing either way: UP, with a note
            srv.routes["/v2/models/m/versions/3/ready"] = Reply(500)
            p.poll_now()
            (snap,) = await p.poll_once()
            assert snap.status == UP and snap.served_version is None
            assert "version 3 not confirmed" in snap.reason


# ---------------------------------------------------------------------------------------------
# headers


async def test_headers_expand_variables_that_never_reach_reasons_or_storage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("MD_TEST_TOKEN", secret)
    with FaultServer() as srv:
        srv.routes["/v2/models/m"] = Reply(500, f"bad token {secret}")
        eps = [{"name": "e", "url": srv.url, "headers": {"Authorization": "Bearer ${MD_TEST_TOKEN}"}},
               {"name": "unset", "url": srv.url, "headers": {"X-Key": "${MD_TEST_UNSET}"}}]
        async with Poller(settings(tmp_path, eps)) as p:
            snaps = by_name(await p.poll_once())
            assert await p.store_now() == 2
        assert srv.headers_seen[0]["authorization"] == f"Bearer {secret}"
        assert snaps["e"].status == DOWN and snaps["e"].reason == "/v2/models/m answered 500"
        assert snaps["unset"].status == DOWN
        assert "MD_TEST_UNSET is not set" in snaps["unset"].reason
        assert all("x-key" not in h for h in srv.headers_seen)
    raw = (tmp_path / "registry.db").read_bytes()
    assert secret.encode() not in raw
    assert secret not in json.dumps([s.to_dict() for s in snaps.values()])


# ---------------------------------------------------------------------------------------------
# running: schedule, backoff, thread safety


async def test_run_backs_off_a_down_endpoint_and_never_lets_a_hung_one_delay_the_others(tmp_path: Path) -> None:
    seen: dict[str, list[float]] = {"ok": [], "refused": [], "hung": []}
    with servers(2) as (ok, hung):
        hung.default = HANG
        eps = [{"name": "ok", "url": ok.url}, {"name": "refused", "url": refused_url()},
               {"name": "hung", "url": hung.url}]
        cfg = settings(tmp_path, eps, interval=0.1, timeout=0.8, max_backoff=0.8)
        p = Poller(cfg, on_snapshot=lambda s: seen[s.endpoint].append(time.monotonic()))
        task = asyncio.ensure_future(p.run())
        await asyncio.sleep(2.0)
        p.stop()
        await asyncio.wait_for(task, 5)
        await p.aclose()
    # about every 0.1 s, whatever the hung endpoint does (held up by its 0.8 s timeouts it would
    # be polled twice or three times)
    assert len(seen["ok"]) >= 8
    gaps = sorted(b - a for a, b in zip(seen["ok"], seen["ok"][1:]))
    assert gaps[len(gaps) // 2] < 0.3
    assert 3 <= len(seen["refused"]) <= 7  # 0.1, 0.2, 0.4, 0.8, 0.8 ... apart
    assert len(seen["hung"]) <= 3
    assert len(p.history("ok")) == len(seen["ok"])


def test_thread_safe_controls_from_another_thread(tmp_path: Path) -> None:
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}], interval=0.3, history=5)
        threads: set[int] = set()
        p = Poller(cfg, on_snapshot=lambda s: threads.add(threading.get_ident()))
        assert p.latest()["e"].status == PENDING

        def main() -> None:
            asyncio.run(p.run())

        th = threading.Thread(target=main)
        th.start()
        try:
            deadline = time.monotonic() + 5
            while p.latest()["e"].status == PENDING and time.monotonic() < deadline:
                time.sleep(0.02)
            assert p.latest()["e"].status == UP
            p.pause()
            assert p.paused
            time.sleep(0.15)
            n = srv.hits["/v2/models/m/ready"]
            time.sleep(0.4)
            assert srv.hits["/v2/models/m/ready"] == n  # paused: no polls
            full = srv.hits["/v2/models/m"]
            p.poll_now()  # polls once even while paused, fully
            deadline = time.monotonic() + 3
            while srv.hits["/v2/models/m"] == full and time.monotonic() < deadline:
                time.sleep(0.02)
            assert srv.hits["/v2/models/m"] == full + 1
            p.set_interval(0.1)
            p.resume()
            time.sleep(0.7)
            assert srv.hits["/v2/models/m/ready"] >= n + 4  # every 0.1 s now (at 0.3 s: 2 or 3)
            assert len(p.history("e")) == 5  # bounded by poll.history
            assert p.interval == 0.1
        finally:
            p.stop()
            th.join(5)
        assert not th.is_alive()
        assert threads and threading.get_ident() not in threads and len(threads) == 1


# ---------------------------------------------------------------------------------------------
# storage


async def test_snapshots_are_stored_and_seed_a_new_pollers_history(tmp_path: Path) -> None:
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}], interval=0.05, store_interval=0.2,
                       retention_hours=1)
        p = Poller(cfg)
        task = asyncio.ensure_future(p.run())
        await asyncio.sleep(1.0)
        p.stop()
        await task
        await p.aclose()
        with Registry(tmp_path / "registry.db") as r:
            rows = r.snapshots("e")
        assert 3 <= len(rows) <= 8  # about one per store interval, not one per poll
        assert rows[-1]["status"] == UP and rows[-1]["_source"] == "tui"
        async with Poller(cfg) as p2:
            await p2.poll_once()
            h = p2.history("e")
        assert [s.source for s in h[:-1]] == ["stored"] * len(rows)
        assert h[-1].source == "live" and h[0].status == UP
        assert h[0].taken_at == pytest.approx(rows[0]["taken_at"])


async def test_a_locked_registry_delays_only_the_writer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    promote(tmp_path, 1)
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}], interval=0.05, store_interval=0.1)
        got: list[float] = []
        p = Poller(cfg, on_snapshot=lambda s: got.append(time.monotonic()))
        locker = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            task = asyncio.ensure_future(p.run())
            await asyncio.sleep(1.0)
            n_locked = len(got)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        await asyncio.sleep(0.6)
        p.stop()
        await task
        await p.aclose()
        assert n_locked >= 10  # polling went on while the registry was locked
        with Registry(tmp_path / "registry.db") as r:
            assert len(r.snapshots("e")) >= 1  # stored once the lock was released


async def test_registry_errors_are_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "registry.db"
    bad.write_bytes(b"this is not a database, not even close" * 10)
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url}])
        with caplog.at_level(logging.WARNING, logger="modeldeck.poller"):
            async with Poller(cfg) as p:
                (snap,) = await p.poll_once()
                assert snap.status == UP
                assert await p.store_now() == 0
        assert "not a modeldeck registry" in caplog.text


# ---------------------------------------------------------------------------------------------
# values


def test_snapshot_is_frozen_and_round_trips_through_json() -> None:
    drift = DriftSummary(n_columns=3, n_drifted=1, dataset_drift=False, drift_share=1 / 3, worst_psi=0.4,
                         worst_psi_column="x", computed_at=1.7e9, result={"columns": [{"psi": float("nan")}]})
    s = EndpointSnapshot(endpoint="e", model="m", environment="production", taken_at=1.7e9, duration_ms=3.0,
                         status=UP, reason="ready", live=True, ready=True, model_ready=True,
                         served_version="2", served_versions=("2",), registry_version="2", request_rate=4.0,
                         error_ratio=float("nan"), latency_p95_ms=12.0, profile="mlserver", drift=drift)
    with pytest.raises(AttributeError):
        s.status = DOWN  # type: ignore[misc]
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert d["error_ratio"] is None and d["drift"]["result"]["columns"][0]["psi"] is None
    assert d["taken_at_utc"].endswith("Z")
    back = EndpointSnapshot.from_dict(d)
    assert back.served_versions == ("2",) and back.drift is not None and back.drift.worst_psi == 0.4
    assert back.request_rate == 4.0 and back.status == UP
    stored = {**d, "taken_at": "2023-11-14T22:13:20.000000Z", "_source": "tui", "unknown": 1}
    assert EndpointSnapshot.from_dict(stored).taken_at == pytest.approx(1.7e9)
    assert s.to_dict(drift_result=False)["drift"]["result"] == {}


# ---------------------------------------------------------------------------------------------
# drift


async def test_drift_every_n_polls_against_the_served_versions_reference(tmp_path: Path) -> None:
    pytest.importorskip("modeldeck.core.drift")
    pytest.importorskip("modeldeck.core.capture")
    import numpy as np

    rng = np.random.default_rng(4)
    ref = tmp_path / "reference.csv"
    cur = tmp_path / "capture.csv"
    ref.write_text("x,y\n" + "\n".join(f"{a:.4f},{b:.4f}" for a, b in rng.normal(0, 1, (2000, 2))) + "\n")
    cur.write_text("x,y\n" + "\n".join(f"{a + 3:.4f},{b:.4f}" for a, b in rng.normal(0, 1, (600, 2))) + "\n")
    promote(tmp_path, 1, reference=str(ref))
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url, "capture": str(cur)}], drift_every=2,
                       drift_window=500)
        async with Poller(cfg) as p:
            (s1,) = await p.poll_once()
            assert s1.drift is None
            await p.poll_once()  # the 2nd poll starts a comparison in a worker thread
            deadline = time.monotonic() + 20
            snap = s1
            while snap.drift is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                (snap,) = await p.poll_once()
    d = snap.drift
    assert d is not None and d.error is None, d
    assert d.n_columns == 2 and d.n_drifted == 1 and d.worst_psi_column == "x"
    assert d.worst_psi is not None and d.worst_psi > 0.25 and d.version == "1"
    assert d.window_rows == 500 and d.result["columns"]


# quality


async def test_quality_every_n_polls_judged_against_the_served_versions_registered_metrics(tmp_path: Path) -> None:
    import numpy as np

    from modeldeck.core import judge

    rng = np.random.default_rng(8)
    n = 400
    y = (rng.random(n) < 0.5).astype(int)
    pred = np.where(rng.random(n) < 0.7, y, 1 - y)  # 70 % right
    cur = tmp_path / "capture.csv"
    cur.write_text("id,x,prediction\n" + "".join(f"q{i},{rng.normal():.3f},{p}\n" for i, p in enumerate(pred)))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"q{i},{v}\n" for i, v in enumerate(y)) + "ghost,1\n")
    promote(tmp_path, 1)
    with Registry(tmp_path / "registry.db") as r:
        r.record_evaluation("m", 1, {"accuracy": 0.93}, dataset_sha256="cd" * 32, dataset_rows=500, source="evaluate")
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url, "capture": str(cur), "labels": str(labels),
                                   "label_id_column": "id"}], quality_every=2, drift_every=1000)
        async with Poller(cfg) as p:
            (s1,) = await p.poll_once()
            assert s1.quality is None
            await p.poll_once()
            deadline = time.monotonic() + 20
            snap = s1
            while snap.quality is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                (snap,) = await p.poll_once()
    q = snap.quality
    assert q is not None and q.error is None and q.version == "1" and q.status == "measured", q
    doc = q.result
    assert doc["rows"] == n and doc["counts"]["labels_without_prediction"] == 1
    assert doc["registered"]["metrics"] == {"accuracy": 0.93}
    assert abs(doc["metrics"]["accuracy"]["value"] - float((pred == y).mean())) < 1e-12
    verdicts = judge.verdicts(snap, cfg.endpoints[0].thresholds)
    assert [v.key for v in verdicts] == ["quality"] and verdicts[0].level == "CRITICAL"
    assert judge.level(snap, cfg.endpoints[0].thresholds) == "CRITICAL"
    back = EndpointSnapshot.from_dict(json.loads(json.dumps(snap.to_dict())))  # stored and read back: judged alike
    assert judge.verdicts(back, cfg.endpoints[0].thresholds) == verdicts


async def test_quality_history_keeps_each_measurement_bounded_like_the_history(tmp_path: Path) -> None:
    """Every quality measurement is kept (oldest first, at most poll.history of them); stored
    snapshots seed it at start."""
    import numpy as np

    n = 300
    rng = np.random.default_rng(4)
    y = (rng.random(n) < 0.5).astype(int)
    cur = tmp_path / "capture.csv"
    cur.write_text("id,x,prediction\n" + "".join(f"q{i},{rng.normal():.3f},{v}\n" for i, v in enumerate(y)))
    labels = tmp_path / "labels.csv"
    promote(tmp_path, 1)
    wrong_by_round = [0, 30, 60, 90, 120]  # the labels are rewritten each round: accuracy 1.0, 0.9, ... 0.6
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url, "capture": str(cur), "labels": str(labels),
                                   "label_id_column": "id"}], quality_every=1, drift_every=1000, history=3)
        async with Poller(cfg) as p:
            for wrong in wrong_by_round:
                flipped = np.where(np.arange(n) < wrong, 1 - y, y)
                labels.write_text("id,label\n" + "".join(f"q{i},{v}\n" for i, v in enumerate(flipped)))
                want = 1.0 - wrong / n
                await p.poll_once()  # starts a measurement (none is running)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    kept = p.quality_history("e")
                    if kept and kept[-1].value("accuracy") == pytest.approx(want, abs=1e-12):
                        break
                    await asyncio.sleep(0.05)
            kept = p.quality_history("e")
            (snap,) = await p.poll_once()
            assert len(p.history("e")) == 3
            await p.store_now()
    assert [round(pt.value("accuracy") or -1, 6) for pt in kept] == [0.8, 0.7, 0.6]
    assert [pt.computed_at for pt in kept] == sorted(pt.computed_at for pt in kept)
    assert all(pt.status == "measured" and pt.rows == n and pt.version == "1" for pt in kept)
    assert p.quality_history("nosuch") == ()
    # a new poller over the same registry starts with the stored snapshot's measurement
    q = snap.quality
    assert q is not None
    with FaultServer() as srv:
        cfg = settings(tmp_path, [{"name": "e", "url": srv.url, "capture": str(cur), "labels": str(labels),
                                   "label_id_column": "id"}], quality_every=0, drift_every=1000, history=3)
        async with Poller(cfg) as p2:
            await p2.poll_once()
            seeded = p2.quality_history("e")
    assert [(pt.computed_at, pt.value("accuracy")) for pt in seeded] == [(q.computed_at, kept[-1].value("accuracy"))]


async def test_a_refresh_makes_way_while_the_process_is_busy_and_not_for_ever(tmp_path: Path) -> None:
    from modeldeck.core import poller as poller_mod

    p = Poller(settings(tmp_path, [{"name": "a", "url": refused_url()}]), aliases={})
    await p.breathe()  # nothing busy: no wait
    assert p._breathed == 0.0
    flags = iter([True, True, True, False])
    p.busy = lambda: next(flags)
    await p.breathe()  # busy for three looks, then free
    assert p._breathed == pytest.approx(3 * poller_mod.BREATHE_STEP)
    p.busy = lambda: True  # busy for ever: at most BREATHE_MAX in all, then the refresh goes on
    await p.breathe()
    assert poller_mod.BREATHE_MAX <= p._breathed < poller_mod.BREATHE_MAX + 2 * poller_mod.BREATHE_STEP
    await p.breathe()
    assert p._breathed < poller_mod.BREATHE_MAX + 2 * poller_mod.BREATHE_STEP
