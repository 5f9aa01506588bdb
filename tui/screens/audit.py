"""Audit log (`A`): newest first, filterable by model, action and actor, with the chain's
verification state on top; enter opens an entry's full before/after and gate results."""

from __future__ import annotations

import json

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Input, Static

from modeldeck.core.registry import AuditEntry, VerifyResult
from modeldeck.core.textfmt import one_line
from modeldeck.tui.messages import AuditLoaded, AuditVerified
from modeldeck.tui.screens.base import DeckModal, DeckScreen
from modeldeck.tui.widgets import cells
from modeldeck.tui.widgets.field import Field
from modeldeck.tui.widgets.keybar import KeyBar
from modeldeck.tui.widgets.widths import fill_table

PAGE = 500
SCROLL_BINDINGS = [
    Binding("j,down", "scroll('down')", "Scroll", key_display="j/k"),
    Binding("k,up", "scroll('up')", "Up", show=False),
    Binding("pagedown,space", "scroll('page_down')", "Page", key_display="pgdn/pgup", show=False),
    Binding("pageup,b", "scroll('page_up')", "Page up", show=False),
    Binding("home,g", "scroll('home')", "Top", show=False),
    Binding("end,G", "scroll('end')", "Bottom", show=False),
]


def scroll_box(box: VerticalScroll, how: str) -> None:
    {"down": box.scroll_down, "up": box.scroll_up, "page_down": box.scroll_page_down,
     "page_up": box.scroll_page_up, "home": box.scroll_home, "end": box.scroll_end}[how](animate=False)
# (key, label, minimum width): widths by content (tui/widgets/widths.py); reasons get what is left
AUDIT_COLUMNS = [("id", "#", 3), ("at", "WHEN (UTC)", 19), ("actor", "ACTOR", 6), ("action", "ACTION", 8),
                 ("subject", "SUBJECT", 10), ("reason", "REASON", 10)]


