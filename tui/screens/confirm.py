"""A yes/no question before an action that is easy to do twice or hard to undo (a second
retraining job, cancelling a job): ``y`` or enter on Yes confirms, ``n``/esc/q keeps things
as they are. Dismisses with True or False."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from modeldeck.core.textfmt import one_line
from modeldeck.tui.screens.base import DeckModal


class ConfirmScreen(DeckModal):
    CLOSE_ACTION = "no"
    BINDINGS = [
        Binding("y", "yes", "Yes"),
        Binding("n,escape", "no", "No", key_display="n/esc"),
    ]

    def __init__(self, question: str, detail: str = "", yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-box"):
            yield Static(Text(one_line(self.question, 200), style="bold"), markup=False, id="confirm-question")
            if self.detail:
                yield Static(Text(one_line(self.detail, 400), style="dim"), markup=False, id="confirm-detail")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes_label} (y)", id="confirm-yes", variant="warning")
                yield Button(f"{self.no_label} (n)", id="confirm-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()  # enter alone keeps things as they are

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)
