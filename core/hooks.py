"""The hook machinery shared by deploys, evaluation (core.evaluation) and retraining: argv and URL
templating, webhook bodies, headers and HMAC signatures, a hook's environment and working
folder, starting a command in its own process group, streaming its output with a timeout,
stopping a process group, and whether a process is still there.

A hook is argv (never a shell: each template element stays one argument whatever the values
hold) or a webhook (a JSON POST, signed with ``X-Modeldeck-Signature: sha256=<HMAC>`` when a
secret is set). Header values and secrets hold ``${VAR}`` references that are expanded only
when a request is built (:func:`webhook_headers`); the result goes into the request only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modeldeck.core.config import Settings, WebhookConfig, check_header, expand
from modeldeck.core.errors import ConfigError
from modeldeck.core.registry import stored_time
from modeldeck.core.textfmt import duration, one_line

SIGNATURE_HEADER = "X-Modeldeck-Signature"
CANCEL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
ANSWER_LIMIT = 300  # characters of a webhook's answer that are quoted anywhere
ANSWER_BYTES = 1 << 20  # bytes of a webhook's answer that are read at all


# ---------------------------------------------------------------------------------------------
# templating, bodies, signatures


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_argv(template: Sequence[str], fields: Mapping[str, Any]) -> list[str]:
    """Fill ``{name}`` placeholders in each argument. Each template element stays exactly one
    argument whatever the values hold (spaces, quotes, ``;``): no shell ever sees it. Unknown
    placeholders and other braces (JSON) are left as written."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in fields:
            return m.group(0)
        value = fields[key]
        return "" if value is None else str(value)

    return [_FIELD.sub(sub, str(arg)) for arg in template]


def render_url(template: str, fields: Mapping[str, Any]) -> str:
    """Like :func:`render_argv` for one URL, with each value percent-quoted."""

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in fields:
            return m.group(0)
        return quote("" if fields[key] is None else str(fields[key]), safe="")

    return _FIELD.sub(sub, template)


