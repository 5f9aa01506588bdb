"""Reference and current distributions of one column, bin by bin, side by side."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from modeldeck.core.textfmt import one_line

BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(share: float, width: int) -> str:
    """A horizontal bar of ``share`` (0..1) of ``width`` cells, in eighths."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[rest] if rest else "")).ljust(width)


def render(labels: Sequence[str], reference: Sequence[float], current: Sequence[float], width: int = 60,
           title: str = "") -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    if title:
        out.append(one_line(title, 60) + "\n", style="bold")
    if not labels:
        out.append("no distribution for this column yet", style="dim")
        return out
    label_w = min(14, max(len(one_line(lb, 14)) for lb in labels))
    bar_w = max(4, (width - label_w - 16) // 2)
    top = max([*reference, *current, 1e-9])
    out.append(" " * (label_w + 1))
    out.append("reference".ljust(bar_w + 6), style="cyan")
    out.append("current\n", style="magenta")
    for lb, r, c in zip(labels, reference, current):
        out.append(one_line(lb, 14).rjust(label_w) + " ", style="dim")
        out.append(bar(r / top, bar_w), style="cyan")
        out.append(f"{r * 100:4.0f}% ", style="dim")
        out.append(bar(c / top, bar_w), style="magenta")
        out.append(f"{c * 100:4.0f}%\n", style="dim")
    out.rstrip()
    return out


class Histogram(Static):
    DEFAULT_CSS = "Histogram { height: auto; padding: 0 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)

    def show(self, labels: Sequence[str], reference: Sequence[float], current: Sequence[float],
             title: str = "") -> None:
        width = max(30, self.size.width - 2) if self.size.width else 60
        self.update(render(labels, reference, current, width, title))
