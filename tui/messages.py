"""The messages workers post to the screens (and to the app) that show their results.

Workers run in threads; ``post_message`` is thread-safe, so a worker posts one of these to the
screen or dialog that handles it (``on_<snake_case_name>``) instead of calling back into it
with ``call_from_thread``. A message posted to a screen that has closed meanwhile is dropped:
what must be seen anyway (a rollout's end) is posted to the app too. None of them bubble: each
is meant for the one node it is posted to. Notices need no message: ``App.notify`` is itself
thread-safe.

Errors a worker raises are not posted: they end the worker, and the app's one handler
(``ModeldeckApp.worker_state_changed``) turns them into a notice. The ``...Failed`` messages
below are failures a screen shows in its own place (a dialog's hint line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from modeldeck.core.config import Settings
    from modeldeck.core.registry import (
        AuditEntry,
        Evaluation,
        Job,
        Rollout,
        RolloutStep,
        VerifyResult,
        Version,
    )
    from modeldeck.core.releases import EnvironmentChoice, ReleaseEvent, ReleaseOutcome, ReleasePlan
    from modeldeck.core.retrain import RetrainRun


class WorkerMessage(Message, bubble=False):
    """Base of every message here: for the node it is posted to only."""


# -- the app --------------------------------------------------------------------------------------


class SourceError(WorkerMessage):
    """The snapshot source's poller stopped on an error (it restarts by itself)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class DemoFleetReady(WorkerMessage):
    """The demo fleet answered; its config is parsed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings


# -- releases -------------------------------------------------------------------------------------


class PlanReady(WorkerMessage):
    def __init__(self, plan: ReleasePlan) -> None:
        super().__init__()
        self.plan = plan


class PlanProgress(WorkerMessage):
    """Planning takes a while (the evaluate hook runs for a metric gate): one step of it."""

    def __init__(self, event: ReleaseEvent) -> None:
        super().__init__()
        self.event = event


class PlanFailed(WorkerMessage):
    """No plan: the registry refused (unknown version, nothing to roll back to, ...)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


class ReleaseEventMsg(WorkerMessage):
    """One step of a running release (``core.releases.ReleaseEvent``)."""

    def __init__(self, event: ReleaseEvent) -> None:
        super().__init__()
        self.event = event


class ReleaseFinished(WorkerMessage):
    """The release ended with an outcome (released, blocked, rolled back, ...)."""

    def __init__(self, plan: ReleasePlan, outcome: ReleaseOutcome) -> None:
        super().__init__()
        self.plan = plan
        self.outcome = outcome


class ReleaseFailed(WorkerMessage):
    """The release raised (a conflicting writer, a registry error)."""

    def __init__(self, plan: ReleasePlan, error: Exception) -> None:
        super().__init__()
        self.plan = plan
        self.error = error


class ApprovalWritten(WorkerMessage):
    def __init__(self, version: Version) -> None:
        super().__init__()
        self.version = version


class ApprovalFailed(WorkerMessage):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


# -- the model screen -----------------------------------------------------------------------------


class VersionsLoaded(WorkerMessage):
    """The model's versions, aliases and declared environments (each with where a rollback
    would go: ``core.releases.EnvironmentChoice``)."""

    def __init__(self, versions: Sequence[Version], aliases: Mapping[str, int],
                 environments: Sequence[EnvironmentChoice] = (), evaluations: Sequence[Evaluation] = (),
                 gate_metrics: Sequence[str] = (), problem: str | None = None) -> None:
        super().__init__()
        self.versions = list(versions)
        self.aliases = dict(aliases)
        self.environments = list(environments)
        self.evaluations = list(evaluations)  # every version's metrics with their data
        self.gate_metrics = list(gate_metrics)  # the metrics the model's release gates compare
        self.problem = problem  # MLflow could not be read: these are the ledger's last known


# -- retraining -----------------------------------------------------------------------------------


class RetrainStarted(WorkerMessage):
    def __init__(self, run: RetrainRun) -> None:
        super().__init__()
        self.run = run


class RetrainFailed(WorkerMessage):
    """The job could not start (no pipeline, a registry error)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


class ActiveJobs(WorkerMessage):
    """Jobs of the model already queued or running: the retrain dialog asks before a second."""

    def __init__(self, jobs: Sequence[Job], reason: str) -> None:
        super().__init__()
        self.jobs = list(jobs)
        self.reason = reason


class JobOutput(WorkerMessage):
    """One line of a running job's output."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class JobStatus(WorkerMessage):
    """A job's status changed (queued, running, succeeded, failed, cancelled)."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job


class JobsLoaded(WorkerMessage):
    def __init__(self, jobs: Sequence[Job]) -> None:
        super().__init__()
        self.jobs = list(jobs)


class JobCancelled(WorkerMessage):
    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job


# -- the audit log --------------------------------------------------------------------------------


class AuditLoaded(WorkerMessage):
    def __init__(self, entries: Sequence[AuditEntry]) -> None:
        super().__init__()
        self.entries = list(entries)


class AuditVerified(WorkerMessage):
    def __init__(self, result: VerifyResult) -> None:
        super().__init__()
        self.result = result


# -- rollouts -------------------------------------------------------------------------------------


class RolloutsLoaded(WorkerMessage):
    """Rollouts, newest first (``core.registry.Rollout``)."""

    def __init__(self, rollouts: Sequence[Rollout]) -> None:
        super().__init__()
        self.rollouts = list(rollouts)


class RolloutSteps(WorkerMessage):
    """New steps of one rollout's log (after the last one shown)."""

    def __init__(self, rollout_id: int, steps: Sequence[RolloutStep]) -> None:
        super().__init__()
        self.rollout_id = rollout_id
        self.steps = list(steps)
