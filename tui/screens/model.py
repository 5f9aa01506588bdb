"""Model (enter on a fleet row): the model's versions, the endpoint's per-column drift with the
selected column's distributions, live charts over the kept history, and the endpoint's quality
from its labels (metrics with intervals against the served version's registered values, the
chart over time, the confusion matrix, labelled share and lag, the estimate kept apart)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from modeldeck.core import judge, quality
from modeldeck.core.config import EndpointConfig
from modeldeck.core.registry import Version
from modeldeck.core.snapshot import DriftSummary, EndpointSnapshot
from modeldeck.core.textfmt import finite, num, one_line
from modeldeck.tui.messages import VersionsLoaded
from modeldeck.tui.screens.base import DeckScreen
from modeldeck.tui.widgets import cells
from modeldeck.tui.widgets.histogram import Histogram
from modeldeck.tui.widgets.keybar import KeyBar
from modeldeck.tui.widgets.trend import Trend
from modeldeck.tui.widgets.widths import fill_table

# (key, label, minimum width): columns share the table's width by content (tui/widgets/widths.py)
VERSION_COLUMNS = [("version", "VER", 3), ("created", "CREATED UTC", 11), ("approval", "APPROVAL", 8),
                   ("envs", "HELD BY", 7), ("metrics", "METRICS", 12), ("dataset", "DATASET", 7),
                   ("code", "CODE", 7)]
QUALITY_COLUMNS = [("metric", "METRIC", 6), ("value", "VALUE", 5), ("interval", "95% INTERVAL", 11),
                   ("method", "METHOD", 6), ("rows", "ROWS", 4), ("registered", "REGISTERED", 5),
                   ("delta", "Δ", 6)]
DRIFT_COLUMNS = [("column", "COLUMN", 8), ("method", "METHOD", 8), ("score", "SCORE", 5),
                 ("threshold", "THRESH", 6), ("psi", "PSI", 5), ("miss", "MISS R/C", 8),
                 ("status", "STATUS", 6)]


class ModelScreen(DeckScreen):
    HELP_TITLE = "Model"
    HELP_LEGEND = (
        ("1 Versions", "newest first; HELD BY: environments holding it; METRICS: the gates' metrics first", ""),
        ("approved", "may be promoted (production may ask for more approvals)", "green"),
        ("pending", "not approved yet", "yellow"),
        ("rejected", "never promoted", "red"),
        ("2 Drift", "each column of the live window against the version's reference", ""),
        ("SCORE THRESH", "the column's drift statistic and the threshold it is judged by", ""),
        ("PSI", "population stability index: yellow at 0.1, red at 0.25 (200+ rows)", ""),
        ("MISS R/C", "missing values in the reference / the current window, in %", ""),
        ("low_sample", "fewer than 30 current values: not judged yet", "dim"),
        ("drift", "the column drifted", "bold red"),
        ("3 Live", "request rate, latency and errors over the kept history, from zero", ""),
        ("4 Quality", "captured predictions joined with their labels: each metric with its 95% interval "
         "against the served version's registered value; the headline metric over time (one point per "
         "measurement, every poll.quality_every polls; until there are two, over blocks of labelled rows)", ""),
        ("▼ yellow / red", "at least quality_drop (twice: red) worse than the registered value, the interval "
         "too: below it (above it for MAE and RMSE, by quality_drop x the registered value)", ""),
        ("estimated", "from the model's own probabilities while labels lag (CBPE); never mixed with measured", "cyan"),
    )
    BINDINGS = [
        # priority: handled as the key arrives, not after it has bubbled up from the focused
        # table through the tabs (seven hops, each queued behind whatever else is pending)
        Binding("escape", "back", "Back", key_display="esc", priority=True),
        Binding("j", "cursor_down", "Move", key_display="j/k"),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("1", "tab('versions')", "Versions", show=False),
        Binding("2", "tab('drift')", "Drift", show=False),
        Binding("3", "tab('live')", "Live", show=False),
        Binding("4", "tab('quality')", "Quality", show=False),
        Binding("l", "lineage", "Lineage"),
        Binding("P", "promote", "Promote"),
        Binding("R", "rollback", "Roll back"),
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("n", "retrain", "Retrain"),
        Binding("J", "jobs", "Jobs"),
        Binding("A", "audit", "Audit"),
        Binding("o", "rollouts", "Rollouts"),
    ]
    WRITE_ACTIONS = ("promote", "rollback", "approve", "reject", "retrain")

    def __init__(self, endpoint: EndpointConfig) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.model = endpoint.model
        self.versions: list[Version] = []
        self.aliases: dict[str, int] = {}
        self.environment_choices: list[Any] = []  # core.releases.EnvironmentChoice, from the registry worker
        self.evaluations: list[Any] = []  # core.registry.Evaluation of every version
        self._drift_key: tuple[float | None, str | None] | None = None
        self._quality_key: tuple[Any, ...] | None = None
        self._quality_cells: list[tuple[str, list[Text]]] = []
        self._drift_rows: list[str] = []
        self._drift_cols: dict[str, dict[str, Any]] = {}
        self._version_rows: list[int] = []
        self.select_version: int | None = None  # to select once the versions next load
        self.gate_metrics: list[str] = []  # shown first in the versions' METRICS
        self._version_cells: list[tuple[str, list[Text]]] = []
        self._drift_cells_shown: list[tuple[str, list[Text]]] = []
        self._header_shown: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="model-header", markup=False)
        with TabbedContent(initial="versions", id="model-tabs"):
            with TabPane("1 Versions", id="versions"), Vertical():
                yield Static("", id="registry-status", markup=False)
                yield DataTable(id="versions-table", cursor_type="row", zebra_stripes=True)
            with TabPane("2 Drift", id="drift"), Vertical():
                yield Static("", id="drift-summary", markup=False)
                yield DataTable(id="drift-table", cursor_type="row", zebra_stripes=True)
                yield Histogram(id="drift-histogram")
            with TabPane("3 Live", id="live"), VerticalScroll():
                yield Trend("requests/s", fmt="{:.1f}", id="live-rps", spark_height=3, axis=True)
                yield Trend("p95 latency", " ms", fmt="{:.0f}", id="live-p95", spark_height=3, axis=True)
                yield Trend("p50 latency", " ms", fmt="{:.0f}", id="live-p50", spark_height=3, axis=True)
                yield Trend("error ratio", "%", fmt="{:.1f}", id="live-err", spark_height=3, axis=True)
            with TabPane("4 Quality", id="quality"), VerticalScroll():
                yield Static("", id="quality-summary", markup=False)
                yield DataTable(id="quality-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="quality-estimate", markup=False)
                yield Trend("quality over time", fmt="{:.3f}", id="quality-trend", spark_height=3, axis=True,
                            threshold_word="registered", higher_is_worse=False)
                yield Static("", id="quality-confusion", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#registry-status", Static).display = False
        vt = self.query_one("#versions-table", DataTable)
        fill_table(vt, VERSION_COLUMNS, [], self._table_width())
        fill_table(self.query_one("#drift-table", DataTable), DRIFT_COLUMNS, [], self._table_width())
        fill_table(self.query_one("#quality-table", DataTable), QUALITY_COLUMNS, [], self._table_width())
        vt.focus()
        self.load_versions()
        self.set_interval(5.0, self._reload_if_current)
        self.refresh_snapshots(force=True)
        self.ready = True  # the app's refresh timer may update this screen from now on

    def on_screen_resume(self) -> None:
        if self.ready:  # shown again: what changed while away (the drift and quality parts
            self.load_versions()  # are stamped by what they show; new versions force a redraw)
            self.refresh_snapshots()

    def _table_width(self) -> int:
        return max(20, self.app.size.width - 4)  # less the scrollbar

    def on_resize(self) -> None:
        self._refill_tables()

    def _refill_tables(self) -> None:
        width = self._table_width()
        vt = self.query_one("#versions-table", DataTable)
        row = vt.cursor_row
        fill_table(vt, VERSION_COLUMNS, self._version_cells, width)
        if self._version_cells:
            vt.move_cursor(row=min(row, len(self._version_cells) - 1))
        dt = self.query_one("#drift-table", DataTable)
        row = dt.cursor_row
        fill_table(dt, DRIFT_COLUMNS, self._drift_cells_shown, width)
        if self._drift_cells_shown:
            dt.move_cursor(row=min(row, len(self._drift_cells_shown) - 1))
        qt = self.query_one("#quality-table", DataTable)
        row = qt.cursor_row
        fill_table(qt, QUALITY_COLUMNS, self._quality_cells, width)
        if self._quality_cells:
            qt.move_cursor(row=min(row, len(self._quality_cells) - 1))

    def _reload_if_current(self) -> None:
        if self.is_current:  # kept (installed) screens that are not shown stay quiet
            self.load_versions()

    # -- versions (registry, in a worker) -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="versions", exit_on_error=False, name="registry")
    def load_versions(self) -> None:
        from modeldeck.core import policy
        from modeldeck.core.errors import NotFoundError
        from modeldeck.core.mlflow import MlflowError
        from modeldeck.core.registry import open_registry
        from modeldeck.core.releases import environment_choices

        settings = self.app.settings
        assert settings is not None
        source = self.app.source
        live = source.endpoints() if source is not None else None  # with what [[discover]] found
        problem = None
        with open_registry(settings, create=False) as reg:
            def read() -> tuple[Any, Any, Any, Any, list[str]]:
                try:
                    versions = reg.versions(self.model)
                    aliases = reg.aliases(self.model)
                    choices = environment_choices(settings, reg, self.model, endpoints=live)
                    evaluations = reg.evaluations(self.model)
                    rules = policy.merge(settings.model(self.model), reg.policy(self.model)).model_config
                    return versions, aliases, choices, evaluations, [g.metric for g in rules.gates]
                except NotFoundError as e:
                    if isinstance(e, MlflowError):  # deleted in MLflow: say so, show the ledger's copy
                        raise
                    return [], {}, [], [], []

            try:
                versions, aliases, choices, evaluations, gates = read()
            except MlflowError as e:  # MLflow down, refusing, slow: the ledger's last known, said so
                problem = f"{one_line(e, 200)}; showing the ledger's last known versions and aliases"
                reg.offline = True  # type: ignore[attr-defined]
                versions, aliases, choices, evaluations, gates = read()
        self.post_message(VersionsLoaded(versions, aliases, choices, evaluations, gates, problem))

    def on_versions_loaded(self, message: VersionsLoaded) -> None:
        status = self.query_one("#registry-status", Static)
        if message.problem:
            status.update(Text(message.problem, style="bold yellow"))
        status.display = bool(message.problem)
        self.environment_choices = message.environments
        self.evaluations = message.evaluations
        gates_changed = message.gate_metrics != self.gate_metrics
        self.gate_metrics = message.gate_metrics
        self._show_versions(message.versions, message.aliases, force=gates_changed)

    def _show_versions(self, versions: list[Version], aliases: dict[str, int], force: bool = False) -> None:
        if not force and [(v.version, v.approval) for v in versions] == [(v.version, v.approval) for v in self.versions] \
                and aliases == self.aliases:
            if self.select_version in self._version_rows:
                table = self.query_one("#versions-table", DataTable)
                table.move_cursor(row=self._version_rows.index(self.select_version))
                self.select_version = None
            return
        self.versions, self.aliases = versions, aliases
        table = self.query_one("#versions-table", DataTable)
        selected = self.selected_version()
        holders: dict[int, list[str]] = {}
        for env, n in aliases.items():
            holders.setdefault(n, []).append(env)
        self._version_rows = []
        rows = []
        for v in reversed(versions):  # newest first
            held = holders.get(v.version, [])
            rows.append((str(v.version), [
                Text(str(v.version), justify="right"), cells.plain(v.created_at[5:16].replace("T", " ")),
                cells.approval(v.approval), Text(",".join(held) or "-", style="bold green" if held else "dim"),
                metrics_cell(v.metrics, self.gate_metrics), cells.plain((v.dataset_sha256 or "")[:12] or "-"),
                cells.plain(v.code_version or "-", 12)]))
            self._version_rows.append(v.version)
        self._version_cells = rows
        fill_table(table, VERSION_COLUMNS, rows, self._table_width())
        if self.select_version in self._version_rows:
            selected, self.select_version = self.select_version, None
        if selected in self._version_rows:
            table.move_cursor(row=self._version_rows.index(selected))
        self.refresh_snapshots(force=True)

    def _versions_changed(self, _result: object = None) -> None:
        """A dialog that may have written closed: read the versions again."""
        self.load_versions()

    def selected_version(self) -> int | None:
        table = self.query_one("#versions-table", DataTable)
        if not self._version_rows or not 0 <= table.cursor_row < len(self._version_rows):
            return None
        return self._version_rows[table.cursor_row]

    def version_obj(self, number: int | None) -> Version | None:
        return next((v for v in self.versions if v.version == number), None)

    # -- live data ------------------------------------------------------------------------------
    def refresh_snapshots(self, force: bool = False) -> None:
        source = self.app.source
        snap = source.latest().get(self.endpoint.name) if source is not None else None
        history = source.history(self.endpoint.name) if source is not None else ()
        self._update_header(snap)
        self._update_drift(snap, force)
        self._update_quality(snap, force)
        th = self.endpoint.thresholds
        times, now = [s.taken_at for s in history], self.app.clock()
        self.query_one("#live-rps", Trend).update([s.request_rate for s in history], times, now=now)
        self.query_one("#live-p95", Trend).update([s.latency_p95_ms for s in history], times, th.p95_ms_warn, now)
        self.query_one("#live-p50", Trend).update([s.latency_p50_ms for s in history], times, now=now)
        self.query_one("#live-err", Trend).update(
            [None if s.error_ratio is None else s.error_ratio * 100 for s in history], times,
            th.error_ratio_warn * 100, now)

    def _update_header(self, snap: EndpointSnapshot | None) -> None:
        ep = self.endpoint
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(one_line(self.model, 40), style="bold")
        t.append(f"  {one_line(ep.name, 40)} ({one_line(ep.environment, 20)})  ")
        if snap is None:
            t.append("waiting for the first poll", style="dim")
        else:
            t.append_text(cells.status(snap.status))
            t.append("  serving ")
            t.append_text(cells.versions(snap.served_version, snap.registry_version,
                                         mismatch=judge.version_mismatch(snap.registry_version, snap.served_versions)))
            if snap.reason:
                t.append("  " + one_line(snap.reason, 120))
        if t != self._header_shown:  # one line, always: a repaint, not a layout of the screen
            self._header_shown = t
            self.query_one("#model-header", Static).update(t, layout=False)

    def _update_drift(self, snap: EndpointSnapshot | None, force: bool) -> None:
        drift: DriftSummary | None = snap.drift if snap is not None else None
        stamp = (drift.computed_at, drift.error) if drift is not None else (None, None)
        if not force and stamp == self._drift_key:
            return
        self._drift_key = stamp
        summary = self.query_one("#drift-summary", Static)
        table = self.query_one("#drift-table", DataTable)
        if drift is None:
            summary.update(Text("no drift computed yet (the endpoint needs a capture source and a "
                                "reference for its served version)" if not self.endpoint.capture else
                                "waiting for the first drift comparison", style="dim"))
            table.clear()
            self._drift_rows = []
            self._drift_cols = {}
            self._show_histogram()
            return
        s = Text(no_wrap=True, overflow="ellipsis")
        if drift.error:
            s.append("drift: " + one_line(drift.error, 150), style="red")
        else:
            s.append("DATASET DRIFT" if drift.dataset_drift else "no dataset drift",
                     style="bold red" if drift.dataset_drift else "green")
            s.append(f"  {drift.n_drifted}/{drift.n_columns} columns drifted")
            if not drift.n_columns:
                s = Text("no column judged yet" + ("" if drift.window_rows is None else
                                                   f": {drift.window_rows} rows in the window"), style="dim")
            if drift.worst_psi is not None:
                s.append(f"  worst PSI {drift.worst_psi:.3f} ({one_line(drift.worst_psi_column or '', 30)})")
        summary.update(s)
        columns = list((drift.result or {}).get("columns", []))
        names = [str(c.get("column")) for c in columns]
        selected = self._selected_column()
        rows = []
        for c in columns:
            by_key = self._drift_cells(c)
            rows.append((str(c.get("column")), [by_key[key] for key, _, _ in DRIFT_COLUMNS]))
        self._drift_cells_shown = rows
        fill_table(table, DRIFT_COLUMNS, rows, self._table_width())
        self._drift_rows = names
        if selected in names:
            table.move_cursor(row=names.index(selected))
        self._drift_cols = {str(c.get("column")): c for c in columns}
        self._show_histogram()

    @staticmethod
    def _drift_cells(c: dict[str, Any]) -> dict[str, Text]:
        def f(value: Any, digits: int = 3) -> Text:
            return Text("-" if value is None else num(value, digits), justify="right")

        status = str(c.get("status") or ("drift" if c.get("drifted") else "ok"))
        miss = f"{(c.get('missing_share_reference') or 0) * 100:.0f}/{(c.get('missing_share_current') or 0) * 100:.0f}%"
        psi = judge.psi_counts(c)  # only a judged column's PSI over enough rows counts
        raw = finite(c.get("psi"))
        return {
            "column": cells.plain(c.get("column"), 40),
            "method": cells.plain(c.get("method"), 20),
            "score": f(c.get("score")),
            "threshold": f(c.get("threshold"), 2),
            "psi": Text("-" if raw is None else f"{raw:.3f}", justify="right",
                        style="dim" if psi is None else ("bold red" if psi >= 0.25 else ("yellow" if psi >= 0.1 else ""))),
            "miss": Text(miss, justify="right"),
            "status": Text(one_line(status, 12), style=cells.DRIFT_STATUS_STYLE.get(status, "")),
        }

    def _selected_column(self) -> str | None:
        table = self.query_one("#drift-table", DataTable)
        if not self._drift_rows or not 0 <= table.cursor_row < len(self._drift_rows):
            return None
        return self._drift_rows[table.cursor_row]

    def _show_histogram(self) -> None:
        hist = self.query_one(Histogram)
        name = self._selected_column()
        col = self._drift_cols.get(name) if name else None
        data = column_histogram(col) if col else None
        if data is None:
            hist.show([], [], [], title=f"{name}: no distribution available" if name else "")
            return
        labels, ref, cur = data
        hist.show(labels, ref, cur, title=f"{name}: reference vs current")

    # -- quality ------------------------------------------------------------------------------------
    def _update_quality(self, snap: EndpointSnapshot | None, force: bool) -> None:
        q = snap.quality if snap is not None else None
        stamp = (q.computed_at, q.error, q.version) if q is not None else (None,)
        if not force and stamp == self._quality_key:
            return
        self._quality_key = stamp
        summary = self.query_one("#quality-summary", Static)
        table = self.query_one("#quality-table", DataTable)
        estimate = self.query_one("#quality-estimate", Static)
        confusion = self.query_one("#quality-confusion", Static)
        trend = self.query_one("#quality-trend", Trend)
        if q is None:
            ep = self.endpoint
            why = ("no quality: the endpoint needs a capture source and labels (ground truth) in the config"
                   if not (ep.capture and ep.labels) else "waiting for the first quality measurement")
            summary.update(Text(why, style="dim"))
            for w in (estimate, confusion):
                w.update("")
            self._quality_cells = []
            fill_table(table, QUALITY_COLUMNS, [], self._table_width())
            trend.update([])
            return
        doc = q.result or {}
        verdicts = judge.snapshot_quality_verdicts(q)
        summary.update(quality_summary(q, verdicts))
        registered = ((doc.get("registered") or {}).get("metrics")) or {}
        drop = doc.get("quality_drop") or 0.05
        judged_as = {"min_rows": int(doc.get("min_rows") or 0),
                     "registered_rows": (doc.get("registered") or {}).get("dataset_rows"), "live_rows": doc.get("rows")}
        self._quality_cells = [(name, quality_row(name, m or {}, registered.get(name), drop, **judged_as))
                               for name, m in (doc.get("metrics") or {}).items()]
        row = table.cursor_row
        fill_table(table, QUALITY_COLUMNS, self._quality_cells, self._table_width())
        if self._quality_cells:
            table.move_cursor(row=min(max(0, row), len(self._quality_cells) - 1))
        est = doc.get("estimated")
        if est:
            t = Text("estimated (CBPE, not measured) ", style="bold cyan")
            t.append(", ".join(f"{one_line(k, 12)} {'-' if v is None else f'{v:.3f}'}"
                               for k, v in (est.get("metrics") or {}).items()), style="cyan")
            t.append(f"  on the {est.get('rows')} newest rows without a label, calibrated on "
                     f"{est.get('reference_rows')} labelled ({one_line(est.get('calibration') or 'platt', 16)})",
                     style="dim")
            estimate.update(t)
        else:
            estimate.update(Text("no estimate (binary classifiers with probabilities, while some of the newest "
                                 "rows have no label)", style="dim"))
        self._chart_quality(trend, q, registered)
        confusion.update(confusion_text(doc.get("confusion_matrix")))

    def _chart_quality(self, trend: Trend, q: Any, registered: dict[str, Any]) -> None:
        """The headline metric over time: one point per quality measurement the poller kept
        (``quality_history``); with fewer than two measured yet, the newest measurement's
        consecutive blocks of labelled rows (by inference time) instead."""
        doc = q.result or {}
        name = q.headline()[0]
        source = self.app.source
        history = getattr(source, "quality_history", None)
        points = [p for p in (history(self.endpoint.name) if history is not None else ())
                  if p.value(name) is not None]
        if len(points) >= 2:
            newest = points[-1]
            trend.title = (f"{name} over time ({len(points)} measurements, each of the newest "
                           f"{newest.rows} labelled rows)")
            trend.update([p.value(name) for p in points], [p.computed_at for p in points],
                         newest.registered.get(name, registered.get(name)), self.app.clock())
            return
        series = [p for p in doc.get("series") or [] if p.get("metric") == name] or list(doc.get("series") or [])
        if not series:
            trend.title = f"{name} over time"
            trend.update([])
            return
        from modeldeck.core.textfmt import parse_utc

        name = str(series[-1].get("metric"))
        trend.title = (f"{name} by inference time ({series[-1].get('rows')} labelled rows a point; "
                       f"one measurement so far)")
        times = [parse_utc(str(p.get("end") or "")) for p in series]
        reg = registered.get(name)
        if all(times):
            trend.update([p.get("value") for p in series], times, reg, self.app.clock())
        else:
            trend.update([p.get("value") for p in series], None, reg)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "drift-table":
            self._show_histogram()

    # -- actions ------------------------------------------------------------------------------
    def _active_table(self) -> DataTable:
        tab = self.query_one(TabbedContent).active
        table = {"drift": "#drift-table", "quality": "#quality-table"}.get(tab, "#versions-table")
        return self.query_one(table, DataTable)

    def action_cursor_down(self) -> None:
        self._active_table().action_cursor_down()

    def action_cursor_up(self) -> None:
        self._active_table().action_cursor_up()

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        if name in ("versions", "drift", "quality"):
            self._active_table().focus()

    def action_back(self) -> None:
        self.clear_selection()  # what the escape reaching the screen did before it was a priority key
        self.app.pop_screen()

    def action_lineage(self) -> None:
        from modeldeck.tui.screens.lineage import LineageScreen

        v = self.version_obj(self.selected_version())
        if v is None:
            self.app.notify("no version selected", severity="warning")
            return
        self.app.push_screen(LineageScreen(v, self.aliases, [e for e in self.evaluations if e.version == v.version]))

    def action_audit(self) -> None:
        from modeldeck.tui.screens.audit import AuditScreen

        self.app.push_screen(AuditScreen(model=self.model))

    def action_rollouts(self) -> None:
        from modeldeck.tui.screens.rollouts import RolloutsScreen

        self.app.push_screen(RolloutsScreen(model=self.model))

    def action_jobs(self) -> None:
        from modeldeck.tui.screens.retrain import JobsScreen

        self.app.push_screen(JobsScreen(model=self.model))

    # -- release actions (hidden with --read-only) ---------------------------------------------------
    def environments(self, *, held_only: bool = False) -> list[tuple[str, str]]:
        """The declared environments (an alias, a configured or discovered endpoint or the policy names them:
        ``core.releases.environment_choices``), each with what it holds and which version a
        rollback would go to; ``held_only``: those holding a version of this model."""
        out = []
        for c in self.environment_choices:
            if held_only and c.holds is None:
                continue
            out.append((c.name, c.note()))
        if not held_only and not out:  # nothing declared yet: the configured environment of this endpoint
            out.append((self.endpoint.environment, "holds nothing yet"))
        return out

    def action_promote(self) -> None:
        from modeldeck.tui.screens.release import EnvironmentPicker, ReleaseScreen

        number = self.selected_version()
        if number is None:
            self.app.notify("select a version to promote (tab 1)", severity="warning")
            return

        def chosen(env: str | None) -> None:
            if env:
                self.app.push_screen(ReleaseScreen(self.model, env, "promote", version=number),
                                     self._versions_changed)

        self.app.push_screen(EnvironmentPicker(f"Promote {self.model} version {number} to…",
                                               self.environments(), self.endpoint.environment), chosen)

    def action_rollback(self) -> None:
        from modeldeck.tui.screens.release import EnvironmentPicker, ReleaseScreen

        envs = self.environments(held_only=True)
        if not envs:
            self.app.notify(f"{self.model} holds no environment yet: nothing to roll back", severity="warning")
            return

        def target(env: str, choice: str | None) -> None:
            if choice:
                to = None if choice == "previous" else int(choice)
                self.app.push_screen(ReleaseScreen(self.model, env, "rollback", to=to), self._versions_changed)

        def chosen(env: str | None) -> None:
            if not env:
                return
            holds = next((c for c in self.environment_choices if c.name == env), None)
            options = []
            if holds is not None and holds.rollback_to is not None:
                options.append(("previous", f"the previous holder: version {holds.rollback_to}"))
            for v in reversed(self.versions):  # newest first: "roll back to version…"
                if holds is None or v.version != holds.holds:
                    options.append((str(v.version), f"version {v.version}: {v.approval}, created "
                                                     f"{v.created_at[:16].replace('T', ' ')}"))
            if not options:
                self.app.notify(f"{self.model} has no other version to roll {env} back to", severity="warning")
                return
            self.app.push_screen(EnvironmentPicker(f"Roll back {self.model} in {env} to…", options,
                                                   options[0][0]), lambda choice: target(env, choice))

        self.app.push_screen(EnvironmentPicker(f"Roll back {self.model} in…", envs, self.endpoint.environment),
                             chosen)

    def _approval(self, approve: bool) -> None:
        from modeldeck.tui.screens.release import ApprovalScreen

        number = self.selected_version()
        if number is None:
            self.app.notify("select a version first (tab 1)", severity="warning")
            return
        self.app.push_screen(ApprovalScreen(self.model, number, approve), self._versions_changed)

    def action_approve(self) -> None:
        self._approval(True)

    def action_reject(self) -> None:
        self._approval(False)

    def action_retrain(self) -> None:
        from modeldeck.tui.screens.retrain import RetrainScreen

        def done(produced: int | None) -> None:
            self.select_version = produced  # a new candidate is what one looks at next
            self.load_versions()

        self.app.push_screen(RetrainScreen(self.model), done)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.WRITE_ACTIONS and self.app.read_only:
            return False  # --read-only hides every action that writes
        return True


def column_histogram(col: dict[str, Any]) -> tuple[list[str], list[float], list[float]] | None:
    """(bin labels, reference shares, current shares) from a drift column, if it has them."""
    h = col.get("histogram") or col.get("bins")
    if not isinstance(h, dict):
        return None
    labels = h.get("labels")
    ref = h.get("reference")
    cur = h.get("current")
    if not (isinstance(labels, list) and isinstance(ref, list) and isinstance(cur, list)):
        return None
    if not (len(labels) == len(ref) == len(cur)):
        return None
    try:
        return [str(x) for x in labels], [float(x) for x in ref], [float(x) for x in cur]
    except (TypeError, ValueError):
        return None


def metrics_cell(metrics: dict[str, Any], gate_metrics: list[str]) -> Text:
    """Every metric, those the model's gates compare first (bold)."""
    order = [k for k in gate_metrics if k in metrics] + [k for k in metrics if k not in gate_metrics]
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, k in enumerate(order):
        value = metrics[k]
        shown = num(value) if isinstance(value, (int, float)) else one_line(value, 16)
        t.append((" " if i else "") + f"{one_line(k, 24)}={shown}", style="bold" if k in gate_metrics else "")
    return t if order else Text("-", style="dim")


