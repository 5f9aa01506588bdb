"""Real loopback HTTP servers for the release and retraining tests: a fake OIP v2 model
server with Prometheus metrics and a control route (what a deploy hook calls), a webhook
receiver that records what it got, and an Airflow-2-like REST API for DAG runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self) -> None:
                outer._dispatch(self, "GET", b"")

            def do_POST(self) -> None:
                outer._dispatch(self, "POST", self._body())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        status, payload, ctype = self.handle(method, h.path, dict(h.headers.items()), body)
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        raise NotImplementedError


class FakeModelServer(_Server):
    """OIP v2 health, readiness and metadata for one model, Triton-style Prometheus counters
    (50 requests per scrape, failing at the current version's error ratio), and
    ``POST /control`` with ``{"version": "2"}`` (a deploy) or ``{"down": true}``."""

    def __init__(self, model: str, version: str, *, error_ratio: dict[str, float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.version = version
        self.error_ratio = dict(error_ratio or {})
        self.down = False
        self.success: dict[str, float] = {}
        self.failure: dict[str, float] = {}
        self.deploys: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        j = "application/json"
        with self.lock:
            if method == "POST" and path == "/control":
                cmd = json.loads(body or b"{}")
                if "version" in cmd:
                    self.version = str(cmd["version"])
                    self.deploys.append(self.version)
                if "down" in cmd:
                    self.down = bool(cmd["down"])
                return 200, {"ok": True, "version": self.version}, j
            if self.down and path != "/metrics":
                return 503, {"error": "down"}, j
            m = self.model
            if path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{m}/ready"):
                return 200, b"", j
            if path == f"/v2/models/{m}":
                return 200, {"name": m, "versions": [self.version], "platform": "fake"}, j
            if path.startswith(f"/v2/models/{m}/versions/") and path.endswith("/ready"):
                v = path.split("/")[-2]
                return (200 if v == self.version else 404), b"", j
            if path == "/metrics":
                v = self.version
                er = self.error_ratio.get(v, 0.0)
                self.success[v] = self.success.get(v, 0.0) + round(50 * (1 - er))
                self.failure[v] = self.failure.get(v, 0.0) + round(50 * er)
                lines = ["# TYPE nv_inference_request_success counter",
                         "# TYPE nv_inference_request_failure counter"]
                for ver in sorted(self.success):
                    lab = f'{{model="{m}",version="{ver}"}}'
                    lines.append(f"nv_inference_request_success{lab} {self.success[ver]}")
                    lines.append(f"nv_inference_request_failure{lab} {self.failure[ver]}")
                return 200, "\n".join(lines) + "\n", "text/plain; version=0.0.4"
        return 404, {"error": f"no route {path}"}, j


class WebhookReceiver(_Server):
    """Records every request; answers ``status`` (and ``answer`` as JSON)."""

    def __init__(self, status: int = 200, answer: Any = None) -> None:
        super().__init__()
        self.status = status
        self.answer = answer if answer is not None else {"ok": True}
        self.requests: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        with self.lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
            return self.status, self.answer, "application/json"


class FakeAirflow(_Server):
    """Airflow 2's stable REST API for DAG runs, as much as a trigger needs:
    ``POST /api/v1/dags/{dag_id}/dagRuns`` (refuses unknown fields, as Airflow does) and
    ``GET /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}``. A run is ``queued``, then
    ``running``, then ``final`` after ``polls_to_finish`` status reads; ``on_finish(conf)``
    runs when it finishes (the DAG's last task, e.g. registering the new version)."""

    def __init__(self, *, final: str = "success", polls_to_finish: int = 2, auth: str | None = None,
                 on_finish: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.final = final
        self.polls_to_finish = polls_to_finish
        self.auth = auth
        self.on_finish = on_finish
        self.runs: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
        j = "application/json"
        if self.auth is not None and headers.get("Authorization") != self.auth:
            return 401, {"title": "Unauthorized", "status": 401}, j
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[:3] != ["api", "v1", "dags"] or parts[4] != "dagRuns":
            return 404, {"title": "Not Found", "status": 404}, j
        dag = parts[3]
        with self.lock:
            if method == "POST" and len(parts) == 5:
                data = json.loads(body or b"{}")
                self.posts.append({"headers": headers, "body": body, "json": data})
                unknown = set(data) - {"dag_run_id", "logical_date", "execution_date", "conf", "note"}
                if unknown:
                    return 400, {"title": "Bad Request", "detail": f"{sorted(unknown)}: Unknown field."}, j
                run_id = data.get("dag_run_id") or f"manual__{len(self.runs)}"
                if run_id in self.runs:
                    return 409, {"title": "Conflict", "status": 409}, j
                self.runs[run_id] = {"dag_id": dag, "dag_run_id": run_id, "state": "queued",
                                     "conf": data.get("conf") or {}, "reads": 0}
                return 200, self._public(run_id), j
            if method == "GET" and len(parts) == 6:
                from urllib.parse import unquote

                run_id = unquote(parts[5])
                run = self.runs.get(run_id)
                if run is None:
                    return 404, {"title": "DAGRun not found", "status": 404}, j
                run["reads"] += 1
                if run["state"] not in ("success", "failed"):
                    if run["reads"] >= self.polls_to_finish:
                        run["state"] = self.final
                        if self.on_finish is not None:
                            self.on_finish(run["conf"])
                    else:
                        run["state"] = "running"
                return 200, self._public(run_id), j
        return 405, {"title": "Method Not Allowed"}, j

    def _public(self, run_id: str) -> dict[str, Any]:
        r = self.runs[run_id]
        return {"dag_id": r["dag_id"], "dag_run_id": run_id, "state": r["state"], "conf": r["conf"],
                "logical_date": "2026-01-01T00:00:00+00:00", "external_trigger": True}