def sign_body(secret: str, body: bytes) -> str:
    """The ``X-Modeldeck-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the HMAC over the raw body, compare in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(secret, body), header.strip())


def webhook_headers(hook: WebhookConfig, body: bytes, where: str) -> dict[str, str]:
    """Request headers for a webhook call: the configured ones (``${VAR}`` expanded only now;
    a value holding CR, LF or NUL after expansion is a ConfigError) and the signature when a
    secret is set. The result must never be logged."""
    headers = {"Content-Type": "application/json", "User-Agent": "modeldeck"}
    for k, v in hook.headers.items():
        key = f"{where}.headers.{k}"
        headers[k] = check_header(k, expand(v, key), key)
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign_body(expand(hook.secret, f"{where}.secret"), body)
    return headers


# The words before a credential in an Authorization value: not secret, and redacting them would
# shred every answer that mentions them.
_AUTH_SCHEMES = {"bearer", "basic", "token", "digest", "negotiate", "apikey", "api-key", "hmac", "aws4-hmac-sha256"}
MIN_SECRET = 4  # shorter values are not redacted (they would shred any answer and hold no secret)


class Redactor:
    """Replaces every secret a webhook call used with ``***`` in whatever the other side
    answered, before any of it is printed, logged or stored: each configured header value as
    sent (after ``${VAR}`` expansion), each expanded variable, the credential after an auth
    scheme (``Bearer <token>``, and a ``Basic`` credential's decoded ``user:password`` and
    password), the expanded signing secret and the signature, also as they appear JSON-escaped
    or percent-encoded. Longest first, so a value containing another is replaced whole."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        found: set[str] = set()
        for v in values:
            self._add(found, v)
        self.secrets = sorted(found, key=len, reverse=True)
        self._re = re.compile("|".join(re.escape(x) for x in self.secrets)) if self.secrets else None

    @staticmethod
    def _add(found: set[str], value: str) -> None:
        value = str(value)
        parts = [value, value.strip(), *value.split()]
        words = value.split()
        if len(words) == 2 and words[0].lower() == "basic":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                decoded = base64.b64decode(words[1], validate=True).decode("utf-8")
                parts += [decoded, decoded.partition(":")[2]]
        for p in parts:
            if len(p) < MIN_SECRET or p.lower() in _AUTH_SCHEMES:
                continue
            found.add(p)
            found.add(json.dumps(p)[1:-1])
            found.add(quote(p, safe=""))
            found.add(quote(p, safe="/:@"))

    @classmethod
    def for_webhook(cls, hook: WebhookConfig, headers: Mapping[str, str], where: str) -> Redactor:
        """The secrets of one webhook call: ``headers`` as sent (but the content type and user
        agent modeldeck sets), every variable the configured values and the secret name, the
        expanded secret."""
        values = [v for k, v in headers.items() if k not in ("Content-Type", "User-Agent")]
        for raw in [*hook.headers.values(), hook.secret or ""]:
            for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", raw):
                if name in os.environ:
                    values.append(os.environ[name])
        if hook.secret:
            with contextlib.suppress(ConfigError):
                values.append(expand(hook.secret, f"{where}.secret"))
        return cls(values)

    def __call__(self, text: str) -> str:
        return self._re.sub("***", text) if self._re is not None else text

    def data(self, value: Any) -> Any:
        """A decoded JSON answer with every string (keys too) redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return value


def json_body(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# a hook's environment and working folder


def hook_env(extra: Mapping[str, Any]) -> dict[str, str]:
    """A hook's environment: ours, with this interpreter's folder first on PATH (so
    ``python`` and ``modeldeck`` in a hook mean the ones running now) and ``extra``."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    parts = env.get("PATH", "").split(os.pathsep) if env.get("PATH") else []
    if bindir not in parts:
        env["PATH"] = os.pathsep.join([bindir, *parts])
    env.setdefault("PYTHONUNBUFFERED", "1")
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def config_file(settings: Settings) -> str:
    """The config file as an absolute path for hooks ("" without one, or when it is gone)."""
    if settings.path is not None and Path(settings.path).is_file():
        return str(Path(settings.path).resolve())
    return ""


def hook_cwd(settings: Settings) -> str:
    """Hooks run in the config file's folder (relative paths in the config mean that)."""
    if settings.path is not None:
        return str(Path(settings.path).resolve().parent)
    return os.getcwd()


# ---------------------------------------------------------------------------------------------
# processes: output, process groups, liveness