def _fmt(name: str, v: Any) -> str:
    if v is None:
        return "-"
    if name in ("mae", "rmse"):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return f"{v:.3f}"


def quality_row(name: str, m: dict[str, Any], registered: float | None, drop: float, *, min_rows: int = 0,
                registered_rows: Any = None, live_rows: Any = None) -> list[Text]:
    """One metric of the Quality tab: the value and its interval coloured by the judge's rule
    (``judge.quality_level``) against the registered value; a metric resting on fewer than
    ``min_rows`` rows says it is not judged."""
    value, low, high = m.get("value"), m.get("low"), m.get("high")
    judged = name in judge.QUALITY_JUDGED["classification"] + judge.QUALITY_JUDGED["regression"]
    lv = judge.quality_level(name, m, registered, drop, min_rows=min_rows, registered_rows=registered_rows,
                             live_rows=live_rows) if judged else judge.OK
    rows = finite(m.get("rows"))
    few = judged and value is not None and registered is not None and min_rows and (rows or 0) < min_rows
    interval = f"{_fmt(name, low)}-{_fmt(name, high)}" if low is not None and high is not None else "-"
    delta = "-" if value is None or registered is None else f"{value - registered:+.3f}"
    note = m.get("note")
    return [cells.plain(name, 12), Text(_fmt(name, value), justify="right", style=judge.STYLE[lv]),
            Text(interval, justify="right", style="dim" if value is None else ""),
            cells.plain((m.get("method") or (one_line(note, 40) if note else "-"))
                        + (f" (not judged: <{min_rows} rows)" if few else ""), 40),
            Text(str(m.get("rows", "-")), justify="right"),
            Text(_fmt(name, registered), justify="right", style="dim"),
            Text(delta, justify="right", style=judge.STYLE[lv])]


