"""Help (`?`): every binding of the screen it was opened from, read from the bindings
themselves (screen, focused widget, app), so it can never go stale."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from modeldeck.tui.screens.base import DeckModal, DeckView

KEY_NAMES = {"question_mark": "?", "slash": "/", "plus": "+", "minus": "-", "escape": "esc",
             "enter": "enter", "up": "↑", "down": "↓", "left": "←", "right": "→", "pageup": "pgup",
             "pagedown": "pgdn", "ctrl+p": "ctrl+p"}


def key_label(binding: Binding, key: str) -> str:
    return KEY_NAMES.get(key, key)


def describe(screen: Screen) -> list[tuple[str, str, str]]:
    """(keys, what it does, where) for every active binding of ``screen``; keys bound to the
    same action are shown together."""
    grouped: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str]] = []
    for key, active in screen.active_bindings.items():
        b = active.binding
        where = "app" if active.node is screen.app else (
            "screen" if active.node is screen else type(active.node).__name__)
        what = b.description or b.action.replace("_", " ")
        if not active.enabled:
            what += " (not available now)"
        ident = (b.action, where)
        if ident not in grouped:
            grouped[ident] = []
            order.append(ident)
            grouped[ident].append(what)
        grouped[ident].append(key_label(b, key))
    rows = []
    for ident in order:
        what, *keys = grouped[ident]
        rows.append((" ".join(dict.fromkeys(keys)), what, ident[1]))
    rank = {"screen": 0, "app": 2}
    rows.sort(key=lambda r: rank.get(r[2], 1))
    return rows


class HelpScreen(DeckModal):
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss_help", "Close", key_display="esc"),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under
        self.rows = describe(under)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            title = (self.under.HELP_TITLE if isinstance(self.under, DeckView) else None) \
                or type(self.under).__name__.replace("Screen", "")
            yield Static(Text(f"Keys: {title}", style="bold"), markup=False)
            yield DataTable(id="help-table", cursor_type="row", show_cursor=False)
            yield Static(Text("esc, q or ? closes", style="dim"), markup=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("KEY", "ACTION", "WHERE")
        for keys, what, where in self.rows:
            table.add_row(Text(keys, style="bold"), Text(what), Text(where, style="dim"))
        table.focus()

    def action_dismiss_help(self) -> None:
        self.dismiss(None)

    @property
    def entries(self) -> list[Any]:
        return list(self.rows)
