"""Retraining: start the model's pipeline (`n`) with its output streaming into a log pane, and
the jobs list (`J`) where `c` cancels a running job. Both call ``core.retrain``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, RichLog, Static

from modeldeck.core.config import HookConfig
from modeldeck.core.registry import Job
from modeldeck.core.textfmt import exit_words, one_line
from modeldeck.tui.messages import (
    ActiveJobs,
    JobCancelled,
    JobOutput,
    JobsLoaded,
    JobStatus,
    RetrainFailed,
    RetrainStarted,
)
from modeldeck.tui.screens.base import DeckModal, DeckScreen
from modeldeck.tui.widgets.field import Field
from modeldeck.tui.widgets.keybar import KeyBar

if TYPE_CHECKING:
    from modeldeck.core.retrain import RetrainRun

STATUS_STYLE = {"succeeded": "bold green", "failed": "bold red", "cancelled": "yellow", "running": "cyan",
                "queued": "dim"}


ENDED = ("succeeded", "failed", "cancelled")


def describe_pipeline(hook: HookConfig | None) -> str:
    if hook is None:
        return ""
    if hook.command:
        return "runs " + " ".join(one_line(a, 60) for a in hook.command)
    if hook.webhook:
        return f"POSTs to {one_line(hook.webhook.url, 80)}" + (
            f", then polls {one_line(hook.webhook.status_url, 80)}" if hook.webhook.status_url else "")
    return ""


def job_end_text(job: Job) -> str:
    """``job #7 failed (exit 3): ...``, ``job #8 cancelled (SIGTERM)``: the line shown when a
    job ends."""
    produced = f", produced version {job.produced_version}" if job.produced_version else ""
    code = job.exit_code
    how = "" if code in (None, 0) else (f" ({exit_words(code)})" if code < 0 else f" (exit {code})")
    return f"job #{job.id} {job.status}" + how + produced + (
        f": {job.message}" if job.message and job.status != "succeeded" else "")


class RetrainScreen(DeckModal):
    """Start retraining; the job runs detached (it outlives the TUI) and its log streams here
    (JobOutput and JobStatus messages from the job's follower thread). Its end is a notice
    also when this dialog was closed."""

    CLOSE_ACTION = "close"
    BINDINGS = [
        Binding("escape", "close", "Close", key_display="esc"),
        Binding("c", "cancel_job", "Cancel job", show=False),
    ]

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.run: RetrainRun | None = None
        self.finished = False
        self.produced: int | None = None  # the version the job registered

    def compose(self) -> ComposeResult:
        settings = self.app.settings
        hook = settings.model(self.model).retrain if settings else None
        with Vertical(classes="dialog", id="retrain-box"):
            yield Static(Text(f"Retrain {one_line(self.model, 40)}", style="bold"), markup=False)
            yield Static(Text(describe_pipeline(hook) or "no retraining pipeline is configured for this model",
                              style="" if hook else "bold red"), markup=False, id="retrain-pipeline")
            yield Field(placeholder="reason (optional; goes to the job and the audit log)", id="retrain-reason")
            yield Static(Text("enter starts, esc cancels", style="dim"), markup=False, id="retrain-hint")
            yield RichLog(id="retrain-log", wrap=True, markup=False, max_lines=2000)

    def on_mount(self) -> None:
        self.query_one("#retrain-log").display = False
        settings = self.app.settings
        if settings is None or settings.model(self.model).retrain is None:
            self.query_one("#retrain-reason").display = False
            self.query_one("#retrain-hint", Static).update(Text("add [models.NAME] retrain = {...} to the "
                                                                "config; esc or q closes", style="dim"))
        else:
            self.query_one("#retrain-reason", Input).focus()

    @on(Input.Submitted, "#retrain-reason")
    def submitted(self, event: Input.Submitted) -> None:
        if self.run is None:
            event.input.display = False
            self.set_focus(None)  # q closes from now on
            self.check_and_start(event.value.strip())

    @work(thread=True, exit_on_error=False, name="retrain check")
    def check_and_start(self, reason: str) -> None:
        """Ask first when a job of this model is queued or running (retraining twice quickly)."""
        from modeldeck.core import retrain
        from modeldeck.core.registry import Registry

        settings = self.app.settings
        assert settings is not None
        try:
            with Registry(settings.registry, create=False) as reg:
                active = retrain.list_jobs(reg, self.model, status=("queued", "running"))
        except Exception as e:
            self.post_message(RetrainFailed(e))
            return
        self.post_message(ActiveJobs(active, reason))

    def on_active_jobs(self, message: ActiveJobs) -> None:
        from modeldeck.tui.screens.confirm import ConfirmScreen

        jobs = message.jobs
        if not jobs:
            self.start(message.reason)
            return
        which = ", ".join(f"#{j.id} {j.status}" for j in jobs[:3])

        def answered(yes: bool | None) -> None:
            if yes:
                self.start(message.reason)
            else:
                box = self.query_one("#retrain-reason", Input)
                box.display = True
                self.set_focus(box)
                self._hint("nothing started; enter starts, esc cancels", "dim")

        self.app.push_screen(ConfirmScreen(
            f"{self.model} is already retraining ({which}). Start another job?",
            f"started {jobs[0].created_at[:19].replace('T', ' ')} by {jobs[0].actor}; both would run", yes="Start another",
            no="Keep one"), answered)

    @work(thread=True, exit_on_error=False, name="retrain")
    def start(self, reason: str) -> None:
        from modeldeck.core import retrain

        app = self.app  # the callbacks run in the job's follower thread, where self.app is not set
        settings = app.settings
        assert settings is not None
        model = self.model

        def output(line: str) -> None:
            self.post_message(JobOutput(line))

        def status(job: Job) -> None:
            if job.status in ENDED:  # a notice even when this dialog is gone (notify is thread-safe)
                app.notify(f"retraining {model}: {job_end_text(job)}",
                           severity="information" if job.status == "succeeded" else "error")
            self.post_message(JobStatus(job))

        try:
            run = retrain.start_retrain(settings, self.model, trigger="manual", reason=reason,
                                        on_output=output, on_status=status, detach=True)
        except Exception as e:
            self.post_message(RetrainFailed(e))
            return
        self.run = run
        self.post_message(RetrainStarted(run))

    def on_retrain_failed(self, message: RetrainFailed) -> None:
        self._hint(one_line(str(message.error), 300), "bold red")

    def on_retrain_started(self, message: RetrainStarted) -> None:
        run = message.run
        self.query_one("#retrain-log").display = True
        self._hint(f"job #{run.job_id} running; its log: {run.log_path}. esc hides this (the job goes on), "
                   f"c cancels it", "dim")
        self.app.notify(f"retraining {self.model}: job #{run.job_id} started")

    def on_job_output(self, message: JobOutput) -> None:
        if self.is_mounted:
            self.query_one("#retrain-log", RichLog).write(Text(one_line(message.line, 500)))

    def on_job_status(self, message: JobStatus) -> None:
        job = message.job
        if job.status in ENDED:
            self.finished = True
            self.produced = job.produced_version
            if self.is_mounted:
                self._hint(job_end_text(job) + "   esc or q closes", STATUS_STYLE.get(job.status, ""))

    def _hint(self, text: str, style: str) -> None:
        if self.is_mounted:
            self.query_one("#retrain-hint", Static).update(Text(text, style=style))

    def action_cancel_job(self) -> None:
        if self.run is not None and not self.finished:
            self.cancel_job()

    @work(thread=True, exit_on_error=False, name="cancel job")
    def cancel_job(self) -> None:
        assert self.run is not None
        job = self.run.cancel()
        self.app.notify(f"job #{job.id} {job.status}")

    def action_close(self) -> None:
        self.dismiss(self.produced)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_job":
            return self.run is not None and not self.finished and not self.app.read_only
        return True


class JobsScreen(DeckScreen):
    HELP_TITLE = "Retraining jobs"
    WRITE_ACTIONS = ("cancel_job",)
    HELP_LEGEND = tuple((status, meaning, STATUS_STYLE[status]) for status, meaning in (
        ("queued", "waiting to start"), ("running", "its pipeline runs (detached: it outlives the console)"),
        ("succeeded", "ended well; VER is the version it registered"), ("failed", "ended with an error, see EXIT"),
        ("cancelled", "stopped by c or abort")))
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc"),
        Binding("j", "cursor_down", "Move", key_display="j/k"),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("enter", "open", "Log", priority=True),
        Binding("c", "cancel_job", "Cancel job"),
    ]

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.jobs: list[Job] = []

    def compose(self) -> ComposeResult:
        title = f"retraining jobs of {one_line(self.model, 40)}" if self.model else "retraining jobs"
        yield Static(Text(title, style="bold"), markup=False, id="jobs-header")
        yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
        yield RichLog(id="jobs-log", wrap=True, markup=False, max_lines=400)
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in (("id", "JOB", 5), ("model", "MODEL", 12), ("trigger", "TRIGGER", 8),
                                  ("status", "STATUS", 10), ("created", "CREATED UTC", 11), ("exit", "EXIT", 7),
                                  ("version", "VER", 4), ("actor", "ACTOR", 10), ("reason", "REASON", 20)):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.load()
        self.set_interval(2.0, self.load)

    @work(thread=True, exclusive=True, group="jobs", exit_on_error=False, name="jobs")
    def load(self) -> None:
        from modeldeck.core import retrain
        from modeldeck.core.registry import Registry

        settings = self.app.settings
        assert settings is not None
        with Registry(settings.registry, create=False) as reg:
            jobs = retrain.list_jobs(reg, self.model)
        self.post_message(JobsLoaded(jobs))

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        jobs = message.jobs
        key = [(j.id, j.status, j.produced_version) for j in jobs]
        if key == [(j.id, j.status, j.produced_version) for j in self.jobs]:
            return
        table = self.query_one(DataTable)
        row = table.cursor_row
        self.jobs = jobs
        table.clear()
        for j in jobs:
            table.add_row(Text(str(j.id), justify="right"), Text(one_line(j.model, 40)), Text(j.trigger),
                          Text(j.status, style=STATUS_STYLE.get(j.status, "")),
                          Text(j.created_at[5:16].replace("T", " ")),
                          Text(exit_words(j.exit_code), justify="right"),
                          Text(str(j.produced_version or "-"), justify="right"), Text(one_line(j.actor, 30)),
                          Text(one_line(j.reason or j.message or "", 120)), key=str(j.id))
        if jobs:
            table.move_cursor(row=min(max(row, 0), len(jobs) - 1))

    def selected(self) -> Job | None:
        table = self.query_one(DataTable)
        if not self.jobs or not 0 <= table.cursor_row < len(self.jobs):
            return None
        return self.jobs[table.cursor_row]

    def action_open(self) -> None:
        job = self.selected()
        log = self.query_one("#jobs-log", RichLog)
        log.clear()
        if job is None:
            return
        if not job.log_path or not Path(job.log_path).exists():
            log.write(Text(f"job #{job.id} has no log file here", style="dim"))
            return
        with open(job.log_path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64_000))
            tail = f.read().decode("utf-8", "replace").splitlines()[-300:]
        log.write(Text(f"job #{job.id}: {job.log_path}", style="bold"))
        for line in tail:
            log.write(Text(one_line(line, 500)))

    def action_cursor_down(self) -> None:
        self.query_one(DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(DataTable).action_cursor_up()

    def action_cancel_job(self) -> None:
        from modeldeck.tui.screens.confirm import ConfirmScreen

        job = self.selected()
        if job is None or job.status not in ("queued", "running"):
            self.app.notify("select a queued or running job to cancel", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_job(job.id)

        self.app.push_screen(ConfirmScreen(f"Cancel job #{job.id} of {job.model} ({job.status})?",
                                           "its pipeline gets SIGTERM; nothing it has not registered is kept",
                                           yes="Cancel the job", no="Keep it running"), answered)

    @work(thread=True, exit_on_error=False, name="cancel job")
    def cancel_job(self, job_id: int) -> None:
        from modeldeck.core import retrain
        from modeldeck.core.registry import Registry

        settings = self.app.settings
        assert settings is not None
        with Registry(settings.registry, create=False) as reg:
            job = retrain.cancel(job_id, registry=reg)
        self.app.notify(f"job #{job.id} {job.status}")  # thread-safe; shown even if this screen is gone
        self.post_message(JobCancelled(job))

    def on_job_cancelled(self, message: JobCancelled) -> None:
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_job" and self.app.read_only:
            return False
        return True
