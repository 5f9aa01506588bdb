"""Table cells as ``rich.text.Text``: never parsed as markup, so names and messages from
endpoints, files and the registry show literally ("[/bold]" stays "[/bold]")."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from modeldeck.core import judge
from modeldeck.core.snapshot import DriftSummary
from modeldeck.core.textfmt import one_line

STATUS_STYLE = {
    "UP": "bold green",
    "DEGRADED": "bold yellow",
    "DOWN": "bold red",
    "PENDING": "dim",
}
APPROVAL_STYLE = {"approved": "green", "rejected": "red", "pending": "yellow"}
DRIFT_STATUS_STYLE = {"drift": "bold red", "ok": "green", "low_sample": "dim", "constant": "dim",
                      "error": "red", "warn": "yellow"}


def plain(value: Any, limit: int = 80, style: str = "") -> Text:
    return Text("-" if value is None or value == "" else one_line(value, limit), style=style,
                no_wrap=True, overflow="ellipsis")


def status(word: str | None) -> Text:
    word = (word or "PENDING").upper()
    return Text(word, style=STATUS_STYLE.get(word, "bold magenta"), no_wrap=True)


def number(value: float | None, fmt: str = "{:.1f}", *, level: str = judge.OK) -> Text:
    """A right-aligned number coloured by the judge's ``level`` for it."""
    if value is None or value != value:
        return Text("-", style="dim", justify="right")
    return Text(fmt.format(value), style=judge.STYLE[level], justify="right")


def versions(served: str | None, registry: str | None, *, mismatch: bool) -> Text:
    """``served/registry``; red when the judge calls it a mismatch (a release that did not land)."""
    s = "-" if served in (None, "") else one_line(served, 12)
    r = "-" if registry in (None, "") else one_line(registry, 12)
    t = Text(no_wrap=True, justify="right")
    t.append(s, style=judge.STYLE[judge.CRITICAL] if mismatch else "")
    t.append("/", style="dim")
    t.append(r, style="red" if mismatch else "dim")
    return t


def drift(summary: DriftSummary | None, level: str) -> Text:
    """``drifted/judged worstPSI`` (``2/8 0.34``) coloured by the judge's drift level, the
    worst PSI among the columns whose PSI counts (``judge.psi_counts``); until a column is
    judged, the live window's size (``n=15``) in a neutral colour."""
    if summary is None:
        return Text("-", style="dim", justify="right")
    if summary.error:
        return Text("error", style=judge.STYLE[level], justify="right")
    if not summary.n_columns:  # every column low_sample (or none compared yet): nothing judged
        rows = summary.window_rows
        return Text("-" if rows is None else f"n={rows}", style="dim", justify="right", no_wrap=True)
    psi = summary.worst_psi
    psi_text = "" if psi is None else f" {psi:.2f}"
    return Text(f"{summary.n_drifted}/{summary.n_columns}{psi_text}", style=judge.STYLE[level], justify="right",
                no_wrap=True)


def age(taken_at: float | None, now: float | None = None, interval: float = 2.0) -> Text:
    if not taken_at:
        return Text("-", style="dim", justify="right")
    secs = max(0.0, (now if now is not None else time.time()) - taken_at)
    text = f"{secs:.0f}s" if secs < 100 else (f"{secs / 60:.0f}m" if secs < 6000 else f"{secs / 3600:.0f}h")
    style = "red" if secs > 5 * interval else ("yellow" if secs > 2.5 * interval else "dim")
    return Text(text, style=style, justify="right")


def approval(state: str) -> Text:
    return Text(state, style=APPROVAL_STYLE.get(state, ""))


def quality(summary: Any) -> Text:
    """The QUALITY cell (``core.report.quality_cell``: ``auc .912 ▼``) coloured by the judge's
    quality verdicts on the snapshot; ``n=42/200`` (dim) while there are not enough."""
    from modeldeck.core.report import quality_cell

    text = quality_cell(summary)
    if summary is None:
        return Text(text, style="dim", justify="right")
    lv = judge.worst(v.level for v in judge.snapshot_quality_verdicts(summary))
    style = judge.STYLE[lv] or ("dim" if text.startswith("n=") else "")
    return Text(text, style=style, justify="right", no_wrap=True)
