"""Rollouts (``o`` from the fleet and model screens): every promote and rollback, newest first,
with its state (``BAKING 14s``; unverified and failed-after-the-move in red); enter follows the
selected one's step log live; ``X`` aborts it (rolled back, with a reason); ``C`` confirms an
unverified one (with a reason). The rollouts themselves run in their detached supervisors:
leaving this screen, or the app, stops nothing."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, RichLog, Static

from modeldeck.core.errors import ModeldeckError
from modeldeck.core.textfmt import one_line
from modeldeck.tui.messages import RolloutsLoaded, RolloutSteps
from modeldeck.tui.screens.base import DeckModal, DeckScreen
from modeldeck.tui.widgets.keybar import KeyBar
from modeldeck.tui.widgets.widths import fill_table

COLUMNS = [("id", "#", 3), ("model", "MODEL", 6), ("env", "ENV", 4), ("action", "ACTION", 6),
           ("versions", "FROM → TO", 7), ("state", "STATE", 10), ("started", "STARTED (UTC)", 19),
           ("actor", "ACTOR", 6), ("message", "MESSAGE", 20)]
LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "success": "bold green", "output": "dim"}
STATE_STYLE = {"done": "green", "rolled_back": "bold red", "aborted": "bold red", "failed": "bold red",
               "unverified": "bold white on red", "baking": "bold yellow", "verifying": "yellow",
               "deploying": "yellow", "gating": "yellow"}


def badge(r: Any) -> Text:
    """A rollout's state as a badge: ``BAKING 14s`` (yellow), ``UNVERIFIED`` (red)."""
    from modeldeck.core import rollout

    style = STATE_STYLE.get(r.state, "")
    if r.state == "failed" and not r.critical:
        style = "red"
    return Text(rollout.describe_state(r), style=style, no_wrap=True)


