"""A text field for dialogs: entering it puts the cursor at the end of what it holds (Textual's
Input selects all of it on focus, so the next key would wipe a filled-in reason)."""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class Field(Input):
    def __init__(self, *args: object, **kw: object) -> None:
        kw.setdefault("select_on_focus", False)
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def _on_focus(self, event: events.Focus) -> None:
        super()._on_focus(event)
        self.cursor_position = len(self.value)
