"""Release dialogs: pick an environment, promote / roll back with gates and a live rollout,
approve / reject with a reason. Each is one face of ``core.releases`` / ``core.registry``;
``esc`` before confirming always cancels with nothing written."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Checkbox, Input, OptionList, RichLog, Static
from textual.widgets.option_list import Option

from modeldeck.core.textfmt import one_line
from modeldeck.tui.messages import (
    ApprovalFailed,
    ApprovalWritten,
    PlanFailed,
    PlanProgress,
    PlanReady,
    ReleaseEventMsg,
    ReleaseFailed,
    ReleaseFinished,
)
from modeldeck.tui.screens.base import DeckModal
from modeldeck.tui.widgets.field import Field

if TYPE_CHECKING:
    from modeldeck.core.releases import ReleaseOutcome, ReleasePlan

UNFORCEABLE = ("approval cannot be forced: get the version approved as the policy asks (a, by someone "
               "else under four eyes), then promote again.")
LEVEL_STYLE = {"error": "bold red", "warning": "yellow", "success": "bold green", "output": "dim",
               "progress": "cyan", "info": ""}


class EnvironmentPicker(DeckModal):
    """Choose the environment to act on; dismisses with its name, or None on esc."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="esc")]

    def __init__(self, title: str, environments: list[tuple[str, str]], default: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.environments = environments
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="env-picker"):
            yield Static(Text(self.title_text, style="bold"), markup=False)
            yield OptionList(*[Option(Text.assemble((one_line(env, 40), "bold"), "  ", (one_line(note, 60), "dim")),
                                      id=env) for env, note in self.environments], id="env-options")
            yield Static(Text("enter chooses, esc cancels", style="dim"), markup=False)

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        names = [env for env, _ in self.environments]
        if self.default in names:
            options.highlighted = names.index(self.default)
        options.focus()

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReleaseScreen(DeckModal):
    """Promote a version to an environment, or roll an environment back.

    Shows the plan (from -> to), each gate with its numbers, what the deploy hook runs, then
    asks for a reason (and, for production, the model name). The rollout then runs in an app
    worker and its events stream into this dialog; ``esc`` hides the dialog while the rollout
    goes on (its end is a notice), ``X`` aborts it (which rolls back). The planning worker and
    the app's release worker report here with messages (PlanReady / PlanFailed,
    ReleaseEventMsg, ReleaseFinished / ReleaseFailed)."""

    HELP_TITLE = "Release"
    HELP_LEGEND = (
        ("✔ gate", "passed: approval, metric gates (both values on one dataset), health", "bold green"),
        ("✘ gate", "failed; force passes metric and health gates (recorded), never approval", "bold red"),
        ("reason", "required; goes to the audit log with who and when", ""),
        ("confirm", "a protected environment (production) asks for the model name", ""),
        ("rollout", "the endpoints must serve it in time, then bake; X aborts and rolls back", ""),
    )
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", key_display="esc"),
        Binding("ctrl+s", "submit", "Release", key_display="^s"),
        Binding("enter", "enter", "Next/release", show=False, priority=True),
        Binding("X", "abort", "Abort rollout", show=False),
    ]

    def __init__(self, model: str, environment: str, action: str = "promote", version: int | None = None,
                 to: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.environment = environment
        self.action = action
        self.version = version
        self.to = to
        self.plan: ReleasePlan | None = None
        self.state = "planning"  # planning | ready | running | done | failed
        self.stop_event = threading.Event()
        self.abort_reason = ""  # X asks for it; the app worker aborts the rollout with it
        self.outcome: ReleaseOutcome | None = None

    def compose(self) -> ComposeResult:
        verb = "Promote" if self.action == "promote" else "Roll back"
        with Vertical(classes="dialog", id="release-box"):
            yield Static(Text(f"{verb} {one_line(self.model, 40)} in {one_line(self.environment, 30)}",
                              style="bold"), markup=False, id="release-title")
            yield Static(Text("reading the registry and the environment's endpoints…", style="dim"),
                         markup=False, id="release-plan")
            yield Field(placeholder="reason (required; goes to the audit log)", id="release-reason")
            yield Field(placeholder="", id="release-confirm")
            yield Checkbox("force past the failing metric/health gates (recorded as forced)", id="release-force")
            yield Static("", markup=False, id="release-hint")
            yield RichLog(id="release-log", wrap=True, markup=False, max_lines=500)

    def on_mount(self) -> None:
        for wid in ("#release-reason", "#release-confirm", "#release-force", "#release-log"):
            self.query_one(wid).display = False
        self.load_plan()

    # -- planning -------------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, name="release plan")
    def load_plan(self) -> None:
        from modeldeck.core import releases
        from modeldeck.core.registry import open_registry

        app = self.app
        settings = app.settings
        assert settings is not None  # a release dialog opens from a model screen, after the config
        latest = app.source.latest() if app.source is not None else None
        try:
            with open_registry(settings, create=False) as reg:
                plan = releases.plan(settings, reg, self.model, self.version, self.environment,
                                     action=self.action, to=self.to, snapshots=latest,
                                     on_event=lambda ev: self.post_message(PlanProgress(ev)))
        except Exception as e:
            self.post_message(PlanFailed(e))
            return
        self.post_message(PlanReady(plan))

    def on_plan_progress(self, message: PlanProgress) -> None:
        if self.state != "planning" or message.event.level == "output":
            return
        self.query_one("#release-plan", Static).update(
            Text(one_line(message.event.message, 300) + "…", style="dim"))

    def on_plan_failed(self, message: PlanFailed) -> None:
        self.state = "failed"
        self.set_focus(None)
        self.query_one("#release-plan", Static).update(Text(one_line(str(message.error), 300), style="bold red"))
        self.query_one("#release-hint", Static).update(Text("nothing was written; esc or q closes", style="dim"))

    def on_plan_ready(self, message: PlanReady) -> None:
        plan = self.plan = message.plan
        self.state = "ready"
        self.query_one("#release-plan", Static).update(plan_text(plan))
        reason = self.query_one("#release-reason", Input)
        reason.display = True
        confirm = self.query_one("#release-confirm", Input)
        if plan.confirm:
            confirm.display = True
            confirm.placeholder = f"type {plan.confirm} to confirm a change to {plan.environment}"
        # force passes metric and health gates only: never offered past a failed approval
        self.query_one("#release-force", Checkbox).display = plan.forceable
        if plan.unforceable_failures:
            reason.display = confirm.display = False
            self.set_focus(None)  # nothing to type: q closes
            self._hint(UNFORCEABLE, closing=True)
            return
        self._hint()
        self.set_focus(reason)

    def _hint(self, problem: str = "", closing: bool = False) -> None:
        t = Text()
        if problem:
            t.append(problem + "  ", style="bold red")
        t.append("esc or q closes with nothing written" if closing else
                 "enter or ctrl+s releases, esc cancels with nothing written", style="dim")
        self.query_one("#release-hint", Static).update(t)

    # -- submitting -----------------------------------------------------------------------------
    def action_enter(self) -> None:
        """enter in the reason field moves on to the confirmation field (until it is filled),
        else releases. A priority binding, so focus has moved before the next key is handled
        (an Input.Submitted handler runs after keys typed right behind enter were delivered)."""
        confirm = self.query_one("#release-confirm", Input)
        focused = self.focused
        if isinstance(focused, Checkbox):
            focused.toggle()
            return
        if focused is not None and focused.id == "release-reason" and confirm.display and not confirm.value:
            self.set_focus(confirm)
            return
        self.action_submit()

    def action_submit(self) -> None:
        if self.state != "ready" or self.plan is None:
            return
        plan = self.plan
        reason = self.query_one("#release-reason", Input).value.strip()
        if not reason:
            self._hint("a reason is required")
            self.set_focus(self.query_one("#release-reason", Input))
            return
        if plan.confirm and self.query_one("#release-confirm", Input).value.strip() != plan.confirm:
            self._hint(f"type the model name {plan.confirm!r} to confirm")
            self.set_focus(self.query_one("#release-confirm", Input))
            return
        if plan.unforceable_failures:  # whatever the force box says
            self._hint(UNFORCEABLE, closing=True)
            return
        force = self.query_one("#release-force", Checkbox).value and plan.forceable
        if plan.blocked and not force:
            names = ", ".join(g.name for g in plan.failed_gates)
            self._hint(f"blocked by {names}: fix it, or tick force")
            return
        self.state = "running"
        for wid in ("#release-reason", "#release-confirm", "#release-force"):
            self.query_one(wid).display = False
        log = self.query_one("#release-log", RichLog)
        log.display = True
        self.set_focus(log)
        self.query_one("#release-hint", Static).update(
            Text("rolling out… esc hides this (the rollout goes on), X aborts and rolls back", style="dim"))
        self.app.start_release(plan, reason=reason, force=force, stop_event=self.stop_event, dialog=self)

    # -- messages from the app's release worker ----------------------------------------------------
    def on_release_event_msg(self, message: ReleaseEventMsg) -> None:
        event = message.event
        self._log(event.stage, event.message, event.level)

    def _log(self, stage: str, text: str, level: str) -> None:
        if not self.is_mounted:
            return
        line = Text(f"{stage:>8}  ", style="dim")
        line.append(one_line(text, 400), style=LEVEL_STYLE.get(level, ""))
        self.query_one("#release-log", RichLog).write(line)

    def on_release_finished(self, message: ReleaseFinished) -> None:
        outcome = self.outcome = message.outcome
        self.state = "done"
        if not self.is_mounted:
            return
        style = "bold green" if outcome.ok else "bold red"
        self.query_one("#release-hint", Static).update(
            Text.assemble((one_line(outcome.message, 300), style), ("   esc or q closes", "dim")))

    def on_release_failed(self, message: ReleaseFailed) -> None:
        self.state = "done"
        if self.is_mounted:
            self.query_one("#release-hint", Static).update(
                Text.assemble((one_line(str(message.error), 300), "bold red"), ("   esc or q closes", "dim")))

    # -- leaving ---------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        if self.state == "running":
            self.app.notify("the rollout goes on in the background; its result will show as a notice")
        self.dismiss(self.outcome)

    def action_abort(self) -> None:
        if self.state != "running" or self.stop_event.is_set():
            return
        from modeldeck.tui.screens.rollouts import ReasonScreen

        def asked(reason: str | None) -> None:
            if reason and self.state == "running":
                self.abort_reason = reason
                self.stop_event.set()
                self._log("abort", f"aborting ({reason}): the rollout will be rolled back", "warning")

        self.app.push_screen(ReasonScreen("abort this rollout and roll it back: why?"), asked)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "abort":
            return self.state == "running"
        if action == "submit":
            return self.state == "ready" and not (self.plan is not None and self.plan.unforceable_failures)
        return True


def plan_text(plan: ReleasePlan) -> Text:
    t = Text()
    before = "unset" if plan.from_version is None else f"version {plan.from_version}"
    t.append(f"{one_line(plan.environment, 30)}: ", style="bold")
    t.append(before)
    t.append("  →  ", style="bold")
    t.append(f"version {plan.to_version}", style="bold cyan")
    cand = plan.candidate
    t.append(f"   ({cand.approval}", style={"approved": "green", "rejected": "red"}.get(cand.approval, "yellow"))
    if cand.metrics:
        t.append("; " + " ".join(f"{one_line(k, 16)}={v:.4g}" if isinstance(v, (int, float)) else
                                 f"{one_line(k, 16)}={one_line(v, 12)}" for k, v in list(cand.metrics.items())[:3]),
                 style="dim")
    t.append(")\n")
    t.append("rules   ", style="bold")
    t.append(f"registry policy version {plan.policy_version}" if plan.policy_version is not None else
             "no policy in the registry: the config's rules", style="dim")
    t.append("\n")
    if plan.gates:
        t.append("gates\n", style="bold")
        for g in plan.gates:
            t.append("  ✔ " if g.passed else "  ✘ ", style="bold green" if g.passed else "bold red")
            t.append(one_line(g.name, 30) + "  ", style="bold")
            t.append(one_line(g.detail, 240))
            if not g.passed and not g.forceable:
                t.append("  (cannot be forced)", style="bold red")
            t.append("\n")
    if plan.deploy:
        t.append("deploy  ", style="bold")
        t.append(one_line("; ".join(plan.deploy), 200) + "\n")
    if plan.endpoints:
        t.append("rollout ", style="bold")
        t.append(f"{', '.join(one_line(e, 30) for e in plan.endpoints[:4])} must serve it within "
                 f"{plan.verify_timeout:g} s" + (f", then bake {plan.bake_seconds:g} s" if plan.bake_seconds else "")
                 + "\n")
    for note in plan.notes:
        t.append("note    ", style="dim")
        t.append(one_line(note, 200) + "\n", style="dim")
    if plan.blocked:
        t.append(f"BLOCKED by {', '.join(g.name for g in plan.failed_gates)}", style="bold red")
    t.rstrip()
    return t


class ApprovalScreen(DeckModal):
    """Approve (``a``) or reject (``x``) a version, with a reason."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="esc")]

    def __init__(self, model: str, version: int, approve: bool) -> None:
        super().__init__()
        self.model = model
        self.version = version
        self.approve = approve

    def compose(self) -> ComposeResult:
        verb = "Approve" if self.approve else "Reject"
        with Vertical(classes="dialog", id="approval-box"):
            yield Static(Text(f"{verb} {one_line(self.model, 40)} version {self.version}", style="bold"),
                         markup=False)
            yield Field(placeholder="reason (required; goes to the audit log)", id="approval-reason")
            yield Static(Text("enter confirms, esc cancels with nothing written", style="dim"), markup=False,
                         id="approval-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if not reason:
            self.query_one("#approval-hint", Static).update(Text("a reason is required", style="bold red"))
            return
        self.write(reason)

    @work(thread=True, exit_on_error=False, name="approval")
    def write(self, reason: str) -> None:
        from modeldeck.core.registry import open_registry

        settings = self.app.settings
        assert settings is not None
        try:
            with open_registry(settings, create=False) as reg:
                v = (reg.approve if self.approve else reg.reject)(self.model, self.version, reason)
        except Exception as e:
            self.post_message(ApprovalFailed(e))
            return
        self.post_message(ApprovalWritten(v))

    def on_approval_failed(self, message: ApprovalFailed) -> None:
        self.query_one("#approval-hint", Static).update(Text(one_line(str(message.error), 300), style="bold red"))

    def on_approval_written(self, message: ApprovalWritten) -> None:
        v = message.version
        self.app.notify(f"{v.approval} {self.model} version {v.version}")
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
