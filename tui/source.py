"""Where the screens get endpoint snapshots from.

``PollerSource`` runs ``core.poller.Poller`` in a thread with its own asyncio loop, so polling
never runs on the UI's path; the screens read ``latest()`` and ``history()`` on a timer and
update changed cells only. ``FixedSource`` serves fixed snapshots (snapshot tests, a stopped
fleet). Both have the same small surface the app uses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger("modeldeck.tui")


class FixedSource:
    """Snapshots given up front; polling controls only change the displayed state."""

    def __init__(self, latest: Mapping[str, Any] | None = None,
                 history: Mapping[str, Sequence[Any]] | None = None, interval: float = 2.0) -> None:
        self._latest = dict(latest or {})
        self._history = {k: tuple(v) for k, v in (history or {}).items()}
        self.interval = interval
        self.paused = False
        self.error: str | None = None
        self.generation = 1

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def latest(self) -> dict[str, Any]:
        return dict(self._latest)

    def history(self, name: str) -> tuple[Any, ...]:
        return self._history.get(name, ())

    def set(self, latest: Mapping[str, Any], history: Mapping[str, Sequence[Any]] | None = None) -> None:
        self._latest = dict(latest)
        if history is not None:
            self._history = {k: tuple(v) for k, v in history.items()}
        self.generation += 1

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def set_interval(self, seconds: float) -> None:
        self.interval = seconds

    def poll_now(self) -> None:
        pass


class PollerSource:
    """A ``core.poller.Poller`` in its own thread. ``on_error`` is called (from that thread)
    with a one-line message when the poller stops on an exception; it is restarted after
    ``restart_delay`` seconds, so one bad poll never ends watching."""

    def __init__(self, settings: Any, *, on_error: Callable[[str], None] | None = None,
                 restart_delay: float = 5.0) -> None:
        self.settings = settings
        self.on_error = on_error
        self.restart_delay = restart_delay
        self.error: str | None = None
        self.generation = 0
        self._poller: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._interval = settings.poll.interval
        self._paused = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="modeldeck-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        loop, poller = self._loop, self._poller
        if loop is not None and poller is not None and loop.is_running():
            loop.call_soon_threadsafe(poller.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        from modeldeck.core.poller import Poller

        while not self._stopping.is_set():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._poller = Poller(self.settings, on_snapshot=self._on_snapshot)
                if self._paused:
                    self._poller.pause()
                if self._interval != self.settings.poll.interval:
                    self._poller.set_interval(self._interval)
                loop.run_until_complete(self._run())
                self.error = None
            except Exception as e:  # the poller must never take the app down
                from modeldeck.core.textfmt import one_line

                self.error = one_line(f"poller stopped: {type(e).__name__}: {e}", 160)
                log.exception("poller crashed")
                if self.on_error:
                    self.on_error(self.error)
                self._stopping.wait(self.restart_delay)
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()
                    self._loop = None

    async def _run(self) -> None:
        try:
            await self._poller.run()
        finally:
            await self._poller.aclose()

    def _on_snapshot(self, snapshot: Any) -> None:
        self.generation += 1

    # -- what the screens read ---------------------------------------------------------------
    def latest(self) -> dict[str, Any]:
        return self._poller.latest() if self._poller is not None else {}

    def history(self, name: str) -> tuple[Any, ...]:
        return self._poller.history(name) if self._poller is not None else ()

    # -- controls ------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def interval(self) -> float:
        return self._interval

    def _call(self, name: str, *args: Any) -> None:
        loop, poller = self._loop, self._poller
        if loop is not None and poller is not None and loop.is_running():
            loop.call_soon_threadsafe(getattr(poller, name), *args)

    def pause(self) -> None:
        self._paused = True
        self._call("pause")

    def resume(self) -> None:
        self._paused = False
        self._call("resume")

    def set_interval(self, seconds: float) -> None:
        self._interval = seconds
        self._call("set_interval", seconds)

    def poll_now(self) -> None:
        self._call("poll_now")