class AuditScreen(DeckScreen):
    HELP_TITLE = "Audit log"
    HELP_LEGEND = (
        ("rollback", "rollbacks, rejections and forced releases are red", "bold red"),
        ("/ filter", "model:NAME action:NAME actor:NAME, other words match anywhere", ""),
        ("✔ chain intact", "every entry's hash links to the one before (v checks again)", "bold green"),
    )
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc"),
        Binding("j", "cursor_down", "Move", key_display="j/k"),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("enter", "open", "Open", priority=True),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("v", "verify", "Verify"),
    ]

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.entries: list[AuditEntry] = []
        self.filter_text = ""
        self.verify_state: VerifyResult | None = None
        self._rows: list[tuple[str, list[Text]]] = []
        self._verify_asked = False  # the first check runs on opening; v asks again and is answered

    def compose(self) -> ComposeResult:
        yield Static(Text("checking the audit chain…", style="dim"), id="audit-header", markup=False)
        yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Field(placeholder="filter: model:NAME action:NAME actor:NAME or any text (esc clears)",
                    id="audit-filter")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        fill_table(table, AUDIT_COLUMNS, [], self._width())
        self.query_one("#audit-filter", Input).display = False
        if self.model:
            self.filter_text = f"model:{self.model}"
        table.focus()
        self.load()
        self.verify()

    @work(thread=True, exclusive=True, group="audit-load", exit_on_error=False, name="audit log")
    def load(self) -> None:
        from modeldeck.core.registry import Registry

        terms = parse_filter(self.filter_text)
        settings = self.app.settings
        assert settings is not None
        with Registry(settings.registry, create=False) as reg:
            entries = reg.audit(subject=terms.get("model"), action=terms.get("action"),
                                actor=terms.get("actor"), limit=PAGE * (4 if terms.get("text") else 1))
        text = terms.get("text", "").lower()
        if text:
            entries = [e for e in entries if text in " ".join(
                [e.actor, e.action, e.subject, e.reason, json.dumps(e.after, default=str)]).lower()][:PAGE]
        self.post_message(AuditLoaded(entries))

    def on_audit_loaded(self, message: AuditLoaded) -> None:
        entries = self.entries = message.entries
        rows = []
        for e in entries:
            style = "bold red" if e.action.startswith(("rollback", "reject")) or "forced" in str(e.after) else ""
            rows.append((str(e.id), [Text(str(e.id), justify="right"), Text(e.at[:19].replace("T", " ")),
                                     cells.plain(e.actor, 40), cells.plain(e.action, 30, style=style),
                                     cells.plain(e.subject, 60), cells.plain(e.reason, 200)]))
        self._rows = rows
        fill_table(self.query_one(DataTable), AUDIT_COLUMNS, rows, self._width())
        self._header()

    def _width(self) -> int:
        return max(20, self.app.size.width - 4)

    def on_resize(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        fill_table(table, AUDIT_COLUMNS, self._rows, self._width())
        if self._rows:
            table.move_cursor(row=min(row, len(self._rows) - 1))

    @work(thread=True, exclusive=True, group="audit-verify", exit_on_error=False, name="audit verify")
    def verify(self) -> None:
        from modeldeck.core.registry import Registry

        settings = self.app.settings
        assert settings is not None
        with Registry(settings.registry, create=False) as reg:
            result = reg.verify_audit()
        self.post_message(AuditVerified(result))

    def on_audit_verified(self, message: AuditVerified) -> None:
        result = self.verify_state = message.result
        self._header()
        if not result.ok:
            self.app.notify(result.describe(), severity="error", key="audit-verify")
        elif self._verify_asked:  # v: say the result, not only in the header
            self.app.notify(f"audit chain intact: {result.checked} entries verified", key="audit-verify")

    def action_verify(self) -> None:
        self._verify_asked = True
        self.verify()

    def _header(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        r = self.verify_state
        if r is None:
            t.append("checking the audit chain…", style="dim")
        elif r.ok:
            t.append(f"✔ chain intact ({r.checked} entries)", style="bold green")
        else:
            t.append(f"✘ chain BROKEN at entry {r.first_bad}: {one_line(r.problem, 80)}", style="bold red")
        if self.filter_text and not self.entries:
            t.append("   no entry matches the filter", style="bold yellow")
        else:
            t.append(f"   showing {len(self.entries)} newest", style="dim")
        if self.filter_text:
            t.append(f"   filter: {one_line(self.filter_text, 50)}", style="bold cyan")
            unknown = parse_filter(self.filter_text).get("unknown")
            if unknown:
                t.append(f"   {', '.join(k + ':' for k in unknown.split())} is no filter key (model:, action:, "
                         "actor:); searched as text", style="bold yellow")
        self.query_one("#audit-header", Static).update(t)

    def selected(self) -> AuditEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or not 0 <= table.cursor_row < len(self.entries):
            return None
        return self.entries[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        entry = self.selected()
        if entry is not None:
            self.app.push_screen(AuditEntryScreen(entry))

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # enter submits the filter while it has focus
        return not (action == "open" and isinstance(self.focused, Input))

    def action_back(self) -> None:
        box = self.query_one("#audit-filter", Input)
        if box.display:
            box.display = False
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()

    def action_filter(self) -> None:
        box = self.query_one("#audit-filter", Input)
        box.display = True
        box.value = self.filter_text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filter_text = event.value.strip()
        event.input.display = False
        self.query_one(DataTable).focus()
        self.load()

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#audit-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.display = False
            self.query_one(DataTable).focus()
            if self.filter_text:
                self.filter_text = ""
                self.load()


FILTER_KEYS = ("model", "action", "actor")


def parse_filter(text: str) -> dict[str, str]:
    """``model:churn action:promote actor:ana free words`` -> parts; a ``key:`` the audit
    filter does not have is searched as text and named under "unknown"."""
    out: dict[str, str] = {}
    free, unknown = [], []
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and key in FILTER_KEYS and value:
            out[key] = value
        else:
            if sep and key.isidentifier() and key not in FILTER_KEYS:
                unknown.append(key)
            free.append(word)
    if free:
        out["text"] = " ".join(free)
    if unknown:
        out["unknown"] = " ".join(unknown)
    return out


def entry_text(e: AuditEntry) -> Text:
    t = Text()
    t.append(f"audit entry {e.id}\n", style="bold")
    for label, value in (("when", e.at), ("actor", e.actor), ("action", e.action), ("subject", e.subject),
                         ("reason", e.reason or "-"), ("hash", e.hash)):
        t.append(f"{label:>8}  ", style="dim")
        t.append(one_line(value, 300) + "\n")
    for label, value in (("before", e.before), ("after", e.after)):
        t.append(f"{label:>8}  ", style="dim")
        dumped = json.dumps(value, indent=2, sort_keys=True, default=str)
        lines = dumped.splitlines() or ["null"]
        t.append(lines[0] + "\n")
        for line in lines[1:]:  # the JSON's indentation kept, each line made safe
            body = line.lstrip(" ")
            t.append(" " * 10 + " " * (len(line) - len(body)) + one_line(body, 300) + "\n")
    gates = (e.after or {}).get("gates") if isinstance(e.after, dict) else None
    if gates:
        t.append("\n   gates\n", style="bold")
        for g in gates:
            ok = g.get("passed") if isinstance(g, dict) else None
            t.append("  ✔ " if ok else "  ✘ ", style="green" if ok else "red")
            t.append(one_line(f"{g.get('name')}: {g.get('detail', '')}" if isinstance(g, dict) else g, 200) + "\n")
    t.rstrip()
    return t


class AuditEntryScreen(DeckModal):
    CLOSE_ACTION = "close"
    BINDINGS = [Binding("escape,q,enter", "close", "Close", key_display="esc"), *SCROLL_BINDINGS]

    def __init__(self, entry: AuditEntry) -> None:
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="audit-entry-box"):
            yield Static(entry_text(self.entry), markup=False, id="audit-entry-text")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, how: str) -> None:
        scroll_box(self.query_one("#audit-entry-box", VerticalScroll), how)
