"""A local ``mlflow server`` for the demo, the tests and the benchmark.

MLflow is never imported by modeldeck (importing it costs seconds and its dependencies weigh
hundreds of megabytes): a pinned ``mlflow`` lives in a virtualenv of its own,
``~/.cache/modeldeck/mlflow-<pin>`` (``$MODELDECK_MLFLOW_VENV`` overrides the place), made by
``tests/mlflow_venv.py`` (``make test`` runs it) or :func:`ensure_venv`. :func:`start` runs
``mlflow server --workers 1`` on loopback with an SQLite backend and a local artifact folder,
in a process group of its own so :meth:`MlflowServer.stop` ends the server and its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from modeldeck.core import paths
from modeldeck.core.errors import ModeldeckError

MLFLOW_PIN = "3.17.2"
ENV_VENV = "MODELDECK_MLFLOW_VENV"
READY_STAMP = ".modeldeck-ready"
READY_TIMEOUT = 90.0  # seconds the server may take to answer /health (7 s on an idle 2-core box)


class MlflowServerError(ModeldeckError):
    """The local MLflow virtualenv or server cannot be had; the message says why."""


def venv_dir() -> Path:
    explicit = os.environ.get(ENV_VENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    return paths.cache_dir() / f"mlflow-{MLFLOW_PIN}"


def failure_file(venv: Path | None = None) -> Path:
    v = venv or venv_dir()
    return v.with_name(v.name + ".failed")


def venv_ready(venv: Path | None = None) -> bool:
    v = venv or venv_dir()
    return (v / READY_STAMP).is_file() and (v / "bin" / "mlflow").is_file()


def why_not_ready(venv: Path | None = None) -> str:
    """One line: why there is no usable MLflow virtualenv (for a skipped test or the demo)."""
    v = venv or venv_dir()
    f = failure_file(v)
    if f.is_file():
        with contextlib.suppress(OSError):
            text = " ".join(f.read_text(errors="replace").split())[-300:]
            return f"creating the MLflow virtualenv {paths.display(v)} failed: {text}"
    return (f"no MLflow virtualenv at {paths.display(v)} (make it with: python tests/mlflow_venv.py, "
            f"or make test)")


def ensure_venv(venv: Path | None = None, *, python: str | None = None, log: Path | None = None) -> Path:
    """Create the pinned MLflow virtualenv unless it is ready (about a minute and 850 MB the
    first time). One creator at a time (a lock file); a half-made one is made again. Raises
    MlflowServerError with the reason (also written next to it for :func:`why_not_ready`)."""
    import fcntl
    import shutil

    v = venv or venv_dir()
    if venv_ready(v):
        return v
    v.parent.mkdir(parents=True, exist_ok=True)
    with open(v.with_name(v.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if venv_ready(v):
            return v
        if v.exists():
            shutil.rmtree(v, ignore_errors=True)
        out = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            py = python or sys.executable
            steps = [[py, "-m", "venv", str(v)],
                     [str(v / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      f"mlflow=={MLFLOW_PIN}"]]
            for argv in steps:
                r = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
                if r.returncode != 0:
                    tail = " ".join((r.stderr or "").split())[-400:]
                    reason = f"{' '.join(argv[-3:])} exited {r.returncode}: {tail or 'no output'}"
                    failure_file(v).write_text(reason + "\n")
                    raise MlflowServerError(f"cannot create the MLflow virtualenv {paths.display(v)}: {reason}")
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        (v / READY_STAMP).write_text(MLFLOW_PIN + "\n")
        with contextlib.suppress(OSError):
            failure_file(v).unlink()
    return v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """A running ``mlflow server``: ``url``, ``stop()``; a context manager."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, workdir: Path, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.workdir = workdir
        self.log_path = log_path
        self.artifacts = workdir / "artifacts"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """End the server and every process it started (its own process group)."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        # uvicorn's worker may outlive its parent for a moment: the group gets a last word
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(workdir: str | os.PathLike[str], *, venv: Path | None = None, ready_timeout: float = READY_TIMEOUT,
          attempts: int = 3) -> MlflowServer:
    """Start ``mlflow server --workers 1`` on 127.0.0.1 (an ephemeral port) with its SQLite
    file and artifacts in ``workdir``; return once it answers ``/health``. Its job runner is
    off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: four fewer processes)."""
    import httpx

    v = venv or venv_dir()
    if not venv_ready(v):
        raise MlflowServerError(why_not_ready(v))
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "artifacts").mkdir(exist_ok=True)
    env = {k: val for k, val in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    problem = ""
    for _ in range(max(1, attempts)):
        port = free_port()
        log_path = wd / "mlflow-server.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(v / "bin" / "mlflow"), "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
                 "--backend-store-uri", f"sqlite:///{(wd / 'mlflow.db').resolve()}",
                 "--default-artifact-root", str((wd / "artifacts").resolve()), "--no-serve-artifacts"],
                cwd=wd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        server = MlflowServer(proc, f"http://127.0.0.1:{port}", wd, log_path)
        deadline = time.monotonic() + ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    problem = f"mlflow server exited {proc.returncode}: {' '.join(server.log_tail(3).split())[-300:]}"
                    break
                try:
                    if client.get(server.url + "/health").status_code == 200:
                        return server
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            else:
                problem = f"mlflow server did not answer /health within {ready_timeout:.0f} s"
        server.stop()
        if "address already in use" not in server.log_tail(30).lower():
            break
    raise MlflowServerError(f"cannot start mlflow server in {paths.display(wd)}: {problem}")
