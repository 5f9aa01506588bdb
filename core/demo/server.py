"""One demo model server: Open Inference Protocol v2 over HTTP on one loopback port, and
Prometheus metrics on a second port (as MLServer's ``metrics_port``), in MLServer's names.

Routes (HTTP/1.1 keep-alive; health answers have empty bodies, as MLServer's):

- ``GET /v2/health/live`` 200; ``GET /v2/health/ready`` 200, or 400 while no model is loaded;
- ``GET /v2/models/{m}/ready`` (and ``/versions/{v}/ready``) 200, 400 while loading, 404 unknown;
- ``GET /v2/models/{m}`` metadata ``{"name", "versions", "platform", "inputs", "outputs", ...}``;
- ``POST /v2/models/{m}/infer`` (and ``/versions/{v}/infer``): OIP v2 request and response,
  the response naming ``model_version``; ``GET /v2`` server metadata.

Metrics (one ``CollectorRegistry`` per server): ``model_infer_request_success_total``,
``model_infer_request_failure_total`` and the ``model_infer_request_duration`` summary labelled
``model``/``version`` as MLServer 1.7 labels them; ``rest_server_requests_total`` and the
``rest_server_request_duration_seconds`` histogram labelled by ``method``, templated ``path``,
``status_code`` and ``app_name`` (model health checks included, server health checks and
/metrics skipped, as MLServer's middleware does); ``rest_server_requests_in_progress``; the
process, platform and GC collectors.

Each successful inference is written as a SageMaker data-capture record when a capture writer
is given (the request and response bodies as sent).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
    generate_latest,
)

from modeldeck.core.demo.models import LoadedVersion, RequestError, columns_from_request, predict
from modeldeck.core.demo.recorder import RotatingJsonl, capture_record

log = logging.getLogger("modeldeck.demo")

APP_NAME = "modeldeck-demo"
MAX_BODY = 4 << 20
_MODEL_ROUTE = re.compile(r"^/v2/models/(?P<m>[^/]+)(?:/versions/(?P<v>[^/]+))?(?P<rest>/ready|/infer)?$")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: DemoServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # no tracebacks on stderr
        log.debug("%s: connection error from %s", self.owner.name, client_address, exc_info=True)


class ErrorScenario:
    """Decides whether one inference fails on purpose (the scenario's error ratio, or the
    served version's ``demo_fault``)."""

    def __init__(self, ratio: Callable[[], float] | None = None, seed: int = 0) -> None:
        self._ratio = ratio or (lambda: 0.0)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def ratio(self) -> float:
        return self._ratio()


class DemoServer:
    """A model server on 127.0.0.1 (ephemeral ports). ``set_version`` swaps the served model
    atomically; requests in flight finish on the version they started with."""

    def __init__(self, name: str, served_model: str, *, capture: RotatingJsonl | None = None,
                 errors: ErrorScenario | None = None, seed: int = 0) -> None:
        self.name = name
        self.served_model = served_model
        self.capture = capture
        self.errors = errors or ErrorScenario(seed=seed)
        self.current: LoadedVersion | None = None
        self.load_error: str | None = None
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self._rng = random.Random(seed + 1)
        self.metrics = CollectorRegistry()
        labels = ["model", "version"]
        self.m_success = Counter("model_infer_request_success", "Model infer request success count", labels,
                                 registry=self.metrics)
        self.m_failure = Counter("model_infer_request_failure", "Model infer request failure count", labels,
                                 registry=self.metrics)
        self.m_duration = Summary("model_infer_request_duration", "Model infer request duration", labels,
                                  registry=self.metrics)
        rest = ["method", "path", "status_code", "app_name"]
        self.m_requests = Counter("rest_server_requests", "Total HTTP requests", rest, registry=self.metrics)
        self.m_latency = Histogram("rest_server_request_duration_seconds",
                                   "HTTP request duration, in seconds", rest, registry=self.metrics)
        self.m_in_progress = Gauge("rest_server_requests_in_progress", "Total HTTP requests currently in progress",
                                   ["method", "app_name"], registry=self.metrics)
        ProcessCollector(registry=self.metrics)
        PlatformCollector(registry=self.metrics)
        GCCollector(registry=self.metrics)
        self.http = _HTTPServer(_Handler, self)
        self.metrics_http = _HTTPServer(_MetricsHandler, self)
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self.http.server_address[1])

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_http.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        for srv, what in ((self.http, "http"), (self.metrics_http, "metrics")):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"{self.name}-{what}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        for srv in (self.http, self.metrics_http):
            with contextlib.suppress(Exception):
                srv.shutdown()
            with contextlib.suppress(Exception):
                srv.server_close()
        for t in self._threads:
            t.join(timeout=2)

    def set_version(self, loaded: LoadedVersion) -> None:
        before = self.current
        self.current = loaded
        self.load_error = None
        if self.ready_at is None and loaded.fault != "unready":
            self.ready_at = time.monotonic()
        if before is None or before.version != loaded.version or before.fault != loaded.fault:
            fault = f" (demo_fault={loaded.fault})" if loaded.fault else ""
            log.info("%s now serves %s version %s%s", self.name, loaded.model, loaded.version, fault)

    @property
    def ready(self) -> bool:
        cur = self.current
        return cur is not None and cur.fault != "unready"

    # -- request handling ---------------------------------------------------------------------
    def model_route(self, path: str) -> tuple[str, str | None, str] | None:
        m = _MODEL_ROUTE.match(path)
        if not m:
            return None
        return m.group("m"), m.group("v"), m.group("rest") or ""

    def infer(self, model: str, version: str | None, raw: bytes) -> tuple[int, dict[str, Any]]:
        cur = self.current
        if model != self.served_model:
            return 404, {"error": f"Model {model} with version {version or ''} not found"}
        if cur is None or cur.fault == "unready":
            return 400, {"error": f"Model {model} is not ready yet"}
        if version is not None and version != cur.version:
            return 404, {"error": f"Model {model} with version {version} not found"}
        labels = (cur.model, cur.version)
        t0 = time.perf_counter()
        try:
            try:
                body = json.loads(raw)
            except ValueError:
                raise RequestError("the request body is not valid JSON") from None
            x, _n = columns_from_request(body, cur)
            draw = self.errors.draw()
            if draw < self.errors.ratio():
                time.sleep(0.02 + 0.05 * self._rng.random())  # a dependency timing out
                raise _Failure("upstream feature store timed out (merchant_risk)")
            if cur.fault == "errors" and self._rng.random() < 0.5:
                raise _Failure(f"demo_fault=errors on version {cur.version}")
            if cur.fault == "slow" and self._rng.random() < 0.25:
                time.sleep(0.6 + 0.4 * self._rng.random())
            outputs = predict(cur, x)
        except RequestError as e:
            self.m_failure.labels(*labels).inc()
            return 400, {"error": str(e)}
        except _Failure as e:
            self.m_failure.labels(*labels).inc()
            return 500, {"error": str(e)}
        except Exception as e:  # the model itself failed
            log.warning("%s: inference failed: %s", self.name, e)
            self.m_failure.labels(*labels).inc()
            return 500, {"error": f"inference failed: {type(e).__name__}"}
        self.m_success.labels(*labels).inc()
        self.m_duration.labels(*labels).observe(time.perf_counter() - t0)
        req_id = body.get("id") if isinstance(body.get("id"), str) else None
        resp = {"model_name": model, "model_version": cur.version, "id": req_id or str(uuid.uuid4()),
                "parameters": {"content_type": "pd"}, "outputs": outputs}
        return 200, resp

    def record(self, raw: bytes, response: bytes, request_id: str | None) -> None:
        if self.capture is None:
            return
        eid = request_id or str(uuid.uuid4())
        try:
            self.capture.write(capture_record(eid, raw.decode("utf-8", "replace"),
                                              response.decode("utf-8", "replace"), inference_id=request_id))
        except OSError as e:  # a full disk must not fail the inference
            log.warning("%s: cannot write capture: %s", self.name, e)

    def metadata(self, model: str, version: str | None) -> tuple[int, dict[str, Any]]:
        cur = self.current
        if model != self.served_model or (version is not None and (cur is None or version != cur.version)):
            return 404, {"error": f"Model {model} with version {version or ''} not found"}
        if cur is None:
            return 200, {"name": model, "versions": [], "platform": "sklearn", "inputs": [], "outputs": []}
        return 200, {"name": model, "versions": [cur.version], "platform": "sklearn",
                     "inputs": cur.input_metadata(), "outputs": cur.output_metadata(),
                     "parameters": {"content_type": "pd"}}


