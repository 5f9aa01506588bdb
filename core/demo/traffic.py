"""The demo's traffic: steady OIP v2 inference requests built from the synthetic worlds, the
scenario clock that shifts them, and the ground truth for every answered request.

Each endpoint gets a few sender threads with their own keep-alive connection, sending at a
Poisson rate; a stall (a slow version) does not turn into a burst afterwards. When the
scenario's drift time has passed, an endpoint marked ``drifts`` sends rows from the drifted
world instead (inputs and ground truth both follow it: the drifted world has its own relation,
so a model trained before the drift loses accuracy). The labels of answered requests are
written as SageMaker ground truth, keyed by the request id the server writes as the capture's
event id, ``label_delay`` seconds after the answer (delayed ground truth, as labels arrive in
life; ``eventMetadata.labelTime`` says when).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from modeldeck.core.demo.datasets import World
from modeldeck.core.demo.models import request_body
from modeldeck.core.demo.recorder import RotatingJsonl, ground_truth_record

log = logging.getLogger("modeldeck.demo")


class Scenario:
    """The story's clock, started when the fleet is ready. A negative time turns that part
    of the story off."""

    def __init__(self, drift_at: float = 10.0, errors_at: float = 15.0, error_rate: float = 0.3) -> None:
        self.drift_at = drift_at
        self.errors_at = errors_at
        self.error_rate = error_rate
        self.t0: float | None = None

    def start(self) -> None:
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def drifting(self) -> bool:
        return self.t0 is not None and self.drift_at >= 0 and self.elapsed() >= self.drift_at

    def error_ratio(self) -> float:
        if self.t0 is None or self.errors_at < 0 or self.elapsed() < self.errors_at:
            return 0.0
        return self.error_rate

    def describe(self) -> dict[str, Any]:
        return {"drift_at": self.drift_at, "errors_at": self.errors_at, "error_rate": self.error_rate,
                "elapsed": round(self.elapsed(), 1)}


class RowStream:
    """An endless, thread-safe supply of labelled rows from one world (normal or drifted),
    generated in chunks with successive seeds."""

    CHUNK = 2048

    def __init__(self, world: World, seed: int, *, drift: bool) -> None:
        self.world = world
        self.seed = seed
        self.drift = drift
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._i = 0
        self._chunk = 0

    def next(self) -> dict[str, Any]:
        with self._lock:
            if self._i >= len(self._rows):
                cols = self.world.rows(self.CHUNK, self.seed * 1000 + self._chunk, drift=self.drift)
                self._chunk += 1
                lists = {k: v.tolist() for k, v in cols.items()}
                self._rows = [dict(zip(lists, vals)) for vals in zip(*lists.values())]
                self._i = 0
            row = self._rows[self._i]
            self._i += 1
            return row


@dataclass
class TrafficStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0  # HTTP errors (4xx/5xx)
    unreachable: int = 0  # connection errors
    drifted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "ok": self.ok, "failed": self.failed, "unreachable": self.unreachable,
                "drifted": self.drifted}


class TrafficStream:
    """Steady requests to one endpoint."""

    def __init__(self, name: str, port: int, served_model: str, world: World, rate: float, scenario: Scenario,
                 *, drifts: bool = False, ground_truth: RotatingJsonl | None = None, seed: int = 0,
                 workers: int = 2, label_delay: float = 0.0) -> None:
        self.name = name
        self.port = port
        self.path = f"/v2/models/{served_model}/infer"
        self.world = world
        self.rate = max(0.0, float(rate))
        self.scenario = scenario
        self.drifts = drifts
        self.ground_truth = ground_truth
        self.workers = max(1, workers)
        self.normal = RowStream(world, seed * 2 + 1, drift=False)
        self.shifted = RowStream(world, seed * 2 + 2, drift=True)
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seed = seed
        self.label_delay = max(0.0, float(label_delay))
        self._pending: deque[tuple[float, str, Any]] = deque()  # (due, request id, label), in due order
        self._pending_lock = threading.Lock()

    def start(self) -> None:
        if self.rate <= 0:
            return
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), name=f"traffic-{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=3)

    def _run(self, i: int) -> None:
        rng = random.Random(self._seed * 100 + i)
        mean_gap = self.workers / self.rate
        conn: http.client.HTTPConnection | None = None
        next_t = time.monotonic() + rng.uniform(0, mean_gap)
        while not self._stop.is_set():
            self._flush_labels()
            now = time.monotonic()
            if next_t > now:
                self._stop.wait(min(next_t - now, 0.5))
                continue
            if now - next_t > 2.0:  # after a stall, resume the rate instead of bursting
                next_t = now
            next_t += rng.expovariate(1.0 / mean_gap)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                self._send(conn)
            except (OSError, http.client.HTTPException):
                self.stats.add(unreachable=1)
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                self._stop.wait(0.2)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _send(self, conn: http.client.HTTPConnection) -> None:
        drifted = self.drifts and self.scenario.drifting()
        row = (self.shifted if drifted else self.normal).next()
        req_id = uuid.uuid4().hex
        cols = {f: [row[f]] for f in self.world.features}
        # bytes, so http.client sends headers and body in one segment (no Nagle/delayed-ACK stall)
        body = json.dumps(request_body(cols, self.world.categorical, req_id), separators=(",", ":")).encode()
        conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        self.stats.add(sent=1, drifted=int(drifted))
        if resp.status != 200:
            self.stats.add(failed=1)
            return
        self.stats.add(ok=1)
        if self.ground_truth is not None:
            label = row[self.world.target]
            if self.label_delay <= 0:
                self._write_label(req_id, label, time.time())
            else:
                with self._pending_lock:
                    self._pending.append((time.time() + self.label_delay, req_id, label))

    def _flush_labels(self) -> None:
        """Write the labels whose time has come (the ground truth arriving)."""
        if not self._pending:
            return
        now = time.time()
        due: list[tuple[float, str, Any]] = []
        with self._pending_lock:
            while self._pending and self._pending[0][0] <= now:
                due.append(self._pending.popleft())
        for at, req_id, label in due:
            self._write_label(req_id, label, at)

    def _write_label(self, req_id: str, label: Any, at: float) -> None:
        assert self.ground_truth is not None
        try:
            self.ground_truth.write(ground_truth_record(req_id, [label], ts=at))
        except OSError as e:
            log.warning("%s: cannot write ground truth: %s", self.name, e)
