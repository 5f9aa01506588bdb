"""Fleet (home): one row per endpoint, updated in place; the selected endpoint's trends below."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Static

from modeldeck.core import judge, paths
from modeldeck.core.config import EndpointConfig
from modeldeck.core.snapshot import PENDING, DriftSummary, EndpointSnapshot
from modeldeck.core.textfmt import middle, one_line
from modeldeck.tui.screens.base import DeckScreen
from modeldeck.tui.widgets import cells
from modeldeck.tui.widgets.field import Field
from modeldeck.tui.widgets.keybar import KeyBar
from modeldeck.tui.widgets.livetable import Column, LiveTable
from modeldeck.tui.widgets.trend import Trend
from modeldeck.tui.widgets.widths import share

WIDE = 110  # at or above this many columns the table shows every column

# (key, label, minimum width); each column's width follows its content (tui/widgets/widths.py)
COLUMNS_WIDE = [("name", "ENDPOINT", 10), ("model", "MODEL", 6), ("env", "ENV", 4), ("status", "STATUS", 8),
                ("version", "SERVED/REG", 5), ("rps", "REQ/S", 5), ("err", "ERR %", 5), ("p95", "P95 MS", 6),
                ("drift", "DRIFT", 5), ("quality", "QUALITY", 6), ("age", "AGE", 3)]
COLUMNS_NARROW = [("name", "ENDPOINT", 10), ("env", "ENV", 4), ("status", "STATUS", 8),
                  ("version", "SRV/REG", 5), ("rps", "REQ/S", 5), ("err", "ERR%", 4), ("p95", "P95", 4),
                  ("drift", "DRIFT", 5), ("quality", "QUAL", 5)]
FILTER_KEYS = ("name", "model", "env", "status")
RIGHT = {"version", "rps", "err", "p95", "drift", "quality", "age"}
ENV_SHORT = {"production": "prod", "staging": "stage", "development": "dev", "canary": "canry"}


class _Header(Static):
    """The fleet's one-line header. What fits depends on its width (the paths are shortened to
    the room left), so it is laid out again when its width changes, not only on the next refresh."""

    def on_resize(self, event: events.Resize) -> None:
        screen = self.screen
        if isinstance(screen, FleetScreen):
            screen.redraw_header()


class FleetScreen(DeckScreen):
    HELP_TITLE = "Fleet"
    HELP_LEGEND = (
        ("UP", "ready and within its thresholds", cells.STATUS_STYLE["UP"]),
        ("DEGRADED", "serving, but errors, latency, drift or readiness are off", cells.STATUS_STYLE["DEGRADED"]),
        ("DOWN", "its health check fails or does not answer", cells.STATUS_STYLE["DOWN"]),
        ("PENDING", "not polled yet", cells.STATUS_STYLE["PENDING"]),
        ("SERVED/REG 2/3", "version served / version the registry holds for the environment; red: they differ", ""),
        ("ERR %  P95 MS", "error share and 95th percentile latency: yellow warning, red critical", ""),
        ("DRIFT 6/8 0.34", "6 of 8 judged columns drifted; worst PSI 0.34 (columns with 200+ rows)", ""),
        ("DRIFT n=15", "rows in the live window, too few to judge a column yet", "dim"),
        ("QUALITY auc .912 ▼", "live quality from the labels (the metric that got the most worse, else ROC AUC, "
         "accuracy, R²); ▼ yellow/red: that much worse than the served version's registered value (▽ worse, "
         "▲ better; MAE and RMSE are better lower)", ""),
        ("QUALITY n=42/200", "labelled rows so far, of quality_min_rows (200): not enough to judge, no verdict",
         "dim"),
        ("AGE", "since the last poll: yellow late, red stale", ""),
        ("header", "counts by status, drifting endpoints, the poll interval, registry and config", ""),
    )
    BINDINGS = [
        Binding("j", "cursor_down", "Move", key_display="j/k"),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("enter", "open", "Open", priority=True),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("A", "audit", "Audit"),
        Binding("o", "rollouts", "Rollouts"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._layout: list[tuple[str, str, int]] = []
        self._natural: dict[str, int] = {}  # the widest cell seen per column (grows, never shrinks)
        self._rows: list[str] = []
        # per row: what its cells came from (snapshot, taken at, age shown, narrow layout)
        self._cells: dict[str, tuple[EndpointSnapshot | None, float | None, int, bool]] = {}
        self._names: tuple[str, ...] = ()  # every endpoint's name when the rows were built
        self._seen: tuple[dict[str, EndpointSnapshot], float, float] = ({}, 0.0, 2.0)  # latest, now, interval
        self._by_name: dict[str, EndpointConfig] = {}
        self._endpoints_seen: Sequence[EndpointConfig] | None = None  # what _by_name was made of
        self._stale_generation: int | None = None  # the source generation off-screen rows were marked at
        self._detail_stamp: tuple[Any, ...] | None = None  # what the detail and trends show
        self._header_shown: Text | None = None

    def compose(self) -> ComposeResult:
        yield _Header("", id="fleet-header", markup=False)
        yield LiveTable(id="fleet-table")
        yield Static("", id="fleet-detail", markup=False)
        with Horizontal(id="fleet-trends"):
            yield Trend("req/s", fmt="{:.1f}", id="trend-rps")
            yield Trend("p95", " ms", fmt="{:.0f}", id="trend-p95")
            yield Trend("errors", "%", fmt="{:.1f}", id="trend-err")
        yield Field(placeholder="filter: words, or name: model: env: status: (esc clears)", id="fleet-filter")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#fleet-filter", Input).display = False
        self.query_one(LiveTable).fill = self._fill_row
        self._build_table()
        self.query_one(LiveTable).focus()
        self.refresh_snapshots(force=True)
        self.ready = True  # the app's refresh timer may update this screen from now on

    def on_screen_resume(self) -> None:
        if self.ready:  # back from another screen: show what changed meanwhile at once
            self.refresh_snapshots()

    # -- data -------------------------------------------------------------------------------------
    @property
    def endpoints(self) -> Sequence[EndpointConfig]:
        """The configured endpoints, and those ``[[discover]]`` found (they come and go). The
        source's own sequence (the same object until the set changes): not to be modified."""
        source = self.app.source
        found = source.endpoints() if source is not None and hasattr(source, "endpoints") else None
        if found is not None:
            return found
        settings = self.app.settings
        return settings.endpoints if settings is not None else ()

    def settings_changed(self) -> None:
        self._build_table()

    def _visible(self) -> Sequence[EndpointConfig]:
        f = self.filter_text.lower().strip()
        if not f:
            return self.endpoints
        latest = self.app.source.latest() if self.app.source is not None else {}
        out = []
        for ep in self.endpoints:
            snap = latest.get(ep.name)
            status = ((snap.status if snap is not None else "") or PENDING).lower()
            fields = {"name": ep.name.lower(), "model": ep.model.lower(), "env": ep.environment.lower(),
                      "status": status}
            hay = " ".join(fields.values())
            ok = True
            for word in f.split():
                key, sep, value = word.partition(":")
                ok = ok and (value in fields[key] if sep and key in fields else word in hay)
            if ok:
                out.append(ep)
        return out

    def _filter_problem(self) -> str:
        """What the filter line says when nothing matches or a key is not one it has."""
        unknown = [w.partition(":")[0] for w in self.filter_text.lower().split()
                   if ":" in w and w.partition(":")[0].isidentifier() and w.partition(":")[0] not in FILTER_KEYS]
        if unknown:
            return (f"{', '.join(k + ':' for k in unknown)} is no filter key (name:, model:, env:, status: or words)")
        if not self._rows:
            return "no endpoint matches"
        return ""

    def _build_table(self) -> None:
        """(Re)build columns and rows: on start, on a width change across WIDE, and on
        filtering. Everything else updates cells in place."""
        table = self.query_one(LiveTable)
        width = self.app.size.width
        layout = COLUMNS_WIDE if width >= WIDE else COLUMNS_NARROW
        if layout is not self._layout:
            self._layout = layout
            self._cells.clear()
            for ep in self.endpoints:  # the names are known before the first poll
                for key, value in (("name", ep.name), ("model", ep.model), ("env", self._env(ep))):
                    self._natural[key] = max(self._natural.get(key, 0), len(one_line(value, 40)))
            self._fit_columns(force=True)
        self._rows = [ep.name for ep in self._visible()]
        endpoints = self.endpoints
        self._names = tuple(ep.name for ep in endpoints)
        self._endpoints_seen = endpoints
        self._by_name = {ep.name: ep for ep in endpoints}
        table.set_rows(self._rows)
        self.refresh_snapshots(force=True)

    def _fit_columns(self, force: bool = False) -> None:
        """Give the columns their content's widths within the table's width."""
        table = self.query_one(LiveTable)
        available = table.size.width or max(20, self.app.size.width - 2)
        widths = share([(minimum, max(minimum, len(label), self._natural.get(key, 0)))
                        for key, label, minimum in self._layout], available)
        if force or [c.width for c in table.columns] != widths:
            table.set_columns([Column(key, label, w, right=key in RIGHT)
                               for (key, label, _), w in zip(self._layout, widths)])

    def on_resize(self) -> None:
        want = COLUMNS_WIDE if self.app.size.width >= WIDE else COLUMNS_NARROW
        if want is not self._layout:
            self._build_table()
        else:
            self.call_after_refresh(self._fit_columns)

    def _env(self, ep: EndpointConfig) -> str:
        return ENV_SHORT.get(ep.environment, ep.environment) if self._layout is COLUMNS_NARROW else ep.environment

    def _selected_name(self) -> str | None:
        return self.query_one(LiveTable).cursor_key

    def refresh_snapshots(self, force: bool = False) -> None:
        app = self.app
        source = app.source
        latest = source.latest() if source is not None else {}
        now = app.clock()
        interval = source.interval if source is not None else 2.0
        if force:
            self._detail_stamp = None
        endpoints = self.endpoints
        if endpoints is not self._endpoints_seen:  # a new set (or a copy): the names may differ
            if len(endpoints) != len(self._names) or any(a.name != b for a, b in zip(endpoints, self._names)):
                self._build_table()  # discovery found endpoints, or some went
                return
            self._endpoints_seen = endpoints
            self._by_name = {ep.name: ep for ep in endpoints}
        by_name = self._by_name
        self._update_header(latest, interval)
        table = self.query_one(LiveTable)
        self._seen = (latest, now, interval)
        visible = table.visible_rows(margin=5)
        narrow = self._layout is COLUMNS_NARROW
        grown = False
        # Rows off screen are only marked stale when new snapshots came (their cells are made
        # when drawn), so a fleet of thousands costs what is visible; the stamps below are kept
        # for the visible rows.
        generation = source.generation if source is not None else None
        if force or generation is None or generation != self._stale_generation:
            table.mark_all_stale(except_rows=visible)
            self._stale_generation = generation
        for i in visible:
            name = self._rows[i]
            ep = by_name.get(name)
            if ep is None:
                continue
            snap = latest.get(name)
            # the row's inputs: recompute cells only when the snapshot or the age shown changed
            taken = snap.taken_at if snap is not None else None
            stamp = (snap, taken, int(now - (taken or now)), narrow, self._badge_text(ep))
            old = self._cells.get(name)
            if not force and old is not None and old[0] is snap and old[1:] == stamp[1:]:
                continue  # (the snapshot itself is kept: an id() may be reused by a new one)
            self._cells[name] = stamp
            for key, cell in self._row_cells(ep, snap, now, interval).items():
                table.update_cell(name, key, cell)
                if cell.cell_len > self._natural.get(key, 0):
                    self._natural[key] = cell.cell_len
                    grown = True
        if grown:
            self._fit_columns()
        self._update_detail(latest)

    def _fill_row(self, name: str) -> None:
        """The cells of a row that changed while off screen (LiveTable asks while drawing it)."""
        ep = self._by_name.get(name)
        if ep is not None:
            latest, now, interval = self._seen
            snap = latest.get(name)
            taken = snap.taken_at if snap is not None else None
            self._cells[name] = (snap, taken, int(now - (taken or now)), self._layout is COLUMNS_NARROW)
            self.query_one(LiveTable).set_row(name, self._row_cells(ep, snap, now, interval))

    def _row_cells(self, ep: EndpointConfig, snap: EndpointSnapshot | None, now: float,
                   interval: float) -> dict[str, Text]:
        th = ep.thresholds
        env = self._env(ep)
        polled = snap is not None
        if snap is None:
            snap = EndpointSnapshot.pending(ep)
        err, p95 = snap.error_ratio, snap.latency_p95_ms
        cells_ = {
            "name": cells.plain(ep.name, 40),
            "model": cells.plain(ep.model, 40),
            "env": cells.plain(env, 20),
            "status": self._status_cell(ep, snap.status),
            "version": cells.versions(snap.served_version, snap.registry_version,
                                      mismatch=judge.version_mismatch(snap.registry_version, snap.served_versions)),
            "rps": cells.number(snap.request_rate, "{:.1f}"),
            "err": cells.number(None if err is None else err * 100, "{:.1f}", level=judge.error_level(err, th)),
            "p95": cells.number(p95, "{:.0f}", level=judge.latency_level(p95, th)),
            "drift": cells.drift(snap.drift, judge.drift_level(snap.drift, th)),
            "quality": cells.quality(snap.quality),
            "age": cells.age(snap.taken_at if polled else None, now, interval),
        }
        return {key: cells_[key] for key, _, _ in self._layout}

    def _header_counts(self, latest: dict[str, EndpointSnapshot]) -> tuple[dict[str, int], int, int]:
        """Endpoints per status, drifting, quality down: counted again only when new snapshots
        arrived (a fleet of thousands would cost every refresh tick)."""
        source = self.app.source
        key = (source.generation if source is not None else None, len(latest), len(self._names))
        cached = getattr(self, "_counted", None)
        if cached is not None and cached[0] == key and key[0] is not None:
            return cached[1]
        counts: dict[str, int] = {}
        drifting = 0
        worse = 0
        for ep in self.endpoints:
            snap = latest.get(ep.name)
            s = snap.status if snap is not None else PENDING
            counts[s] = counts.get(s, 0) + 1
            if snap is not None and judge.drift_level(snap.drift, ep.thresholds) == judge.WARNING:
                drifting += 1
            if snap is not None and snap.quality is not None and any(
                    v.key == "quality" for v in judge.snapshot_quality_verdicts(snap.quality)):
                worse += 1
        self._counted = (key, (counts, drifting, worse))
        return counts, drifting, worse

    def redraw_header(self) -> None:
        """The header again, for a new width (it shortens the paths to the room it has)."""
        if self.ready:
            latest, _, interval = self._seen
            self._update_header(latest, interval)

    def _update_header(self, latest: dict[str, EndpointSnapshot], interval: float) -> None:
        found = self.query("#fleet-header").results(Static)
        header = next(found, None)
        if header is None:  # not mounted (yet, or any more: the screen is being torn down)
            return
        app = self.app
        settings = app.settings
        t = Text(no_wrap=True, overflow="ellipsis")
        if settings is None:
            t.append(app.status_line or "no configuration", style="bold yellow")
        else:
            counts, drifting, worse = self._header_counts(latest)
            for word in ("UP", "DEGRADED", "DOWN", "PENDING"):
                if counts.get(word):
                    t.append(f"{counts[word]} {word.lower()}  ", style=cells.STATUS_STYLE[word])
            if drifting:
                t.append(f"{drifting} drifting  ", style=judge.STYLE[judge.WARNING])
            if worse:
                t.append(f"{worse} quality ▼  ", style=judge.STYLE[judge.WARNING])
            paused = app.source is not None and app.source.paused
            t.append("⏸ PAUSED" if paused else f"every {interval:g}s", style="bold reverse yellow" if paused else "")
            if app.read_only:
                t.append("  read-only", style="bold cyan")
            if app.demo:
                t.append("  demo", style="bold magenta")
            if settings.mlflow is not None:
                t.append(f"  MLflow {one_line(settings.mlflow.url, 60)}", style="dim")
            error = app.source.error if app.source is not None else None
            if error:
                t.append("  " + one_line(error, 80), style="bold red")
            failed = getattr(app.source, "discover_errors", None) if app.source is not None else None
            found = failed() if callable(failed) else None
            if found:  # the last discovery failed: the rows shown are the set found before
                block, why = next(iter(found.items()))
                t.append(f"  discover {one_line(block, 20)}: {one_line(why, 80)}", style="bold red")
            history_note = getattr(app.source, "history_note", None) if app.source is not None else None
            note = history_note() if callable(history_note) else None
            if note:  # a large discovered fleet: fewer snapshots per endpoint than poll.history
                t.append("  " + one_line(note, 120), style="yellow")
            registry_error = getattr(app.source, "registry_error", None) if app.source is not None else None
            if registry_error:
                t.append("  registry: " + one_line(registry_error, 120), style="bold yellow")
        if self.filter_text:
            t.append(f"  filter: {one_line(self.filter_text, 30)} ({len(self._rows)}/{len(self.endpoints)})",
                     style="bold cyan")
            problem = self._filter_problem()
            if problem:
                t.append(f"  {problem}", style="bold yellow")
        if settings is not None:  # the paths last, shortened in the middle to the width left
            # the header's content width (its padding excluded), or before layout the screen's less the padding
            room = (header.size.width or self.app.size.width - 2) - t.cell_len
            reg, cfg = paths.display(settings.registry), paths.display(settings.path)
            reg_label = "  ledger " if settings.mlflow is not None else "  registry "
            both = room - len(reg_label) - len("  config ")
            if both >= len(reg) + len(cfg) or both >= 28:  # else each would be cut to a stub
                reg_w, cfg_w = share([(8, len(reg)), (8, len(cfg))], both, pad=0)
                t.append(f"{reg_label}{middle(reg, reg_w)}", style="dim")
                t.append(f"  config {middle(cfg, cfg_w)}", style="dim")
            elif room - len(reg_label) >= 8:  # no room for both: the registry, where releases go
                t.append(f"{reg_label}{middle(reg, room - len(reg_label))}", style="dim")
        if t != self._header_shown:  # one line, always: a repaint, not a layout of the screen
            self._header_shown = t
            header.update(t, layout=False)

    def _update_detail(self, latest: dict[str, EndpointSnapshot]) -> None:
        name = self._selected_name()
        detail = self.query_one("#fleet-detail", Static)
        source = self.app.source
        if name is None:
            self._detail_stamp = None
            empty = (self._filter_problem() or "no endpoint matches the filter") if self.filter_text else (
                "no endpoints configured" if self.app.settings is not None else "")
            detail.update(Text(empty, style="dim"))
            for tid in ("#trend-rps", "#trend-p95", "#trend-err"):
                self.query_one(tid, Trend).update([])
            return
        snap = latest.get(name)
        history = source.history(name) if source is not None else ()
        now = self.app.clock()
        ep = self._by_name.get(name)
        # the same endpoint, snapshot, history and second as drawn: nothing to do (the detail and
        # its three trends are laid out again on every update: a key or tick would pay for that)
        stamp = (name, snap, len(history), history[-1] if history else None, int(now), ep)
        if stamp == self._detail_stamp:
            return
        self._detail_stamp = stamp
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(one_line(name, 40), style="bold")
        if snap is None:
            t.append("  waiting for the first poll", style="dim")
        else:
            t.append("  ")
            t.append_text(cells.status(snap.status))
            if snap.reason and snap.reason != "ready":  # UP says ready
                t.append("  " + one_line(snap.reason, 160))
            if ep is not None:
                t.append_text(drift_words(snap.drift, ep))
            if snap.quality is not None:
                t.append("  quality ")
                t.append_text(quality_words(snap.quality))
        detail.update(t, layout=False)  # one line, always
        th = ep.thresholds if ep is not None else None
        times = [s.taken_at for s in history]
        self.query_one("#trend-rps", Trend).update([s.request_rate for s in history], times, now=now)
        self.query_one("#trend-p95", Trend).update([s.latency_p95_ms for s in history], times,
                                                   th.p95_ms_warn if th else None, now)
        self.query_one("#trend-err", Trend).update(
            [None if s.error_ratio is None else s.error_ratio * 100 for s in history], times,
            th.error_ratio_warn * 100 if th else None, now)

    # -- events and actions ------------------------------------------------------------------------
    def on_live_table_row_highlighted(self, event: LiveTable.RowHighlighted) -> None:
        latest = self.app.source.latest() if self.app.source is not None else {}
        self._update_detail(latest)

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_open()  # a mouse click on the highlighted row

    def action_cursor_down(self) -> None:
        self.query_one(LiveTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(LiveTable).action_cursor_up()

    def action_open(self) -> None:
        from modeldeck.tui.screens.model import ModelScreen

        name = self._selected_name()
        if name is None:
            return
        ep = self._by_name.get(name)
        if ep is None:
            return
        # Model screens are kept once built: going back to one is a resume, not a rebuild.
        key = f"model:{name}"
        if not self.app.is_screen_installed(key):
            self.app.install_screen(ModelScreen(ep), key)
        self.app.push_screen(key)

    def action_audit(self) -> None:
        from modeldeck.tui.screens.audit import AuditScreen

        self.app.push_screen(AuditScreen())

    def action_rollouts(self) -> None:
        from modeldeck.tui.screens.rollouts import RolloutsScreen

        self.app.push_screen(RolloutsScreen())

    def _rollout(self, ep: EndpointConfig) -> Any:
        """The endpoint's environment's newest rollout when it needs showing: active, or
        needing an operator (unverified, failed after the alias moved)."""
        try:
            rollouts = getattr(self.app, "latest_rollouts", {})
        except Exception:  # no app (a screen's cells computed on their own)
            return None
        r = rollouts.get((ep.model, ep.environment))
        return r if r is not None and (r.active or r.critical) else None

    def _badge_text(self, ep: EndpointConfig) -> str:
        from modeldeck.core import rollout

        r = self._rollout(ep)
        return "" if r is None else rollout.describe_state(r)

    def _status_cell(self, ep: EndpointConfig, status: str) -> Text:
        """The status, and the rollout badge after it (``UP BAKING 14s``; ``UNVERIFIED`` red)."""
        cell = cells.status(status)
        r = self._rollout(ep)
        if r is not None:
            from modeldeck.tui.screens.rollouts import badge

            cell = Text.assemble(cell, " ", badge(r))
        return cell

    def action_filter(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        box.display = True
        box.value = self.filter_text
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#fleet-filter", Input)
        changed = bool(self.filter_text)
        self.filter_text = ""
        box.value = ""
        box.display = False
        self.query_one(LiveTable).focus()
        if changed:
            self._build_table()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "fleet-filter" and event.value != self.filter_text:
            self.filter_text = event.value
            self._build_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "fleet-filter":
            if not self.filter_text:
                event.input.display = False
            self.query_one(LiveTable).focus()

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#fleet-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            self.action_clear_filter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.filter_text) or None
        if action == "open":
            if isinstance(self.focused, Input):
                return False  # enter submits the filter
            return bool(self._rows) or None
        return True


def drift_words(drift: DriftSummary | None, ep: EndpointConfig) -> Text:
    """The reason line's drift part, in the judge's words: what is drifting (the columns), or
    why nothing is judged yet."""
    t = Text()
    if drift is None:
        return t
    if drift.error:
        t.append("  drift: " + one_line(drift.error, 100), style="red")
        return t
    lv = judge.drift_level(drift, ep.thresholds)
    if not drift.n_columns:
        rows = "" if drift.window_rows is None else f": {drift.window_rows} rows in the window"
        t.append(f"  drift not judged yet{rows}", style="dim")
        return t
    names = [str(c.get("column")) for c in judge.counted_columns(drift.result) if c.get("drifted")]
    if drift.n_drifted:
        t.append("  drifting: ", style=judge.STYLE[lv])
        if names:
            t.append(", ".join(one_line(n, 30) for n in names[:6]) + (" …" if len(names) > 6 else ""),
                     style=judge.STYLE[lv])
        t.append(f" ({drift.n_drifted} of {drift.n_columns} columns"
                 + (", dataset drift" if drift.dataset_drift else "") + ")")
    else:
        t.append(f"  no drift in {drift.n_columns} columns", style="dim")
    if drift.worst_psi is not None:
        t.append(f", worst PSI {drift.worst_psi:.2f} ({one_line(drift.worst_psi_column or '', 30)})", style="dim")
    return t


def quality_words(summary: Any) -> Text:
    """``accuracy 0.765 (registered 0.881), 1000 labelled rows`` (the metric that dropped the
    most, else the headline) in the judge's colour; why there is no number, else."""
    doc = summary.result or {}
    if summary.error or doc.get("status") == "error":
        return Text(one_line(summary.error or doc.get("error") or "error", 100), style="red")
    if doc.get("status") == "not_enough_labels":
        return Text(f"not enough labels ({doc.get('rows')} of {doc.get('min_rows')})", style="dim")
    from modeldeck.core.report import quality_focus

    name, value, reg, lv = quality_focus(summary)
    t = Text(f"{name} {'-' if value is None else f'{value:.3f}'}", style=judge.STYLE[lv])
    if reg is not None:
        t.append(f" (registered {reg:.3f})", style="dim")
    t.append(f", {doc.get('rows')} labelled rows")
    return t
