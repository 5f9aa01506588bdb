"""Where the screens get endpoint snapshots from.

:class:`SnapshotSource` is the surface the app and the screens use; two classes implement it.
``PollerSource`` runs ``core.poller.Poller`` in a thread with its own asyncio loop, so polling
never runs on the UI's path; the screens read ``latest()`` and ``history()`` on a timer and
update changed cells only. ``FixedSource`` serves fixed snapshots (tests, a stopped fleet).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from modeldeck.core.config import EndpointConfig, Settings
from modeldeck.core.snapshot import EndpointSnapshot, QualityPoint

if TYPE_CHECKING:  # the poller (httpx) loads only when a PollerSource starts
    from modeldeck.core.poller import Poller

log = logging.getLogger("modeldeck.tui")


@runtime_checkable
class SnapshotSource(Protocol):
    """What the app and the screens read snapshots from and control polling with. Every method
    is called on the UI thread and returns at once (no I/O)."""

    @property
    def paused(self) -> bool:
        """Polling is paused (``p``)."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between polls of one endpoint."""
        ...

    @property
    def error(self) -> str | None:
        """One line when polling stopped on an error (it restarts by itself), else None."""
        ...

    @property
    def registry_error(self) -> str | None:
        """One line when the registry's aliases cannot be read (MLflow down, refusing, slow),
        else None; the last known aliases are kept meanwhile."""
        ...

    @property
    def generation(self) -> int:
        """Grows whenever new snapshots arrived."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def endpoints(self) -> tuple[EndpointConfig, ...] | None:
        """The endpoints watched now (the configured ones and those ``[[discover]]`` found), or
        None when they are the settings' own."""
        ...

    def latest(self) -> dict[str, EndpointSnapshot]:
        """The newest snapshot of every endpoint polled so far, by endpoint name (a copy)."""
        ...

    def history(self, name: str) -> tuple[EndpointSnapshot, ...]:
        """The kept snapshots of one endpoint, oldest first."""
        ...

    def quality_history(self, name: str) -> tuple[QualityPoint, ...]:
        """The kept quality measurements of one endpoint, oldest first."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_interval(self, seconds: float) -> None: ...

    def poll_now(self) -> None: ...


class FixedSource:
    """Snapshots given up front; polling controls only change the displayed state."""

    def __init__(self, latest: Mapping[str, EndpointSnapshot] | None = None,
                 history: Mapping[str, Sequence[EndpointSnapshot]] | None = None, interval: float = 2.0,
                 quality_history: Mapping[str, Sequence[QualityPoint]] | None = None) -> None:
        self._latest = dict(latest or {})
        self._history = {k: tuple(v) for k, v in (history or {}).items()}
        self._quality_history = {k: tuple(v) for k, v in (quality_history or {}).items()}
        self.interval = interval
        self.paused = False
        self.error: str | None = None
        self.registry_error: str | None = None
        self.generation = 1

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def endpoints(self) -> tuple[EndpointConfig, ...] | None:
        return None

    def latest(self) -> dict[str, EndpointSnapshot]:
        return dict(self._latest)

    def history(self, name: str) -> tuple[EndpointSnapshot, ...]:
        return self._history.get(name, ())

    def quality_history(self, name: str) -> tuple[QualityPoint, ...]:
        """The given measurements, else those the kept snapshots (and the latest) carry, each once."""
        if name in self._quality_history:
            return self._quality_history[name]
        out: list[QualityPoint] = []
        latest = self._latest.get(name)
        for snap in (*self._history.get(name, ()), *((latest,) if latest is not None else ())):
            q = snap.quality
            if q is not None and (not out or out[-1].computed_at != q.computed_at):
                out.append(QualityPoint.of(q))
        return tuple(out)

    def set(self, latest: Mapping[str, EndpointSnapshot],
            history: Mapping[str, Sequence[EndpointSnapshot]] | None = None,
            quality_history: Mapping[str, Sequence[QualityPoint]] | None = None) -> None:
        self._latest = dict(latest)
        if history is not None:
            self._history = {k: tuple(v) for k, v in history.items()}
        if quality_history is not None:
            self._quality_history = {k: tuple(v) for k, v in quality_history.items()}
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

    def __init__(self, settings: Settings, *, on_error: Callable[[str], None] | None = None,
                 restart_delay: float = 5.0) -> None:
        self.settings = settings
        self.on_error = on_error
        self.restart_delay = restart_delay
        self.error: str | None = None
        self.generation = 0
        self._poller: Poller | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._interval = settings.poll.interval
        self._paused = False
        self._busy_until = 0.0  # time.monotonic() until which the UI has work that must not wait

    def hold(self, seconds: float = 0.25) -> None:
        """The UI is handling a key: a refresh under way pauses between chunks of endpoints for
        ``seconds`` (the poller shares this process; it would take half of the interpreter)."""
        self._busy_until = time.monotonic() + seconds

    def _busy(self) -> bool:
        return time.monotonic() < self._busy_until

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
                self._poller.busy = self._busy
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
        poller = self._poller
        assert poller is not None
        try:
            await poller.run()
        finally:
            await poller.aclose()

    def _on_snapshot(self, snapshot: EndpointSnapshot) -> None:
        self.generation += 1

    # -- what the screens read ---------------------------------------------------------------
    def endpoints(self) -> tuple[EndpointConfig, ...] | None:
        poller = self._poller
        if poller is None or not self.settings.discover:
            return None
        return poller.configs()

    def discover_errors(self) -> dict[str, str]:
        """Why the last discovery of a ``[[discover]]`` block failed, by block name."""
        return self._poller.discover_errors if self._poller is not None else {}

    def history_note(self) -> str | None:
        """One line when a large discovered fleet keeps less history than ``poll.history``."""
        return self._poller.history_note if self._poller is not None else None

    def latest(self) -> dict[str, EndpointSnapshot]:
        return self._poller.latest() if self._poller is not None else {}

    def history(self, name: str) -> tuple[EndpointSnapshot, ...]:
        return self._poller.history(name) if self._poller is not None else ()

    def quality_history(self, name: str) -> tuple[QualityPoint, ...]:
        return self._poller.quality_history(name) if self._poller is not None else ()

    @property
    def registry_error(self) -> str | None:
        return self._poller.registry_fault if self._poller is not None else None

    # -- controls ------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def interval(self) -> float:
        return self._interval

    def _call(self, control: Callable[[Poller], None]) -> None:
        """Run ``control(poller)`` on the poller's own loop (its methods are not thread-safe)."""
        loop, poller = self._loop, self._poller
        if loop is not None and poller is not None and loop.is_running():
            loop.call_soon_threadsafe(control, poller)

    def pause(self) -> None:
        self._paused = True
        self._call(lambda p: p.pause())

    def resume(self) -> None:
        self._paused = False
        self._call(lambda p: p.resume())

    def set_interval(self, seconds: float) -> None:
        self._interval = seconds
        self._call(lambda p: p.set_interval(seconds))

    def poll_now(self) -> None:
        self._call(lambda p: p.poll_now())
