"""Help (`?`, `f1` everywhere): the keys of the screen it was opened from, grouped by purpose
(move, watch, release, app) with that screen's own keys first in each group, then a legend of
the screen's columns and colours. Read from the active bindings (screen and app) so it never
goes stale; Textual's own plumbing (focus next, copy selection) is left out."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from modeldeck.tui.screens.base import DeckModal, DeckView

KEY_NAMES = {"question_mark": "?", "slash": "/", "plus": "+", "minus": "-", "escape": "esc",
             "enter": "enter", "up": "↑", "down": "↓", "left": "←", "right": "→", "pageup": "pgup",
             "pagedown": "pgdn", "ctrl+p": "ctrl+p", "ctrl+s": "ctrl+s", "space": "space"}

GROUPS = ("move", "watch", "release", "app")
GROUP_TITLES = {"move": "Move", "watch": "Watch", "release": "Release", "app": "App"}

# action -> (group, what it does in words, keys that do the same through the focused widget)
ACTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "cursor_down": ("move", "next row", ("↓",)),
    "cursor_up": ("move", "previous row", ("↑",)),
    "open": ("move", "open the selected row", ()),
    "back": ("move", "back to the previous screen", ()),
    "filter": ("move", "filter the rows (esc clears)", ()),
    "clear_filter": ("move", "clear the filter", ()),
    "tab('versions')": ("move", "versions tab", ()),
    "tab('drift')": ("move", "drift tab (per-column drift, histograms)", ()),
    "tab('live')": ("move", "live charts", ()),
    "close": ("move", "close", ()),
    "cancel": ("move", "cancel (nothing is written)", ()),
    "close_dialog": ("move", "close", ()),
    "dismiss_help": ("move", "close help", ()),
    "focus_next_now": ("move", "next field", ()),
    "focus_previous_now": ("move", "previous field", ()),
    "scroll_down": ("move", "scroll down", ()),
    "scroll_up": ("move", "scroll up", ()),
    "page_down": ("move", "page down", ()),
    "page_up": ("move", "page up", ()),
    "scroll_home": ("move", "top", ()),
    "scroll_end": ("move", "bottom", ()),
    "audit": ("watch", "audit log (who did what, hash-chained)", ()),
    "lineage": ("watch", "lineage of the selected version", ()),
    "jobs": ("watch", "retraining jobs", ()),
    "verify": ("watch", "verify the audit chain again", ()),
    "toggle_pause": ("watch", "pause / resume polling", ()),
    "pause": ("watch", "pause polling", ()),
    "resume": ("watch", "resume polling (paused now)", ()),
    "slower": ("watch", "poll less often", ()),
    "faster": ("watch", "poll more often", ()),
    "poll_now": ("watch", "poll every endpoint now", ()),
    "promote": ("release", "promote the selected version (gated, confirmed)", ()),
    "rollback": ("release", "roll an environment back", ()),
    "approve": ("release", "approve the selected version", ()),
    "reject": ("release", "reject the selected version", ()),
    "retrain": ("release", "start retraining", ()),
    "cancel_job": ("release", "cancel the selected job (asks first)", ()),
    "submit": ("release", "release", ()),
    "enter": ("release", "next field, then release", ()),
    "abort": ("release", "abort the running rollout (rolls back)", ()),
    "help": ("app", "this help", ()),
    "next_theme": ("app", "next colour theme (kept across restarts)", ()),
    "command_palette": ("app", "command palette: every action by name", ()),
    "quit": ("app", "quit", ()),
}
# actions shown on one line with their partner: the first's keys, then the second's
PAIRS = {"cursor_down": ("cursor_up", "next / previous row"), "slower": ("faster", "poll less / more often"),
         "scroll_down": ("scroll_up", "scroll down / up"), "page_down": ("page_up", "page down / up"),
         "scroll_home": ("scroll_end", "top / bottom"),
         "focus_next_now": ("focus_previous_now", "next / previous field")}


def key_label(binding: Binding, key: str) -> str:
    return KEY_NAMES.get(key, key)


def _own_bindings(node: Any) -> set[str]:
    """Actions a class of modeldeck declares itself (not Textual's App/Screen defaults)."""
    out: set[str] = set()
    for cls in type(node).__mro__:
        if not cls.__module__.startswith("modeldeck."):
            continue
        for b in cls.__dict__.get("BINDINGS", []):
            if isinstance(b, Binding):
                out.add(b.action)
    return out


def describe(screen: Screen) -> list[tuple[str, str, str, str]]:
    """(keys, what it does, group, where: "screen" or "app") for every modeldeck binding
    active on ``screen``, keys bound to one action together; in help order: by group, the
    screen's own keys first in each."""
    app = screen.app
    own_screen, own_app = _own_bindings(screen), _own_bindings(app)
    grouped: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str]] = []
    disabled: set[tuple[str, str]] = set()
    for key, active in screen.active_bindings.items():
        b = active.binding
        if b.action == "app.help":
            ident = ("help", "app")  # a dialog's own ? and f1 are the app's help
            grouped.setdefault(ident, [])
            if ident not in order:
                order.append(ident)
            grouped[ident].append(key_label(b, key))
            continue
        if active.node is screen and b.action in own_screen:
            where = "screen"
        elif active.node is app and (b.action in own_app or key == app.COMMAND_PALETTE_BINDING):
            where = "app"
        else:
            continue  # a widget's or Textual's own binding
        ident = (b.action, where)
        if ident not in grouped:
            grouped[ident] = []
            order.append(ident)
        grouped[ident].append(key_label(b, key))
        if not active.enabled:
            disabled.add(ident)
    help_row = ("help", "app")
    if help_row not in grouped:  # a text field has focus: ? is a letter there, f1 still works
        grouped[help_row] = []
        order.append(help_row)
    if "f1" not in grouped[help_row]:
        grouped[help_row].append("f1")
    rows = []
    partners = {second: first for first, (second, _) in PAIRS.items()}
    for action, where in order:
        if action in partners and (partners[action], where) in grouped:
            continue  # shown with its partner
        group, what, extra = ACTIONS.get(action, ("app", action.replace("_", " "), ()))
        keys = list(dict.fromkeys([*grouped[(action, where)], *extra]))
        if action in PAIRS and (PAIRS[action][0], where) in grouped:
            other = PAIRS[action][0]
            other_keys = list(dict.fromkeys([*grouped[(other, where)], *ACTIONS.get(other, ("", "", ()))[2]]))
            keys = ["/".join(pair) for pair in zip(keys, other_keys)] + keys[len(other_keys):]
            what = PAIRS[action][1]
        if (action, where) in disabled:
            what += " (not now)"
        rows.append((" ".join(keys), what, group, where))
    rank = {g: i for i, g in enumerate(GROUPS)}
    rows.sort(key=lambda r: (rank.get(r[2], 9), r[3] != "screen"))
    return rows