def clean_line(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.rstrip("\r\n")


def kill_group(pid: int, grace: float = CANCEL_GRACE, *, is_alive: Callable[[], bool] | None = None) -> bool:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``grace`` seconds if
    anything of it is still there. True when a signal was delivered."""
    alive = is_alive or (lambda: group_exists(pid))
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive():
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left (not reaped yet by their parent) count as gone.
    return any(not _is_zombie(p) for p in group_members(pgid)) if Path("/proc").is_dir() else True


def group_members(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid):
            out.append(int(d.name))
    return out


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat[stat.rfind(")") + 2:].split()[0] in ("Z", "X")


def pid_alive(pid: int | None, *, not_after: str | None = None) -> bool:
    """Is ``pid`` a live process (not a zombie)? With ``not_after`` (a registry time), a
    process that started later than that is a recycled pid, not the one recorded."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path(f"/proc/{pid}").is_dir():
        return True  # no /proc (macOS): trust the signal
    if _is_zombie(pid):
        return False
    if not_after:
        started = process_start(pid)
        limit = stored_time(not_after)
        if started is not None and limit is not None and started > limit.timestamp() + 2.0:
            return False
    return True




def process_start(pid: int) -> float | None:
    """When a process started (epoch seconds), from /proc; None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rfind(")") + 2:].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None




def stream_process(proc: subprocess.Popen[bytes], timeout: float, emit: Callable[[str], None], *,
                   grace: float = CANCEL_GRACE) -> tuple[int, str, bool]:
    """Read a hook's merged output line by line into ``emit`` until it exits; past ``timeout``
    its process group is stopped (SIGTERM, then SIGKILL after ``grace``). Returns (exit code,
    last non-empty line, timed out). Used by retraining commands and deploy hooks."""
    timed_out = threading.Event()

    def on_timeout() -> None:
        if proc.poll() is None:
            timed_out.set()
            emit(f"# timed out after {timeout:g} s; stopping it")
            kill_group(proc.pid, grace, is_alive=lambda: proc.poll() is None)

    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    last = ""
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = clean_line(raw)
            if line.strip():
                last = line.strip()
            emit(line)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    return rc, last, timed_out.is_set()


# ---------------------------------------------------------------------------------------------
# starting a command, calling a webhook


def start_command(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> subprocess.Popen[bytes] | str:
    """Start ``argv`` in its own session and process group (so it can be stopped whole), its
    stdout and stderr merged into one pipe, stdin closed. Returns the process, or why it could
    not start in words (``command not found: X``)."""
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True)
    except FileNotFoundError:
        return f"command not found: {argv[0]}"
    except OSError as e:
        return f"cannot run {argv[0]}: {e.strerror or e}"


def exit_words(rc: int) -> str:
    return f"exit status {rc}" if rc >= 0 else f"killed by signal {-rc}"


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    text: str  # the answer's start, one line, at most ANSWER_LIMIT characters
    json: Any = None  # the answer as JSON, when it is JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def excerpt(text: str, limit: int = ANSWER_LIMIT, redact: Redactor | None = None) -> str:
    """What may be quoted of an answer: its secrets redacted (before anything is cut, so no
    part of one survives), one line, at most ``limit`` characters."""
    return one_line(redact(text) if redact is not None else text, limit)


def http_reason(e: BaseException) -> str:
    """An httpx failure in a few words."""
    import httpx

    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, httpx.ConnectError):
        return "cannot connect"
    return type(e).__name__ + (f": {one_line(e, 160)}" if str(e) else "")


def post_webhook(client: Any, url: str, body: bytes, headers: Mapping[str, str], *,
                 redact: Redactor | None = None) -> WebhookAnswer | str:
    """POST ``body`` with ``client`` (an ``httpx.Client``). Returns the answer (its text and
    JSON with every secret of ``redact`` replaced by ``***``; by default every header value
    sent but the content type and user agent), or why there is none in words (``webhook URL:
    timed out``). At most ``ANSWER_BYTES`` of the answer are read."""
    import httpx

    redact = redact or Redactor(v for k, v in headers.items() if k not in ("Content-Type", "User-Agent"))
    try:
        with client.stream("POST", url, content=body, headers=dict(headers)) as r:
            raw = bytearray()
            for chunk in r.iter_bytes():
                raw += chunk
                if len(raw) > ANSWER_BYTES:
                    break
            status, encoding = r.status_code, r.encoding or "utf-8"
    except httpx.HTTPError as e:
        return f"webhook {url}: {redact(http_reason(e))}"
    text = bytes(raw[:ANSWER_BYTES]).decode(encoding, "replace")
    data = None
    if len(raw) <= ANSWER_BYTES:
        try:
            data = redact.data(json.loads(text))
        except (ValueError, RecursionError):
            data = None
    return WebhookAnswer(status, excerpt(text, redact=redact), data)


def webhook_client(hook: WebhookConfig) -> Any:
    """An ``httpx.Client`` for one webhook: its timeout, no redirects followed."""
    import httpx

    return httpx.Client(timeout=hook.timeout, follow_redirects=False)


def timed_out_words(seconds: float) -> str:
    return f"timed out after {duration(seconds)}"