def quality_summary(q: Any, verdicts: list[Any]) -> Text:
    """The Quality tab's head: status, rows, labelled share, lag, what it is judged against,
    the counts of what did not join, and the verdicts."""
    from modeldeck.core.textfmt import duration, pct

    doc = q.result or {}
    t = Text()
    if q.error or doc.get("status") == "error":
        t.append("quality not measured: " + one_line(q.error or doc.get("error") or "", 200), style="red")
        return t
    rows, min_rows = doc.get("rows"), doc.get("min_rows")
    if doc.get("status") == "not_enough_labels":
        t.append(f"not enough labels: {rows} labelled rows of the {min_rows} needed (no verdict)", style="bold yellow")
    else:
        lv = judge.worst(v.level for v in verdicts)
        t.append("QUALITY DROP" if lv != judge.OK else "quality as registered",
                 style=judge.STYLE[lv] or "green")
        t.append(f"  {doc.get('problem_type')} on the newest {rows} labelled rows")
    lag = doc.get("label_lag_seconds")
    t.append(f"\nlabelled {pct(doc.get('labelled_share'))} of the newest {doc.get('window')} captured rows, "
             f"label lag {quality.LAG_UNKNOWN if lag is None else duration(max(0.0, lag))}")
    reg = doc.get("registered")
    if reg:
        t.append(f"; judged against {one_line(reg.get('describe') or '', 80)}", style="dim")
    elif doc.get("status") == "measured":
        t.append("; the served version has no registered metric to judge against", style="dim")
    c = doc.get("counts") or {}
    extra = [f"{c.get(k)} {words}" for k, words in (("predictions_without_label", "captured rows without a label"),
                                                    ("labels_without_prediction", "labels without a prediction"),
                                                    ("duplicate_labels", "duplicated labels (newest kept)"),
                                                    ("predictions_without_id", "rows without an id"),
                                                    ("unusable", "rows without a usable value"),
                                                    ("other_versions", "rows another version answered"),
                                                    ("label_files_skipped",
                                                     f"label files skipped ({quality.SKIPPED_WHY})")) if c.get(k)]
    if extra:
        t.append("\n" + ", ".join(extra), style="dim")
    for v in verdicts:
        t.append(f"\n{v.level}: {one_line(v.text, 200)}", style=judge.STYLE[v.level])
    return t


def confusion_text(cm: Any) -> Text:
    """The confusion matrix (rows: labels, columns: predictions), labels as plain text."""
    t = Text()
    if not isinstance(cm, dict) or not cm.get("labels"):
        return t
    labels = [one_line(x, 12) for x in cm["labels"]][:12]
    matrix = cm.get("matrix") or []
    width = max(8, *(len(x) + 5 for x in labels), *(len(str(v)) for row in matrix for v in row))
    t.append("confusion matrix (rows: label, columns: prediction)\n", style="bold")
    t.append("label".ljust(width) + "".join(f"pred {x}".rjust(width + 1) for x in labels) + "\n", style="dim")
    for lab, row in zip(labels, matrix):
        t.append(f"true {lab}".ljust(width), style="dim")
        for j, v in enumerate(row[:12]):
            t.append(str(v).rjust(width + 1), style="bold" if labels[j] == lab else "")
        t.append("\n")
    return t
