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

from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.binding import Binding
from textual.message import Message
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

    # what the app's styling was when this screen was last restyled whole (see post_message)
    _styled_with: tuple[Any, ...] | None = None

    def _style_epoch(self) -> tuple[Any, ...]:
        """What a screen's styles follow from besides its own widgets: the parsed rules (a new
        list on every parse: a theme, a CSS variable, a stylesheet read), the app's classes and
        the app-wide pseudo-classes (``:dark``, ``:ansi``, ``:inline``, ``:nocolor``)."""
        app = self.app
        return (app.stylesheet.rules, app.theme, app.current_theme.dark, frozenset(app.classes),
                app.native_ansi_color, app.is_inline, app.no_color)

    def post_message(self, message: Message) -> bool:
        """Textual restyles every widget of a screen pushed again (``ScreenResume``), which for
        a kept screen (the model screens) was a third of an enter's time. A widget's own class
        and pseudo-class changes (focus, hover, mounting) restyle it when they happen, kept
        screens included; what a hidden screen misses is a change of the app's styling (the
        theme above all), so the restyle is skipped only when that is as it was at the last one."""
        if isinstance(message, events.ScreenResume) and message.refresh_styles:
            epoch = self._style_epoch()
            old = self._styled_with
            if old is not None and old[0] is epoch[0] and old[1:] == epoch[1:]:
                message.refresh_styles = False
            self._styled_with = epoch
        return super().post_message(message)

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

        # Only a dialog shows this screen beneath it; under a full screen (or popped) the bar is
        # not seen, and hiding it there cost a layout and a repaint of the bar on every return.
        try:
            top = self.app.screen
        except Exception:  # no screen (the app shutting down)
            return
        if top is self or not isinstance(top, ModalScreen):
            return
        for bar in self.query(KeyBar):
            bar.display = False

    def on_screen_resume(self) -> None:
        from modeldeck.tui.widgets.keybar import KeyBar

        for bar in self.query(KeyBar):
            bar.display = True  # after the first time (the rule set inline) a no-op unless a dialog hid it


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