class _Failure(Exception):
    pass


def _template(route: tuple[str, str | None, str]) -> str:
    _, version, rest = route
    base = "/v2/models/{model_name}" + ("/versions/{model_version}" if version is not None else "")
    return base + rest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "modeldeck-demo/1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> bytes:
        body = json.dumps(obj, separators=(",", ":")).encode()
        self._send(status, body)
        return body

    def _handle(self, method: str) -> None:
        owner = self.server.owner
        t0 = time.perf_counter()
        path = self.path.split("?", 1)[0]
        route = owner.model_route(path)
        template = _template(route) if route else None
        owner.m_in_progress.labels(method, APP_NAME).inc()
        status = 500
        try:
            status = self._dispatch(method, path, route)
        finally:
            owner.m_in_progress.labels(method, APP_NAME).dec()
            if template is not None:
                owner.m_requests.labels(method, template, str(status), APP_NAME).inc()
                owner.m_latency.labels(method, template, str(status), APP_NAME).observe(time.perf_counter() - t0)

    def _dispatch(self, method: str, path: str, route: tuple[str, str | None, str] | None) -> int:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._json(413, {"error": "request body too large"})
            return 413
        raw = self.rfile.read(length) if length else b""
        if method == "GET" and path == "/v2/health/live":
            self._send(200)
            return 200
        if method == "GET" and path == "/v2/health/ready":
            status = 200 if owner.ready else 400
            self._send(status)
            return status
        if method == "GET" and path == "/v2":
            self._json(200, {"name": APP_NAME, "version": "1", "extensions": []})
            return 200
        if route is None:
            self._json(404, {"detail": "Not Found"})
            return 404
        model, version, rest = route
        if rest == "/ready" and method == "GET":
            cur = owner.current
            if model != owner.served_model or (version is not None and cur is not None and version != cur.version):
                self._json(404, {"error": f"Model {model} with version {version or ''} not found"})
                return 404
            status = 200 if owner.ready else 400
            self._send(status)
            return status
        if rest == "" and method == "GET":
            status, obj = owner.metadata(model, version)
            self._json(status, obj)
            return status
        if rest == "/infer" and method == "POST":
            status, obj = owner.infer(model, version, raw)
            body = self._json(status, obj)
            if status == 200:
                owner.record(raw, body, obj.get("id"))
            return status
        self._json(405, {"detail": "Method Not Allowed"})
        return 405

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class _MetricsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            body = b'{"detail":"Not Found"}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
        else:
            body = generate_latest(self.server.owner.metrics)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
