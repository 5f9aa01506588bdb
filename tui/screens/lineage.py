"""Lineage of one version (`l` on the model screen): where it came from, all of it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from modeldeck.core import datafiles
from modeldeck.core.registry import Evaluation, Version
from modeldeck.core.textfmt import num, one_line
from modeldeck.tui.screens.audit import SCROLL_BINDINGS, scroll_box
from modeldeck.tui.screens.base import DeckModal


def lineage_text(v: Version, aliases: dict[str, int], evaluations: Sequence[Evaluation] = ()) -> Text:
    t = Text()
    t.append(f"{one_line(v.model, 60)} version {v.version}\n", style="bold")
    held = [env for env, n in aliases.items() if n == v.version]

    def row(label: str, value: Any, style: str = "") -> None:
        t.append(f"{label:>15}  ", style="dim")
        t.append(one_line("-" if value in (None, "") else value, 200) + "\n", style=style)

    row("approval", f"{v.approval}" + (f" by {v.approval_by} at {v.approval_at}: {v.approval_reason}"
                                        if v.approval_by else ""),
        {"approved": "green", "rejected": "red"}.get(v.approval, "yellow"))
    row("held by", ", ".join(held) or "-")
    row("created", f"{v.created_at} by {v.created_by}")
    row("artifact", v.artifact)
    row("dataset", v.dataset_path)
    row("dataset sha256", v.dataset_sha256)
    row("reference", v.reference_path)
    row("code version", v.code_version)
    row("retrain job", f"#{v.job_id}" if v.job_id else None)
    if v.run_id:  # [mlflow]: the run it came from and its dataset inputs
        row("mlflow run", v.run_id)
        for i, d in enumerate(v.datasets):
            row("datasets" if i == 0 else "", f"{d.get('name') or '-'} ({d.get('context') or 'input'}), digest "
                f"{d.get('digest') or '-'}" + (f", {d['source']}" if d.get("source") else ""))
    for title, mapping in (("metrics", v.metrics), ("params", v.params), ("tags", v.tags)):
        t.append(f"{title:>15}  ", style="dim")
        if not mapping:
            t.append("-\n")
            continue
        first = True
        for k, val in mapping.items():
            if not first:
                t.append(" " * 17)
            first = False
            shown = val if isinstance(val, (str, int, float)) else json.dumps(val, default=str)
            t.append(f"{one_line(k, 40)} = {one_line(shown, 120)}\n")
    t.append(f"{'evaluated on':>15}  ", style="dim")
    by_data: dict[str | None, list[Evaluation]] = {}
    for e in evaluations:
        by_data.setdefault(e.dataset_sha256, []).append(e)
    if not by_data:
        t.append("-\n")
    for i, (sha, evs) in enumerate(by_data.items()):
        if i:
            t.append(" " * 17)
        head = datafiles.describe(sha, evs[-1].dataset_rows)
        t.append(head, style="bold" if sha else "yellow")
        t.append(f" ({evs[-1].source}) ", style="dim")
        t.append(one_line(" ".join(f"{e.metric}={num(e.value, 4)}" for e in evs), 160) + "\n")
    t.rstrip()
    return t


class LineageScreen(DeckModal):
    CLOSE_ACTION = "close"
    BINDINGS = [Binding("escape,q,l", "close", "Close", key_display="esc"), *SCROLL_BINDINGS]

    def __init__(self, version: Version, aliases: dict[str, int], evaluations: Sequence[Evaluation] = ()) -> None:
        super().__init__()
        self.version = version
        self.aliases = aliases
        self.evaluations = list(evaluations)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="lineage-box"):
            yield Static(lineage_text(self.version, self.aliases, self.evaluations), id="lineage-text", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, how: str) -> None:
        scroll_box(self.query_one("#lineage-box", VerticalScroll), how)
