"""What every modeldeck screen shares, declared once so the app calls it without ``hasattr``.

:class:`DeckView` is the interface: ``ready`` (the app's refresh timer may update the screen),
``refresh_snapshots(force)`` (re-read the snapshot source and update changed cells) and
``settings_changed()`` (settings arrived after start: the demo fleet's config); each has a
no-op default. ``DeckScreen`` and ``DeckModal`` are the full-screen and the dialog flavour.

A worker that raises becomes a notice (and a log line), never a traceback that ends the app:
worker state messages do not bubble, so each screen forwards its own to the app's single
handler (``ModeldeckApp.worker_state_changed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.worker import Worker

if TYPE_CHECKING:
    from modeldeck.tui.app import ModeldeckApp


class DeckView:
    """The interface the app uses on its screens (mixed into a Textual ``Screen``)."""

    HELP_TITLE: ClassVar[str | None] = None  # the help screen's title (default: from the class name)
    # the help screen's legend: (term, what it means, Rich style of the term) for the columns and
    # colours this screen shows
    HELP_LEGEND: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    ready: bool = False  # set once mounted; until then the refresh timer leaves the screen alone

    if TYPE_CHECKING:  # every screen runs inside the modeldeck app

        @property
        def app(self) -> ModeldeckApp: ...

    def refresh_snapshots(self, force: bool = False) -> None:
        """Show the source's newest snapshots; ``force`` recomputes cells that look unchanged."""

    def settings_changed(self) -> None:
        """The app's settings were replaced (the demo fleet's config arrived)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)


# App is invariant in its return type, so ModeldeckApp (an App[int]) does not type-check as the
# App[object] that MessagePump.app declares; the narrower type is what every screen here gets.
class DeckScreen(DeckView, Screen):  # type: ignore[misc]
    """A full screen. Its key bar is hidden while a dialog is over it (the dialog has its own:
    the keys shown are always those of what has focus)."""

    WRITE_ACTIONS: ClassVar[tuple[str, ...]] = ()  # hidden with --read-only; their keys say why

    def on_key(self, event: events.Key) -> None:
        if not self.WRITE_ACTIONS or not self.app.read_only:
            return
        for b in self.BINDINGS:  # type: ignore[attr-defined]
            if isinstance(b, Binding) and b.action in self.WRITE_ACTIONS and event.key in b.key.split(","):
                event.stop()
                what = (b.description or b.action).lower()
                self.app.notify(f"read-only: {what} is disabled (started with --read-only)", severity="warning",
                                key="read-only")
                return

    def on_screen_suspend(self) -> None:
        from modeldeck.tui.widgets.keybar import KeyBar

        for bar in self.query(KeyBar):
            bar.display = False

    def on_screen_resume(self) -> None:
        from modeldeck.tui.widgets.keybar import KeyBar

        for bar in self.query(KeyBar):
            bar.display = True


class DeckModal(DeckView, ModalScreen):  # type: ignore[misc]
    """A dialog: its own key bar at the bottom; ``q`` closes it unless a text field has focus
    (then q is a letter); ``f1`` (and ``?`` outside text fields) opens help on it; tab and
    shift+tab move focus *before* the next key is handled (priority bindings: keys typed right
    after tab land in the field tab moved to)."""

    CLOSE_ACTION: ClassVar[str] = "cancel"  # the action esc runs; q runs it too
    BINDINGS = [
        Binding("q", "close_dialog", "Close", show=False),
        # a dialog sees none of the app's bindings (Textual stops the chain at a modal screen)
        Binding("question_mark", "app.help", "Help", key_display="?"),
        Binding("f1", "app.help", "Help", priority=True),
        Binding("tab", "focus_next_now", "Next field", show=False, priority=True),
        Binding("shift+tab", "focus_previous_now", "Previous field", show=False, priority=True),
    ]

    async def mount_composed_widgets(self, widgets: list[Widget]) -> None:
        """Every dialog gets a key bar after what its compose() yields."""
        from modeldeck.tui.widgets.keybar import KeyBar

        if not any(isinstance(w, KeyBar) for w in widgets):
            widgets = [*widgets, KeyBar()]
        await super().mount_composed_widgets(widgets)  # type: ignore[misc]

    async def action_close_dialog(self) -> None:
        await self.run_action(self.CLOSE_ACTION)  # type: ignore[attr-defined]

    def action_focus_next_now(self) -> None:
        self.focus_next()  # type: ignore[attr-defined]

    def action_focus_previous_now(self) -> None:
        self.focus_previous()  # type: ignore[attr-defined]

