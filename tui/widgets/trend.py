"""A labelled live chart: a title with the latest value, the span shown (``last 5 min``) and the
scale's top; bars that start at zero (so ``p95 7 -> 29 ms`` is not a cliff); the threshold
drawn as a line; and a time axis under the bars. Values are placed by their time, so a gap
in polling shows as a gap."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

BLOCKS = " ▁▂▃▄▅▆▇█"


def span_words(seconds: float) -> str:
    """``last 45 s``, ``last 5 min``, ``last 2 h``."""
    if seconds < 90:
        return f"last {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"last {round(seconds / 60)} min"
    return f"last {seconds / 3600:.0f} h"


def ago(seconds: float) -> str:
    if seconds < 90:
        return f"-{round(seconds)}s"
    if seconds < 5400:
        return f"-{round(seconds / 60)}m"
    return f"-{seconds / 3600:.0f}h"


def nice_top(value: float) -> float:
    """A round number at or above ``value`` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10 ** exp
        if top >= value * 0.999:
            return top
    return 10 ** (exp + 1)


def buckets(points: Sequence[tuple[float, float]], width: int, start: float, end: float) -> list[float | None]:
    """The largest value per column of ``width`` columns spanning [start, end]."""
    out: list[float | None] = [None] * width
    span = max(end - start, 1e-9)
    steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
    usual = steps[len(steps) // 2] if steps else 0.0
    prev: tuple[int, float, float] | None = None  # column, time, value of the previous point
    for t, v in points:
        i = min(width - 1, max(0, int((t - start) / span * width)))
        cur = out[i]
        out[i] = v if cur is None or v > cur else cur
        if prev is not None and t - prev[1] <= 3 * usual:  # a value holds until the next poll
            for j in range(prev[0] + 1, i):
                if out[j] is None:
                    out[j] = prev[2]
        prev = (i, t, v)
    return out


def render_bars(columns: Sequence[float | None], height: int, top: float, threshold: float | None,
                bar_style: str = "", threshold_style: str = "red", mark_over: bool = True) -> list[Text]:
    """``height`` lines of bars from zero to ``top``; the threshold's row shows ``┈`` where the
    bar stays under it (and, with ``mark_over``, the bar turns the threshold colour above it)."""
    th_row = None
    if threshold is not None and 0 < threshold <= top:
        th_row = min(height - 1, int(threshold / top * height))  # row from the bottom holding the line
    lines = []
    for r in range(height - 1, -1, -1):
        line = Text(no_wrap=True)
        for v in columns:
            eighths = 0 if v is None else max(0, round(min(v, top) / top * height * 8))
            fill = max(0, min(8, eighths - r * 8))
            over = mark_over and threshold is not None and v is not None and v >= threshold
            if fill == 0 and r == th_row:
                line.append("┈", style=threshold_style)
            else:
                line.append(BLOCKS[fill], style=threshold_style if over else bar_style)
        lines.append(line)
    return lines


def time_axis(width: int, span: float) -> Text:
    """``-5m        -2m        now`` under a chart ``width`` columns wide spanning ``span`` s."""
    cells = [" "] * width
    labels = [(width - 3, "now")]
    if width >= 24:
        labels.append((0, ago(span)))
    if width >= 48:
        labels.append((width // 2 - 1, ago(span / 2)))
    for pos, label in labels:
        pos = max(0, min(width - len(label), pos))
        cells[pos:pos + len(label)] = list(label)
    return Text("".join(cells), style="dim", no_wrap=True)


class Trend(Vertical):
    DEFAULT_CSS = """
    Trend { height: auto; width: 1fr; padding: 0 1; }
    Trend > .trend--title { height: 1; }
    Trend > .trend--chart { height: auto; }
    """

    def __init__(self, title: str, unit: str = "", fmt: str = "{:.1f}", *, id: str | None = None,
                 spark_height: int = 2, axis: bool = False, threshold_word: str = "warn",
                 higher_is_worse: bool = True) -> None:
        super().__init__(id=id)
        self.title = title
        # what the threshold line is called, and whether a bar reaching it is a warning (latency,
        # errors) or not (a quality metric against its registered value: below is the bad side)
        self.threshold_word = threshold_word
        self.higher_is_worse = higher_is_worse
        self.unit = unit
        self.fmt = fmt
        self.spark_height = spark_height
        self.axis = axis
        self._shown: dict[str, tuple[Text, int]] = {}  # per part (title, chart): the text shown, its lines
        self._last: tuple[Sequence[float | None], Sequence[float] | None, float | None, float | None] = ((), None,
                                                                                                        None, None)

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title, style="bold"), classes="trend--title", markup=False)
        yield Static("", classes="trend--chart", markup=False)

    def _show(self, part: str, text: Text) -> None:
        """Show ``text`` in the title or the chart: nothing when it is what is shown, a repaint
        without laying the screen out again when its line count stays (a layout repaints the
        whole screen: with a fleet of thousands that was most of a key's time)."""
        lines = text.plain.count("\n") + 1
        shown = self._shown.get(part)
        if shown is not None and shown[0] == text:
            return
        self._shown[part] = (text, lines)
        self.query_one(f".trend--{part}", Static).update(text, layout=shown is None or shown[1] != lines)

    def on_resize(self) -> None:
        self.update(*self._last)

    def update(self, values: Sequence[float | None], times: Sequence[float] | None = None,
               threshold: float | None = None, now: float | None = None) -> None:
        """``values`` oldest first, with their ``times`` (epoch seconds; without them the
        values are evenly spaced and no span is shown); ``threshold`` is drawn as a line."""
        self._last = (values, times, threshold, now)
        if times is not None and len(times) == len(values):
            points = [(t, v) for t, v in zip(times, values) if v is not None and v == v]
        else:
            times = None
            points = [(float(i), v) for i, v in enumerate(values) if v is not None and v == v]
        title = Text(self.title, style="bold", no_wrap=True, overflow="ellipsis")
        width = max(4, self.content_size.width or 20)
        if not points:
            title.append("  no data yet", style="dim")
            self._show("title", title)
            self._show("chart", Text("\n" * (self.spark_height - 1 + (1 if self.axis else 0))))
            return
        latest = points[-1][1]
        peak = max(v for _, v in points)
        # the threshold joins the scale unless that would flatten the bars (far above the data)
        drawn = threshold if threshold and threshold <= 3 * max(peak, 1e-9) else None
        top = nice_top(max(peak, drawn * 1.1 if drawn else 0.0))
        title.append(f"  {self.fmt.format(latest)}{self.unit}")
        start = points[0][0]
        end = max(points[-1][0], now if now is not None and times is not None else points[-1][0])
        if times is not None:
            title.append(f"  {span_words(end - start)}", style="dim")
        title.append(f"  0–{self.fmt.format(top)}{self.unit}", style="dim")
        if drawn:
            title.append(f"  ┈ {self.threshold_word} {self.fmt.format(threshold)}{self.unit}", style="red")
        elif threshold:
            title.append(f"  {self.threshold_word} {self.fmt.format(threshold)}{self.unit}", style="dim")
        self._show("title", title)
        cols = buckets(points, width, start, end) if times is not None else _spread(points, width)
        lines = render_bars(cols, self.spark_height, top, drawn, bar_style="cyan", mark_over=self.higher_is_worse)
        if self.axis and times is not None:
            lines.append(time_axis(width, end - start))
        self._show("chart", Text("\n").join(lines))


def _spread(points: Sequence[tuple[float, float]], width: int) -> list[float | None]:
    """Evenly spaced values (no times): the newest ``width`` of them, right-aligned."""
    vals = [v for _, v in points][-width:]
    return [None] * (width - len(vals)) + list(vals)
