"""Table cells as ``rich.text.Text``: never parsed as markup, so names and messages from
endpoints, files and the registry show literally ("[/bold]" stays "[/bold]")."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

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


def number(value: float | None, fmt: str = "{:.1f}", *, warn: float | None = None,
           crit: float | None = None) -> Text:
    if value is None or value != value:
        return Text("-", style="dim", justify="right")
    style = ""
    if crit is not None and value >= crit:
        style = "bold red"
    elif warn is not None and value >= warn:
        style = "yellow"
    return Text(fmt.format(value), style=style, justify="right")


def versions(served: str | None, registry: Any) -> Text:
    """``served/registry``; red when they differ (a release that did not land, or drifted)."""
    s = "-" if served in (None, "") else one_line(served, 12)
    r = "-" if registry in (None, "") else one_line(registry, 12)
    mismatch = served not in (None, "") and registry not in (None, "") and str(served) != str(registry)
    t = Text(no_wrap=True, justify="right")
    t.append(s, style="bold red" if mismatch else "")
    t.append("/", style="dim")
    t.append(r, style="dim" if not mismatch else "red")
    return t


def drift(summary: Any, psi_alert: float = 0.25, psi_warn: float = 0.1) -> Text:
    """``drifted/columns worstPSI``: red with dataset drift, yellow when a PSI warns."""
    if summary is None:
        return Text("-", style="dim", justify="right")
    if getattr(summary, "error", None):
        return Text("error", style="red", justify="right")
    n, d = getattr(summary, "n_columns", 0) or 0, getattr(summary, "n_drifted", 0) or 0
    psi = getattr(summary, "worst_psi", None)
    style = ""
    if getattr(summary, "dataset_drift", False):
        style = "bold red"
    elif psi is not None and psi >= psi_alert:
        style = "red"
    elif d or (psi is not None and psi >= psi_warn):
        style = "yellow"
    psi_text = "" if psi is None else f" {psi:.2f}".replace(" 0.", " .")
    return Text(f"{d}/{n}{psi_text}", style=style, justify="right", no_wrap=True)


def age(taken_at: float | None, now: float | None = None, interval: float = 2.0) -> Text:
    if not taken_at:
        return Text("-", style="dim", justify="right")
    secs = max(0.0, (now if now is not None else time.time()) - taken_at)
    text = f"{secs:.0f}s" if secs < 100 else (f"{secs / 60:.0f}m" if secs < 6000 else f"{secs / 3600:.0f}h")
    style = "red" if secs > 5 * interval else ("yellow" if secs > 2.5 * interval else "dim")
    return Text(text, style=style, justify="right")


def approval(state: str) -> Text:
    return Text(state, style=APPROVAL_STYLE.get(state, ""))
