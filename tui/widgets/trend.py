"""A labelled sparkline: a title with the latest value and range, and the line under it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static


class Trend(Vertical):
    DEFAULT_CSS = """
    Trend { height: auto; width: 1fr; padding: 0 1; }
    Trend > .trend--title { height: 1; }
    Trend > Sparkline { height: 2; }
    """

    def __init__(self, title: str, unit: str = "", fmt: str = "{:.1f}", *, id: str | None = None,
                 spark_height: int = 2) -> None:
        super().__init__(id=id)
        self.title = title
        self.unit = unit
        self.fmt = fmt
        self.spark_height = spark_height

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title, style="bold"), classes="trend--title", markup=False)
        spark = Sparkline([], summary_function=max)
        spark.styles.height = self.spark_height
        yield spark

    def update(self, values: Sequence[float | None]) -> None:
        data = [v for v in values if v is not None and v == v]
        title = Text(self.title, style="bold")
        if data:
            title.append(f"  {self.fmt.format(data[-1])}{self.unit}")
            title.append(f"  (min {self.fmt.format(min(data))} max {self.fmt.format(max(data))})", style="dim")
        else:
            title.append("  no data yet", style="dim")
        self.query_one(".trend--title", Static).update(title)
        self.query_one(Sparkline).data = data