class ReasonScreen(DeckModal):
    """Asks for the reason an action needs (abort, confirm): enter gives it, esc asks again never."""

    CLOSE_ACTION = "cancel"
    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="esc")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="reason-box"):
            yield Static(Text(one_line(self.question, 200), style="bold"), markup=False, id="reason-question")
            yield Input(placeholder="reason (required; goes to the audit log)", id="reason-input")
            yield Static(Text("enter confirms, esc cancels with nothing written", style="dim"), markup=False,
                         id="reason-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if not reason:
            self.query_one("#reason-hint", Static).update(Text("a reason is required", style="bold red"))
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RolloutsScreen(DeckScreen):
    HELP_TITLE = "Rollouts"
    HELP_LEGEND = (
        ("BAKING 14s", "the new version is watched for 14 more seconds (its supervisor runs it)", "bold yellow"),
        ("DONE", "verified and baked", "green"),
        ("ROLLED_BACK", "verification or the bake failed: rolled back automatically", "bold red"),
        ("UNVERIFIED", "nothing watched it to its end: check, then C confirms (or roll back)", "bold white on red"),
        ("X", "abort the selected rollout: it is rolled back (asks for a reason)", ""),
    )
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc"),
        Binding("j", "cursor_down", "Move", key_display="j/k"),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("enter", "open", "Log", priority=True),
        Binding("X", "abort", "Abort"),
        Binding("C", "confirm", "Confirm"),
    ]

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.rollouts: list[Any] = []
        self.following: int | None = None
        self._last_step = 0
        self._loading = False
        self._loaded_at = 0.0

    def compose(self) -> ComposeResult:
        title = f"rollouts of {one_line(self.model, 60)}" if self.model else "rollouts"
        yield Static(Text(title + " (newest first): enter follows one's log, X aborts, C confirms", style="bold"),
                     id="rollouts-header", markup=False)
        yield DataTable(id="rollouts-table", cursor_type="row", zebra_stripes=True)
        yield RichLog(id="rollouts-log", wrap=True, markup=False, max_lines=2000)
        yield KeyBar()

    def on_mount(self) -> None:
        fill_table(self.query_one(DataTable), COLUMNS, [], self.size.width or 120)
        self.query_one(DataTable).focus()
        self.ready = True
        self.reload()

    # -- loading ---------------------------------------------------------------------------------
    def refresh_snapshots(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if force or now - self._loaded_at >= 1.0:
            self._loaded_at = now
            self.reload()

    def reload(self) -> None:
        if self._loading or self.app.settings is None:
            return
        self._loading = True
        self._load(self.following, self._last_step)

    @work(thread=True, exit_on_error=False, name="rollouts", group="rollouts")
    def _load(self, following: int | None, after: int) -> None:
        from modeldeck.core.registry import Registry

        settings = self.app.settings
        try:
            if settings is None:
                return
            with Registry(settings.registry, create=False, readonly=True) as reg:
                rows = reg.rollouts(self.model, limit=500)
                steps = reg.rollout_steps(following, after=after, limit=500) if following is not None else []
            self.post_message(RolloutsLoaded(rows))
            if following is not None:
                self.post_message(RolloutSteps(following, steps))
        finally:
            self._loading = False

    def on_rollouts_loaded(self, message: RolloutsLoaded) -> None:
        self.rollouts = message.rollouts
        table = self.query_one(DataTable)
        rows = [(str(r.id), [Text(str(r.id), justify="right"), Text(one_line(r.model, 40)),
                             Text(one_line(r.environment, 20)), Text(r.action),
                             Text(f"{'-' if r.from_version is None else r.from_version} → {r.to_version}"),
                             badge(r), Text(r.started_at[:19].replace("T", " ")), Text(one_line(r.actor, 30)),
                             Text(one_line(r.message, 200))]) for r in self.rollouts]
        keep = table.cursor_row
        fill_table(table, COLUMNS, rows, self.size.width or 120)
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1))

    def on_rollout_steps(self, message: RolloutSteps) -> None:
        if message.rollout_id != self.following:
            return
        log = self.query_one(RichLog)
        for st in message.steps:
            if st.id <= self._last_step:
                continue
            self._last_step = st.id
            line = Text(f"{st.at[11:19]} {st.stage:>8}  ", style="dim")
            line.append(one_line(st.message, 400), style=LEVEL_STYLE.get(st.level, ""))
            log.write(line)

    # -- actions -----------------------------------------------------------------------------------
    def selected(self) -> Any | None:
        table = self.query_one(DataTable)
        if not self.rollouts or table.cursor_row is None or table.cursor_row >= len(self.rollouts):
            return None
        return self.rollouts[table.cursor_row]

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_open(self) -> None:
        r = self.selected()
        if r is None:
            return
        self.following = r.id
        self._last_step = 0
        log = self.query_one(RichLog)
        log.clear()
        log.write(Text(f"rollout {r.id}: {r.action} {one_line(r.model, 40)} {one_line(r.environment, 20)} → "
                       f"version {r.to_version} by {one_line(r.actor, 30)}: {one_line(r.reason, 200)}", style="bold"))
        self._loading = False
        self.reload()

    def action_abort(self) -> None:
        r = self.selected()
        if self.app.read_only or r is None:
            return
        if not r.active:
            self.app.notify(f"rollout {r.id} already ended ({r.state})", severity="warning")
            return

        def done(reason: str | None) -> None:
            if reason:
                self._act("abort", r.id, reason)

        self.app.push_screen(ReasonScreen(f"abort rollout {r.id} ({r.model} {r.environment} → version "
                                          f"{r.to_version}) and roll it back: why?"), done)

    def action_confirm(self) -> None:
        r = self.selected()
        if self.app.read_only or r is None:
            return
        if r.state != "unverified":
            self.app.notify(f"rollout {r.id} is {r.state}; only an unverified one is confirmed", severity="warning")
            return

        def done(reason: str | None) -> None:
            if reason:
                self._act("confirm", r.id, reason)

        self.app.push_screen(ReasonScreen(f"confirm rollout {r.id}: {r.environment} of {r.model} was checked "
                                          f"by hand and serves version {r.to_version} well?"), done)

    @work(thread=True, exit_on_error=False, name="rollout action", group="rollout-action")
    def _act(self, what: str, rollout_id: int, reason: str) -> None:
        from modeldeck.core import rollout
        from modeldeck.core.registry import Registry

        settings = self.app.settings
        if settings is None:
            return
        try:
            with Registry(settings.registry, create=False) as reg:
                r = (rollout.abort(reg, rollout_id, reason) if what == "abort"
                     else rollout.confirm(reg, rollout_id, reason))
        except ModeldeckError as e:
            self.app.notify(str(e), severity="error")
            return
        if what == "abort":
            self.app.notify(f"rollout {r.id}: abort requested; its supervisor rolls it back" if r.active
                            else f"rollout {r.id} {r.state}: {r.message}", severity="warning")
        else:
            self.app.notify(f"rollout {r.id} confirmed")
        self._loaded_at = 0.0  # the next refresh (within half a second) shows the change

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("abort", "confirm") and self.app.read_only:
            return False
        return True