def help_text(screen: Screen, rows: list[tuple[str, str, str, str]]) -> Text:
    t = Text()
    for group in GROUPS:
        entries = [r for r in rows if r[2] == group]
        if not entries:
            continue
        if t:
            t.append("\n")
        t.append(GROUP_TITLES[group] + "\n", style="bold underline")
        for keys, what, _, _ in entries:
            t.append(f"  {keys:<14}", style="bold")
            t.append(f" {what}\n")
    legend = screen.HELP_LEGEND if isinstance(screen, DeckView) else ()
    if legend:
        t.append("\nColumns and colours\n", style="bold underline")
        for term, meaning, style in legend:
            t.append(f"  {term:<14}", style=style or "bold")
            t.append(f" {meaning}\n")
    t.rstrip()
    return t


class HelpScreen(DeckModal):
    CLOSE_ACTION = "dismiss_help"
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss_help", "Close", key_display="esc"),
        Binding("j,down", "scroll_down", "Scroll", key_display="j/k"),
        Binding("k,up", "scroll_up", "Up", show=False),
        Binding("pagedown,space", "page_down", "Page", key_display="pgdn/pgup"),
        Binding("pageup,b", "page_up", "Page up", show=False),
        Binding("home,g", "scroll_home", "Top", key_display="home/end"),
        Binding("end,G", "scroll_end", "Bottom", show=False),
    ]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under
        self.rows = describe(under)

    def compose(self) -> ComposeResult:
        title = (self.under.HELP_TITLE if isinstance(self.under, DeckView) else None) \
            or type(self.under).__name__.replace("Screen", "")
        with Vertical(id="help-box"):
            yield Static(Text.assemble((f"Help: {title}", "bold"), ("   esc closes, j/k pgup/pgdn scroll", "dim")),
                         markup=False, id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(help_text(self.under, self.rows), markup=False, id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def _scroll(self) -> VerticalScroll:
        return self.query_one("#help-scroll", VerticalScroll)

    def action_scroll_down(self) -> None:
        self._scroll().scroll_down(animate=False)

    def action_scroll_up(self) -> None:
        self._scroll().scroll_up(animate=False)

    def action_page_down(self) -> None:
        self._scroll().scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self._scroll().scroll_page_up(animate=False)

    def action_scroll_home(self) -> None:
        self._scroll().scroll_home(animate=False)

    def action_scroll_end(self) -> None:
        self._scroll().scroll_end(animate=False)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)

    @property
    def entries(self) -> list[Any]:
        return [(keys, what, where) for keys, what, _, where in self.rows]
