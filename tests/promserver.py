"""A real Prometheus (Debian's ``prometheus`` package) for tests and benchmarks.

:class:`PromServer` runs the binary on an ephemeral loopback port with its own temporary data
folder: scraping targets from a file-SD JSON file (:meth:`set_targets` rewrites it; Prometheus
picks the change up at once), or, with :func:`backfill`, serving exact data loaded with
``promtool tsdb create-blocks-from openmetrics``. :func:`skip_reason` says why tests cannot run
(no binary: ``make test`` installs it when run as root, see ``scripts/ensure-prometheus.sh``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modeldeck.core.demo.prometheus import launch, terminate

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)


def skip_reason() -> str | None:
    if PROMETHEUS is None or PROMTOOL is None:
        return ("Prometheus is not installed (Debian: apt-get install prometheus; `make test` does it "
                "when run as root)")
    return None


class PromServer:
    """``prometheus`` on 127.0.0.1:<ephemeral>, data in ``folder``. ``scrape_interval`` in
    seconds; targets are ``(host:port, labels)`` pairs."""

    def __init__(self, folder: Path, *, scrape_interval: float = 1.0, backfilled: bool = False,
                 metrics_path: str = "/metrics") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = self.folder / "data"
        self.targets_file = self.folder / "targets.json"
        self.scrape_interval = scrape_interval
        self.backfilled = backfilled
        self.metrics_path = metrics_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_targets(self, targets: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        groups = [{"targets": [addr], "labels": dict(labels)} for addr, labels in targets]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def _config(self) -> str:
        iv = f"{round(self.scrape_interval * 1000)}ms"  # Prometheus reads "500ms", not "0.5s"
        if self.backfilled:
            return "global:\n  scrape_interval: 1m\n"
        return (f"global:\n  scrape_interval: {iv}\n  scrape_timeout: {iv}\n"
                f"scrape_configs:\n  - job_name: fleet\n    metrics_path: {self.metrics_path}\n"
                f"    file_sd_configs:\n      - files: ['{self.targets_file}']\n        refresh_interval: 1s\n")

    def start(self, timeout: float = 30.0) -> PromServer:
        assert PROMETHEUS is not None
        if not self.targets_file.exists():
            self.set_targets([])
        cfg = self.folder / "prometheus.yml"
        cfg.write_text(self._config())
        self.proc, self.port = launch(PROMETHEUS, cfg, self.data, self.folder / "prometheus.log", timeout=timeout,
                                      args=("--storage.tsdb.retention.time=100y", "--web.enable-lifecycle",
                                            "--query.lookback-delta=5m"))
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        terminate(proc)

    def __enter__(self) -> PromServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The same PromQL, run directly (urllib, no modeldeck code): the result list."""
        form = {"query": expr}
        if at is not None:
            form["time"] = f"{at:.3f}"
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(self.url + "/api/v1/query", data=data, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        res = self.query(expr, at)
        return float(res[0]["value"][1]) if res else None

    def wait_for(self, expr: str, timeout: float = 30.0, *, at_least: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        res: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            res = self.query(expr)
            if len(res) >= at_least:
                return res
            time.sleep(0.2)
        raise AssertionError(f"prometheus: {expr} had {len(res)} series after {timeout} s")


def backfill(folder: Path, openmetrics: str) -> PromServer:
    """A Prometheus serving exactly ``openmetrics`` (text ending in ``# EOF``), loaded with
    promtool; not started yet."""
    assert PROMTOOL is not None
    server = PromServer(folder, backfilled=True)
    src = server.folder / "data.om"
    src.write_text(openmetrics)
    r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(src), str(server.data)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"promtool failed: {r.stderr[-500:]}")
    return server
