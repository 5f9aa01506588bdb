"""Plain-text helpers shared by the command line and the report: aligned tables, short
numbers, one-line sanitising of untrusted text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]|\x1b\[[0-9;?]*[ -/]*[@-~]")


def one_line(text: Any, limit: int = 200) -> str:
    """Untrusted text made safe for a terminal line: ANSI escapes and control characters
    removed, whitespace collapsed, cut to ``limit`` characters."""
    s = _CONTROL.sub(" ", str(text))
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


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
