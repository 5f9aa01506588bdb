"""A table for values that change every second: the fleet.

Textual's DataTable re-renders every visible cell after any ``update_cell`` (its render
caches are keyed by a table-wide update counter), so with 200 endpoints changing each second
it spends most of the UI thread re-rendering and keys wait. This Line-API table renders each
cell once per *value* (segments cached per cell), assembles a line from cached segments, and
repaints only the lines whose cells changed. Cells are ``rich.text.Text`` (never markup).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    right: bool = False  # right-aligned (numbers)


class LiveTable(ScrollView, can_focus=True):
    """Rows keyed by strings, a fixed header, a row cursor; one line per row."""

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        scrollbar-gutter: stable;
        overflow-x: hidden;
    }
    LiveTable > .live-table--header {
        text-style: bold;
        background: $panel;
        color: $foreground;
    }
    LiveTable > .live-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    LiveTable:blur > .live-table--cursor {
        background: $block-cursor-blurred-background;
        text-style: none;
    }
    LiveTable > .live-table--even-row {
        background: $surface-lighten-1 20%;
    }
    """
    COMPONENT_CLASSES = {"live-table--header", "live-table--cursor", "live-table--even-row"}
    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=False, repaint=False)

    class RowHighlighted(Message):
        def __init__(self, table: LiveTable, row_key: str | None, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key
            self.cursor_row = cursor_row

        @property
        def control(self) -> LiveTable:
            return self.table

    class RowSelected(Message):
        def __init__(self, table: LiveTable, row_key: str) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns: list[Column] = []
        self.rows: list[str] = []
        self._index: dict[str, int] = {}
        self._cells: dict[str, dict[str, Text]] = {}
        self._segments: dict[tuple[str, str], list[Segment]] = {}
        self._header: list[Segment] = []
        # Rows whose values changed while off screen: ``fill(key)`` is asked for their cells
        # when they are drawn or read (a fleet of thousands updates only what is visible).
        self._stale: set[str] = set()
        self.fill: Callable[[str], None] | None = None

    # -- content ------------------------------------------------------------------------------
    def set_columns(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self._segments.clear()
        self._header = []
        self._resize()

    def set_rows(self, keys: Sequence[str]) -> None:
        """Show these rows in this order; cell values of kept keys are kept."""
        current = self.row_key(self.cursor_row)
        self.rows = list(keys)
        self._index = {k: i for i, k in enumerate(self.rows)}
        for k in self.rows:
            self._cells.setdefault(k, {})
        self._resize()
        if current in self._index:
            self.set_cursor(self._index[current], notify=False)
        else:
            self.set_cursor(min(self.cursor_row, max(0, len(self.rows) - 1)))
        self.refresh()

    def update_cell(self, row_key: str, column_key: str, value: Text) -> bool:
        """Set one cell; repaints its line only when the value changed. Returns changed."""
        row = self._cells.setdefault(row_key, {})
        old = row.get(column_key)
        if old is not None and old.plain == value.plain and old.spans == value.spans and old.style == value.style:
            return False
        row[column_key] = value
        self._segments.pop((row_key, column_key), None)
        i = self._index.get(row_key)
        if i is not None:
            y = i - self.scroll_offset.y + 1
            if 1 <= y < self.size.height:
                self.refresh(Region(0, y, self.size.width, 1))
        return True

    def get_cell(self, row_key: str, column_key: str) -> Text:
        self._fill(row_key)
        return self._cells[row_key][column_key]

    def mark_stale(self, row_key: str) -> None:
        """The row's values changed; :attr:`fill` gives its cells when it is next drawn or read."""
        self._stale.add(row_key)

    def mark_all_stale(self, except_rows: range | None = None) -> None:
        """Every row but those at ``except_rows`` (indices) is stale (one set operation)."""
        if except_rows is None or not except_rows:
            self._stale = set(self.rows)
            return
        rows = self.rows
        self._stale = set(rows[: except_rows.start])
        self._stale.update(rows[except_rows.stop:])

    def set_row(self, row_key: str, cells: dict[str, Text]) -> None:
        """Set a row's cells without repainting (from ``fill``, while drawing)."""
        row = self._cells.setdefault(row_key, {})
        for k, v in cells.items():
            old = row.get(k)
            if old is None or old.plain != v.plain or old.spans != v.spans or old.style != v.style:
                row[k] = v
                self._segments.pop((row_key, k), None)

    def visible_rows(self, margin: int = 0) -> range:
        """The indices of the rows on screen (and ``margin`` more either side)."""
        top = int(self.scroll_offset.y)
        return range(max(0, top - margin), min(len(self.rows), top + max(1, self.size.height) + margin))

    def _fill(self, row_key: str) -> None:
        if row_key in self._stale:
            self._stale.discard(row_key)
            if self.fill is not None:
                self.fill(row_key)

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def row_key(self, index: int) -> str | None:
        return self.rows[index] if 0 <= index < len(self.rows) else None

    @property
    def cursor_key(self) -> str | None:
        return self.row_key(self.cursor_row)

    def _resize(self) -> None:
        width = sum(c.width + 2 for c in self.columns)
        self.virtual_size = Size(width, len(self.rows) + 1)

    # -- cursor ---------------------------------------------------------------------------------
    def set_cursor(self, row: int, *, notify: bool = True) -> None:
        row = max(0, min(row, len(self.rows) - 1)) if self.rows else 0
        old = self.cursor_row
        self.cursor_row = row
        self._scroll_to_cursor()
        for r in {old, row}:
            y = r - self.scroll_offset.y + 1
            if 1 <= y < max(self.size.height, 1):
                self.refresh(Region(0, y, self.size.width, 1))
        if notify and (old != row or not self.rows):
            self.post_message(self.RowHighlighted(self, self.row_key(row), row))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def action_cursor_down(self) -> None:
        self.set_cursor(self.cursor_row + 1)

    def action_cursor_up(self) -> None:
        self.set_cursor(self.cursor_row - 1)

    def action_page_down(self) -> None:
        self.set_cursor(self.cursor_row + max(1, self.size.height - 2))

    def action_page_up(self) -> None:
        self.set_cursor(self.cursor_row - max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.set_cursor(0)

    def action_last(self) -> None:
        self.set_cursor(len(self.rows) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        row = event.y - 1 + self.scroll_offset.y
        if event.y >= 1 and 0 <= row < len(self.rows):
            if row == self.cursor_row:
                self.action_select()
            else:
                self.set_cursor(row)

    def on_resize(self) -> None:
        self._scroll_to_cursor()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._segments.clear()
        self._header = []

    # -- rendering --------------------------------------------------------------------------------
    def _cell_segments(self, row_key: str, col: Column) -> list[Segment]:
        cached = self._segments.get((row_key, col.key))
        if cached is not None:
            return cached
        text = self._cells.get(row_key, {}).get(col.key) or Text("")
        segs = self._fit(text, col)
        self._segments[(row_key, col.key)] = segs
        return segs

    def _fit(self, text: Text, col: Column) -> list[Segment]:
        t = text.copy()
        t.no_wrap = True
        t.end = ""
        t.truncate(col.width, overflow="ellipsis")
        pad = col.width - t.cell_len
        if pad > 0:
            if col.right or t.justify == "right":
                t.pad_left(pad)
            else:
                t.pad_right(pad)
        console = self.app.console
        segs = list(t.render(console))
        if t.style:  # Text.render leaves the base style to its caller
            base = console.get_style(t.style, default=None)
            if base:
                segs = [Segment(s.text, base + s.style if s.style else base) for s in segs]
        return [Segment(" "), *segs, Segment(" ")]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            if not self._header:
                hs = self.get_component_rich_style("live-table--header")
                segs: list[Segment] = []
                for c in self.columns:
                    segs += [Segment(s.text, hs + s.style if s.style else hs)
                             for s in self._fit(Text(c.label), c)]
                self._header = segs
            return Strip(self._header).extend_cell_length(width, self.get_component_rich_style(
                "live-table--header")).crop(0, width)
        row = y - 1 + self.scroll_offset.y
        base = self.rich_style
        key = self.row_key(row)
        if key is None:
            return Strip.blank(width, base)
        self._fill(key)
        style = base
        if row % 2 == 1:
            style = base + self.get_component_rich_style("live-table--even-row")
        if row == self.cursor_row:
            style = base + self.get_component_rich_style("live-table--cursor")
        segs = []
        for c in self.columns:
            for s in self._cell_segments(key, c):
                segs.append(Segment(s.text, style + s.style if s.style else style))
        return Strip(segs).extend_cell_length(width, style).crop(0, width)

