"""The small helpers every part of modeldeck shares, written once: one-line sanitising of
untrusted text, finite numbers, UTC times as the registry stores them, durations and sizes in
words, aligned tables and short numbers. Standard library only (cheap to import)."""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

# C0 and C1 control characters (ESC, BEL, backspace, DEL, CSI ...) except tab, newline and carriage
# return (whitespace, collapsed), and the invisible format characters that reorder or hide text
# (bidi overrides and isolates, zero-width characters, line/paragraph separators, BOM).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064"
                      "\u2066-\u206f\ufeff\ufff9-\ufffb]")
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


def visible(ch: str) -> str:
    """One character as its escape: ``\\x1b``, ``\\u202e``."""
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


_LONE_CR = re.compile("\r(?!\n)")


def escape_controls(text: str) -> str:
    """``text`` with every control and invisible format character written as its escape
    (``\\x1b``), tabs and line breaks (``\\n``, ``\\r\\n``) kept; a carriage return that does
    not end a line (it would overwrite it) is escaped too: what a terminal may be given."""
    return _LONE_CR.sub("\\\\x0d", _CONTROL.sub(lambda m: visible(m.group()), text))


def one_line(text: Any, limit: int = 200) -> str:
    """Untrusted text made safe for one terminal line: control characters (ESC, BEL, DEL, C1,
    bidi overrides ...) written visibly as escapes (``\\x1b``), whitespace and line breaks
    collapsed to single spaces, credentials in URLs (``user:pass@``) dropped, cut to ``limit``
    characters."""
    s = str(text)
    # already safe (the usual reason: "ready"): printable holds no control or format character
    # and no whitespace but the space, so neither substitution nor the collapse would change it
    if not (s.isprintable() and "@" not in s and "  " not in s and s[:1] != " " and s[-1:] != " "):
        s = _CONTROL.sub(lambda m: visible(m.group()), s)
        s = _USERINFO.sub(r"\1", " ".join(s.split()))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def middle(text: Any, limit: int) -> str:
    """``one_line(text)`` cut in the middle (``/home/ana/…/churn/registry.db``), so both the
    start and the end of a path stay readable."""
    s = one_line(text, 100_000)
    if len(s) <= limit:
        return s
    if limit <= 1:
        return "…"[:limit]
    tail = (limit - 1) // 2 + (limit - 1) % 2
    head = limit - 1 - tail
    return s[:head] + "…" + s[len(s) - tail:]


def exit_words(code: int | None) -> str:
    """A process's exit status as a person reads it: ``3``, the signal that ended it
    (``SIGTERM`` for -15), or ``-`` when unknown."""
    if code is None:
        return "-"
    if code < 0:
        import signal

        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


# -- numbers ------------------------------------------------------------------------------------


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (numpy's too; not a bool), else None."""
    if type(value) is float:  # the usual case, first
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, numbers.Real)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as None, tuples as lists, keys as strings and
    anything else unknown as its ``str``: what ``json.dumps(allow_nan=False)`` accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(x) for x in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


# -- times: UTC ISO-8601 with microseconds and Z, as the registry stores them --------------------


def format_time(dt: datetime) -> str:
    """A datetime as stored (a naive one is local time, as a user typing it means)."""
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> str:
    return format_time(datetime.now(timezone.utc))


@functools.lru_cache(maxsize=1024)
def utc_iso(epoch: float) -> str:
    """Epoch seconds as stored (remembered: every snapshot of a refresh has the same time)."""
    return format_time(datetime.fromtimestamp(epoch, timezone.utc))


def stored_time(text: str | None) -> datetime | None:
    """A stored time (UTC ISO-8601; without an offset: UTC), or None when missing or unreadable."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def parse_utc(text: str | None) -> float:
    """A stored time as epoch seconds (0.0 when missing or unreadable)."""
    dt = stored_time(text)
    return dt.timestamp() if dt is not None else 0.0


def short_time(text: str | None) -> str:
    """A stored time to the second: ``2026-12-02 11:04:05Z`` (``-`` when missing)."""
    return "-" if not text else str(text)[:19].replace("T", " ") + "Z"


# -- durations and sizes in words ---------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``0.5 s``, ``30 s``, ``2 min``, ``2.5 min``, ``6 h``: the unit always written."""
    s = float(seconds)
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g} h"
    if s >= 120:
        return f"{s / 60:g} min" if s % 60 == 0 else f"{s / 60:.1f} min"
    return f"{round(s, 2):g} s"


def size(n: int) -> str:
    """Bytes in words: ``64 KiB``, ``8 MiB`` for whole units, else ``1234 bytes``."""
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}"
    return f"{n} bytes"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()) -> str:
    """Columns aligned with two spaces between them; ``right`` lists right-aligned columns."""
    body = [[one_line("" if c is None else c, 120) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    r = set(right)

    def fmt(cells: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if i in r else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    return "\n".join([fmt(list(headers)), *(fmt(row) for row in body)])


def num(value: float | None, digits: int = 3) -> str:
    """A short number: ``-`` for missing, otherwise up to ``digits`` significant figures."""
    if value is None:
        return "-"
    if value != value:  # NaN
        return "nan"
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"
