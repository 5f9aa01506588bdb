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

from textual.screen import ModalScreen, Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from modeldeck.tui.app import ModeldeckApp


class DeckView:
    """The interface the app uses on its screens (mixed into a Textual ``Screen``)."""

    HELP_TITLE: ClassVar[str | None] = None  # the help screen's title (default: from the class name)

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
    pass


class DeckModal(DeckView, ModalScreen):  # type: ignore[misc]
    pass
