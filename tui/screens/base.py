"""What every modeldeck screen shares: a worker that raises becomes a notice (and a log
line), never a traceback that ends the app. Worker state messages do not bubble, so each
screen forwards its own to the app's single handler."""

from __future__ import annotations

from textual.screen import ModalScreen, Screen
from textual.worker import Worker


class DeckScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)  # type: ignore[attr-defined]


class DeckModal(ModalScreen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)  # type: ignore[attr-defined]
