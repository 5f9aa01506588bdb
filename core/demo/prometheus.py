"""``modeldeck --demo --via-prometheus``: a real Prometheus (Debian's ``prometheus`` binary)
scraping the demo fleet, and the fleet's settings rewritten to read every endpoint's metrics
through PromQL (``core/promql.py``) while OIP health and metadata are still asked directly.

The Prometheus runs on 127.0.0.1 with an ephemeral port and its data in the demo's work folder,
scrapes each demo server's metrics every second (labels ``modeldeck_endpoint``, ``model``
stays the server's own, ``environment``), and is stopped with the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from modeldeck.core.config import PrometheusConfig, Settings
from modeldeck.core.errors import ModeldeckError
from modeldeck.core.promql import Matcher, selector_text

ENDPOINT_LABEL = "modeldeck_endpoint"
SCRAPE_INTERVAL = 1.0
WINDOW = "15s"


def binary() -> str | None:
    """The prometheus binary, or None (``apt-get install prometheus`` on Debian)."""
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(exe: str, config: Path, data: Path, logfile: Path, *, args: tuple[str, ...] = (),
           timeout: float = 30.0, attempts: int = 3) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``exe`` (prometheus) on 127.0.0.1 with an ephemeral port, ``config`` and its data in
    ``data``, output in ``logfile``; wait until ``/-/ready`` answers 200 (a port taken meanwhile
    is retried). Returns (process, port); raises ModeldeckError with the log's last line."""
    for _ in range(attempts):
        port = _free_port()
        with open(logfile, "wb") as log:
            proc = subprocess.Popen(
                [exe, f"--config.file={config}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return proc, port
            except OSError:
                time.sleep(0.1)
        terminate(proc)
    tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] if logfile.exists() else []
    raise ModeldeckError(f"prometheus did not start{': ' + tail[0][:200] if tail else ''}")


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a started Prometheus: SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait(5)


class DemoPrometheus:
    """A Prometheus scraping ``settings``' endpoints' ``metrics_url``; :meth:`start`, :meth:`stop`."""

    def __init__(self, settings: Settings, folder: str | os.PathLike[str]) -> None:
        self.settings = settings
        self.folder = Path(folder)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        iv = f"{SCRAPE_INTERVAL:g}s"
        jobs = []
        for ep in self.settings.endpoints:
            u = urlsplit(ep.metrics_url or ep.url + "/metrics")
            labels = {ENDPOINT_LABEL: ep.name, "environment": ep.environment}
            jobs.append(f"  - job_name: {json.dumps('demo-' + ep.name)}\n"
                        f"    metrics_path: {json.dumps(u.path or '/metrics')}\n"
                        f"    scheme: {u.scheme}\n"
                        f"    static_configs:\n"
                        f"      - targets: [{json.dumps(u.netloc)}]\n"
                        f"        labels: {json.dumps(labels)}\n")
        return (f"global:\n  scrape_interval: {iv}\n  scrape_timeout: {iv}\n"
                f"scrape_configs:\n{''.join(jobs)}")

    def start(self, timeout: float = 30.0) -> DemoPrometheus:
        exe = binary()
        if exe is None:
            raise ModeldeckError("--via-prometheus needs the prometheus binary (Debian: apt-get install prometheus)")
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "prometheus.yml"
        cfg.write_text(self._config())
        self.proc, self.port = launch(exe, cfg, self.folder / "data", self.folder / "prometheus.log",
                                      timeout=timeout, args=("--storage.tsdb.retention.time=1d",))
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        terminate(proc)

    def __enter__(self) -> DemoPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def via_prometheus(settings: Settings, url: str) -> Settings:
    """``settings`` with every endpoint's metrics read through the Prometheus at ``url``."""
    endpoints = tuple(replace(ep, metrics="prometheus", metrics_profile="mlserver", metrics_url="",
                              selector=selector_text([Matcher(ENDPOINT_LABEL, "=", ep.name)]))
                      for ep in settings.endpoints)
    seconds = float(WINDOW.rstrip("s"))
    return replace(settings, endpoints=endpoints,
                   prometheus=PrometheusConfig(url=url, window=WINDOW, window_seconds=seconds, timeout=2.0))
