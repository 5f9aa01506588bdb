"""What a data scientist's notebook does to MLflow, straight over its REST API (not through
modeldeck): runs with params, metrics, datasets and a git commit; versions; alias moves."""

from __future__ import annotations

import itertools
import os
import textwrap
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

_counter = itertools.count(1)


def unique(prefix: str = "m") -> str:
    """A model name no other test of this session uses (they share one server)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


class Notebook:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url + "/api/2.0/mlflow/", timeout=30)
        self._experiment: str | None = None

    def close(self) -> None:
        self.http.close()

    def _ok(self, r: httpx.Response) -> dict[str, Any]:
        assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}"
        return r.json()

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._ok(self.http.post(path, json=body))

    def experiment(self) -> str:
        if self._experiment is None:
            self._experiment = self.post("experiments/create", {"name": unique("exp")})["experiment_id"]
        return self._experiment

    def run(self, *, params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
            datasets: list[tuple[str, str, str]] = (), commit: str | None = None) -> str:
        """A finished run; ``datasets`` as (name, digest, context)."""
        tags = [{"key": "mlflow.source.git.commit", "value": commit}] if commit else []
        run = self.post("runs/create", {"experiment_id": self.experiment(), "run_name": unique("run"), "tags": tags})
        rid = run["run"]["info"]["run_id"]
        self.post("runs/log-batch", {"run_id": rid,
                                     "params": [{"key": k, "value": str(v)} for k, v in (params or {}).items()],
                                     "metrics": [{"key": k, "value": v, "timestamp": 0, "step": 0}
                                                 for k, v in (metrics or {}).items()]})
        if datasets:
            self.post("runs/log-inputs", {"run_id": rid, "datasets": [
                {"tags": [{"key": "mlflow.data.context", "value": ctx}],
                 "dataset": {"name": n, "digest": d, "source_type": "local",
                             "source": f'{{"uri": "/data/{n}.csv"}}'}} for n, d, ctx in datasets]})
        self.post("runs/update", {"run_id": rid, "status": "FINISHED"})
        return rid

    def model(self, name: str) -> None:
        self.post("registered-models/create", {"name": name})

    def version(self, name: str, source: str, run_id: str | None = None,
                tags: Mapping[str, str] | None = None) -> int:
        body: dict[str, Any] = {"name": name, "source": source}
        if run_id:
            body["run_id"] = run_id
        if tags:
            body["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        return int(self.post("model-versions/create", body)["model_version"]["version"])

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.post("registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_alias(self, name: str, alias: str) -> None:
        self._ok(self.http.request("DELETE", "registered-models/alias", json={"name": name, "alias": alias}))

    def alias(self, name: str, alias: str) -> int | None:
        r = self.http.get("registered-models/alias", params={"name": name, "alias": alias})
        if r.status_code != 200:
            return None
        return int(r.json()["model_version"]["version"])

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        d = self._ok(self.http.get("model-versions/get", params={"name": name, "version": str(version)}))
        return {t["key"]: t["value"] for t in d["model_version"].get("tags", [])}

    def delete_model(self, name: str) -> None:
        self._ok(self.http.request("DELETE", "registered-models/delete", json={"name": name}))


def write_config(tmp_path: Path, url: str, *, models: list[str] | None = None, extra: str = "",
                 aliases: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None) -> Path:
    lines = [f'registry = "{tmp_path / "ledger.db"}"', "[mlflow]", f'url = "{url}"', "timeout = 10"]
    if models is not None:
        lines.append("models = [" + ", ".join(f'"{m}"' for m in models) + "]")
    if aliases:
        lines.append("aliases = { " + ", ".join(f'{k} = "{v}"' for k, v in aliases.items()) + " }")
    if headers:
        lines.append("headers = { " + ", ".join(f'{k} = "{v}"' for k, v in headers.items()) + " }")
    p = tmp_path / "modeldeck.toml"
    p.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return p


class FaultProxy:
    """A real loopback HTTP proxy in front of the MLflow server that can go wrong on purpose:
    ``fail[part] = (status, body)`` answers requests whose "METHOD /path?query" contains
    ``part`` itself (401, 503, ...); ``delay[part] = seconds`` holds them first (slow); ``down = True`` closes every
    connection unanswered. ``seen`` lists (method, path) of what went through."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading

        self.upstream = upstream
        self.fail: dict[str, tuple[int, str]] = {}
        self.delay: dict[str, float] = {}
        self.down = False
        self.seen: list[tuple[str, str]] = []
        self.headers_seen: list[dict[str, str]] = []
        proxy = self
        client = httpx.Client(base_url=upstream, timeout=30)
        self._client = client

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                import time

                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path))
                proxy.headers_seen.append(dict(self.headers))
                if proxy.down:
                    self.close_connection = True
                    return
                what = f"{self.command} {self.path}"
                for part, seconds in list(proxy.delay.items()):
                    if part in what:
                        time.sleep(seconds)
                for part, (status, text) in list(proxy.fail.items()):
                    if part in what:
                        self._send(status, text.encode(), "application/json")
                        return
                try:
                    r = client.request(self.command, self.path, content=body,
                                       headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                except (httpx.HTTPError, RuntimeError):  # the upstream went away, or the proxy is closing
                    self._send(502, b"bad gateway", "text/plain")
                    return
                self._send(r.status_code, r.content, r.headers.get("content-type", "application/json"))

            def _send(self, status: int, content: bytes, ctype: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_DELETE = do_PATCH = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
