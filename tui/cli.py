"""The ``modeldeck`` command line. Parses arguments, calls ``core``, prints results: all of
modeldeck's printing is here (``core`` returns values and text and raises one-line errors).

Each subcommand names its handler with ``set_defaults(handler=...)``; the top level's is the
TUI, or the report with ``--report``. Textual is imported only when the TUI starts, and heavy
``core`` modules (pandas, scipy, httpx) only by the commands that need them, so registry
commands and cron lines start fast. Every error is one line on stderr and exit status 2
(``--report``: monitoring-plugin codes, 3 when it could not run at all).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from modeldeck.core import config as configmod
from modeldeck.core.errors import GateError, InputError, ModeldeckError, RegistryError
from modeldeck.core.textfmt import escape_controls, exit_words, num, one_line, table

# httpx imports its own command line (click, rich.progress, pygments: 70 ms here) whenever they
# are installed, as textual's rich is; modeldeck never runs it. A None entry makes that import
# fail, and httpx then defines a stub for its `httpx` console script instead (httpx/__init__.py).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
    from modeldeck.core.releases import ReleaseEvent

PROG = "modeldeck"


# ---------------------------------------------------------------------------------------------
# parser


def _common() -> argparse.ArgumentParser:
    """--config and --registry, accepted after a subcommand too (SUPPRESS keeps a value given
    before the subcommand from being overwritten by the subparser's default)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="config file (default: $MODELDECK_CONFIG, ./modeldeck.toml, XDG config)")
    p.add_argument("--registry", metavar="FILE", default=argparse.SUPPRESS,
                   help="registry database (default: the config's, else the XDG data folder)")
    return p


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


class _ReportFlag(argparse.Action):
    """``--report``: a flag that also makes the report the top level's handler (a subcommand's
    own handler still wins; ``_check_combination`` refuses the pair)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        namespace.handler = _cmd_report


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for a mistyped subcommand."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            close = difflib.get_close_matches(m.group(1), [c for c in choices if c not in HIDDEN_COMMANDS], n=3)
            mean = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            if message.startswith("argument COMMAND:"):
                message = f"{m.group(1)!r} is not a modeldeck command" + (mean or f" (see {self.prog} --help)")
            else:  # an option's value: argparse's words, with the nearest choice
                message += mean
        super().error(message)


# What an argument without a help text of its own means (the same everywhere).
HELP_BY_DEST = {
    "model": "the model's name in the registry", "version": "a version number of the model",
    "env": "an environment (production, staging, ...)", "limit": "how many to show (0: all)",
    "job": "a retraining job's number (modeldeck jobs)", "rollout": "a rollout's number (modeldeck rollouts)",
    "tags": "KEY=VALUE to set a tag, KEY= to remove it", "reason": "why (goes to the audit log)",
    "reference": "the reference data: CSV, Parquet or JSONL", "current": "the current window: CSV, Parquet or JSONL",
    "format": "output format (default: text)",
}
HIDDEN_COMMANDS = ("run-job", "run-rollout")

# The examples each command's --help ends with.
EXAMPLES: dict[str | None, tuple[str, ...]] = {
    None: ("modeldeck --demo", "modeldeck --demo --mlflow", "modeldeck --config fleet.toml", "modeldeck --read-only",
           "modeldeck --report --format prometheus --output /var/lib/node_exporter/modeldeck.prom",
           "modeldeck serve --demo", "eval \"$(modeldeck completion bash)\""),
    "demo-fleet": ("modeldeck demo-fleet --write-config /tmp/demo.toml",
                   "modeldeck demo-fleet --write-config /tmp/demo.toml --mlflow http://127.0.0.1:5000"),
    "drift": ("modeldeck drift train.csv last_hour.csv", "modeldeck drift ref.parquet cur.parquet --format json"),
    "quality": ("modeldeck quality captures/*.jsonl labels.csv --positive-label 1",),
    "models": ("modeldeck models", "modeldeck models --json"),
    "register": ("modeldeck register churn --artifact s3://models/churn/7.pkl --metrics '{\"auc\": 0.91}'",
                 "modeldeck register churn --run-id 3f9e1c...   # with [mlflow]: the run's lineage"),
    "evaluate": ("modeldeck evaluate churn 7 --data holdout.csv",),
    "policy": ("modeldeck policy churn", "modeldeck policy churn --set churn-policy.toml --reason 'two approvals'"),
    "versions": ("modeldeck versions churn", "modeldeck versions churn --json"),
    "history": ("modeldeck history churn --env production", "modeldeck history churn --env production --at '2h ago'"),
    "audit": ("modeldeck audit --model churn", "modeldeck audit --verify"),
    "approve": ("modeldeck approve churn 7 --reason 'offline eval ok'",),
    "reject": ("modeldeck reject churn 7 --reason 'worse on the holdout'",),
    "promote": ("modeldeck promote churn 7 --env staging --reason 'candidate'",
                "modeldeck promote churn 7 --env production --reason 'weekly retrain' --detach"),
    "rollback": ("modeldeck rollback churn --env production --reason 'errors up'",
                 "modeldeck rollback churn --env production --to 5 --reason 'back to the last good one'"),
    "rollouts": ("modeldeck rollouts churn",),
    "rollout": ("modeldeck rollout 12 --follow",),
    "abort": ("modeldeck abort 12 --reason 'latency up'",),
    "tag": ("modeldeck tag churn 7 stage=canary", "modeldeck tag churn 7 stage="),
    "retrain": ("modeldeck retrain churn --reason 'drift on tenure' --wait",),
    "jobs": ("modeldeck jobs churn",),
    "cancel": ("modeldeck cancel 4",),
    "completion": ("eval \"$(modeldeck completion bash)\"        # in ~/.bashrc",
                   "modeldeck completion zsh > ~/.zfunc/_modeldeck   # with compinit",
                   "modeldeck completion fish > ~/.config/fish/completions/modeldeck.fish"),
    "serve": ("modeldeck serve                      # http://127.0.0.1:8000, read-only",
              "modeldeck serve --demo --port 8080", "modeldeck serve --host 0.0.0.0 --allow-writes   # warns"),
}


def _finish(parser: argparse.ArgumentParser, sub: Any) -> None:
    """Every argument gets a help text, every command's --help ends with examples, and model
    and environment arguments complete from the registry (argcomplete)."""
    parsers: list[tuple[str | None, argparse.ArgumentParser]] = [(None, parser), *sub.choices.items()]
    for name, p in parsers:
        for action in p._actions:
            if action.help is None and action.dest in HELP_BY_DEST:
                action.help = HELP_BY_DEST[action.dest]
            if action.dest == "model":
                action.completer = _complete_models  # type: ignore[attr-defined]
            elif action.dest == "env":
                action.completer = _complete_environments  # type: ignore[attr-defined]
        examples = EXAMPLES.get(name)
        if examples:
            p.formatter_class = argparse.RawDescriptionHelpFormatter
            p.epilog = ((p.epilog + "\n\n") if p.epilog else "") + "examples:\n" + "\n".join(f"  {e}" for e in examples)


def _completion_registry(parsed: argparse.Namespace) -> Any:
    """The ledger for completing names: read-only, never created, no network (MLflow's names
    are mirrored in the ledger)."""
    from modeldeck.core.registry import Registry

    settings = configmod.load(getattr(parsed, "config", None), getattr(parsed, "registry", None))
    return settings, Registry(settings.registry, create=False, readonly=True)


def _complete_models(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    try:
        _, reg = _completion_registry(parsed_args)
        with reg:
            return [m.name for m in reg.models() if m.name.startswith(prefix)]
    except Exception:  # completion never prints an error into the user's command line
        return []


COMPLETION_DISCOVER_TIMEOUT = 1.0  # seconds a <tab> may wait for Prometheus ([[discover]] environments)


def _complete_environments(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    names: set[str] = set()
    try:
        settings, reg = _completion_registry(parsed_args)
        names |= {e.environment for e in settings.endpoints}
        from modeldeck.core.releases import fixed_discover_environments

        names |= fixed_discover_environments(settings)
        with reg:
            model = getattr(parsed_args, "model", None)
            names |= set(reg.aliases(model)) if model and reg.has_model(model) else set(reg.environments())
            names |= set(reg.policy_environments())
        if any(b.environment_label is not None for b in settings.discover):
            # environments named by a label: what Prometheus has now, within a second (else left out)
            from modeldeck.core.promql import resolve_discovered

            found = resolve_discovered(settings, timeout=COMPLETION_DISCOVER_TIMEOUT)
            names |= {e.environment for e in found.endpoints if e.discovered}
    except Exception:
        pass
    return sorted(n for n in names if n.startswith(prefix))


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    # The top level gets its own copies: set_defaults() below would otherwise change the
    # (shared) actions of every subparser too.
    parser = _Parser(
        prog=PROG, parents=[_common()],
        description="Watch deployed ML models live and release them safely.",
        epilog="Without a subcommand, modeldeck opens the TUI on the configured fleet. "
               "`modeldeck --demo` shows it on an embedded demo fleet.")
    parser.set_defaults(config=None, registry=None, command=None, handler=_cmd_tui)
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--demo", action="store_true", help="run the TUI on the embedded demo fleet")
    parser.add_argument("--mlflow", action="store_true",
                        help="with --demo: a local mlflow server is the registry of record (needs the MLflow "
                             "virtualenv: make mlflow-venv)")
    parser.add_argument("--via-prometheus", action="store_true",
                        help="with --demo: start a Prometheus scraping the demo fleet and read its metrics "
                             "through PromQL (needs the prometheus binary)")
    parser.add_argument("--read-only", action="store_true", help="hide and refuse every action that writes")
    rep = parser.add_argument_group("headless report (for cron)")
    rep.add_argument("--report", action=_ReportFlag, help="collect once, print findings, exit 0/1/2/3")
    rep.add_argument("--format", choices=["text", "markdown", "json", "prometheus"], default=None,
                     help="report format (default: text)")
    rep.add_argument("--output", metavar="FILE", default=None, help="write the report atomically to FILE")
    rep.add_argument("--sample", metavar="SECONDS", type=float, default=None,
                     help="seconds between the two metric scrapes (default 5)")
    rep.add_argument("--retrain-on", metavar="drift,quality", default=None,
                     help="start retraining for models whose production endpoint drifts and/or loses quality")
    rep.add_argument("--retrain-on-drift", action="store_true", help="the same as --retrain-on drift")

    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("demo-fleet", parents=[common], help="run the demo fleet headless until stopped",
                       description="Run the modeldeck demo fleet headless until stopped (SIGTERM or ctrl+c). "
                                   "The registry defaults to one in the work folder.")
    p.set_defaults(handler=_cmd_demo_fleet)
    p.add_argument("--write-config", metavar="FILE", required=True, help="write a config for the fleet here")
    p.add_argument("--workdir", metavar="DIR", help="captures, ground truth and default registry "
                   "(default: a fresh temporary folder, removed at exit)")
    # defaults None: the fleet's own (FleetSettings; importing it here would load numpy for every command)
    p.add_argument("--drift-at", type=float, metavar="S",
                   help="seconds after ready when inputs drift (default 10; <0: never)")
    p.add_argument("--errors-at", type=float, metavar="S",
                   help="seconds after ready when errors rise (default 15; <0: never)")
    p.add_argument("--error-rate", type=float, metavar="R", help="share of failing inferences then (default 0.3)")
    p.add_argument("--label-delay", type=float, metavar="S",
                   help="seconds from an answer to its ground-truth label (default 4)")
    p.add_argument("--rate-scale", type=float, metavar="X",
                   help="multiply every endpoint's request rate (default 1; 0: no traffic)")
    p.add_argument("--rate", action="append", default=[], metavar="ENDPOINT=R", type=_endpoint_rate,
                   help="requests/s of one endpoint (repeatable; before --rate-scale)")
    p.add_argument("--seed", type=int, help="random seed of the traffic (default 0)")
    p.add_argument("--poll-interval", type=float, metavar="S",
                   help="[poll] interval written to the config (default 1)")
    p.add_argument("--ready-timeout", type=float, metavar="S",
                   help="seconds the servers may take to answer (default 30)")
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the parent process exits")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.add_argument("--mlflow", metavar="URL", help="an MLflow tracking server as the registry of record: the demo "
                   "versions are registered there (runs, params, metrics, datasets) and the config gets [mlflow]")

    # hidden: the detached retraining supervisor (core.retrain starts it; the job's spec on stdin).
    # No help= at all: argparse before 3.13 would list help=SUPPRESS as "==SUPPRESS==".
    p = sub.add_parser("run-job", description="run one queued retraining job (started by modeldeck itself)")
    p.set_defaults(handler=_cmd_run_job)
    p.add_argument("job", metavar="JOB", type=int)
    p.add_argument("--registry", metavar="FILE", required=True)

    # hidden: the detached rollout supervisor (core.rollout starts it; its settings on stdin)
    p = sub.add_parser("run-rollout", description="drive one rollout (started by modeldeck itself)")
    p.set_defaults(handler=_cmd_run_rollout)
    p.add_argument("rollout", metavar="ID", type=int)
    p.add_argument("--registry", metavar="FILE", required=True)

    p = sub.add_parser("drift", parents=[common], help="compare a current data window with a reference")
    p.set_defaults(handler=_cmd_drift)
    p.add_argument("reference", metavar="REFERENCE")
    p.add_argument("current", metavar="CURRENT")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--categorical", metavar="COLS", help="comma-separated columns to treat as categorical")
    p.add_argument("--columns", metavar="COLS", help="comma-separated columns to compare (default: shared)")
    p.add_argument("--max-bytes", metavar="N", type=_byte_count, default=None,
                   help="largest file read whole, e.g. 512M (default 256M; 0 would refuse everything)")

    p = sub.add_parser("quality", parents=[common], help="model quality: captured predictions joined with labels",
                       description="Join captured predictions with their delayed labels and measure the model: "
                                   "exit 0 fine (or not enough labels), 1 degraded against the registered "
                                   "metrics (with --model), 2 bad input.")
    p.set_defaults(handler=_cmd_quality)
    p.add_argument("capture", metavar="CAPTURE", help="captured predictions: file, glob or URL")
    p.add_argument("labels", metavar="LABELS", help="ground truth: file, glob or URL")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--problem-type", choices=["classification", "regression"],
                   help="default: the model's rules with --model, else classification")
    p.add_argument("--prediction-column", metavar="COL", help="default: prediction")
    p.add_argument("--probability-column", metavar="COL", help="default: probability ('' for none)")
    p.add_argument("--positive-label", metavar="LABEL", help="default: 1")
    p.add_argument("--label-id-column", metavar="COL",
                   help="plain label (and capture) files: the id column (default: event_id, id, ...)")
    p.add_argument("--label-column", metavar="COL", default="label", help="plain label files (default: label)")
    p.add_argument("--window", type=int, metavar="N", help="newest labelled rows measured (default 1000)")
    p.add_argument("--min-rows", type=int, metavar="N", help="fewer: not enough labels (default 200)")
    p.add_argument("--model", metavar="MODEL", help="judge against this model's registered metrics")
    p.add_argument("--version", type=_version_number, metavar="N",
                   help="the version served (default: the --env alias's)")
    p.add_argument("--env", default="production", help="with --model: whose alias names the version")

    p = sub.add_parser("models", parents=[common], help="list models, their versions and aliases")
    p.set_defaults(handler=_cmd_models)
    _json_flag(p)

    p = sub.add_parser("register", parents=[common], help="register a new model version with its lineage")
    p.set_defaults(handler=_cmd_register)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--artifact", metavar="URI", help="where the trained artifact lives (required without --run-id)")
    p.add_argument("--run-id", metavar="RUN", help="with [mlflow]: the MLflow run it comes from (its params, "
                   "metrics and git commit are the lineage; source runs:/RUN/model unless --artifact)")
    p.add_argument("--dataset", metavar="PATH", help="training data (its SHA-256 is recorded)")
    p.add_argument("--reference", metavar="PATH", help="reference data that drift is compared against")
    p.add_argument("--metrics", metavar="JSON", help='evaluation metrics, e.g. \'{"auc": 0.91}\' or @file.json')
    ev = p.add_mutually_exclusive_group()
    ev.add_argument("--eval-dataset", metavar="PATH",
                    help="the data --metrics were measured on (its SHA-256 and rows are recorded with them)")
    ev.add_argument("--eval-sha256", metavar="HEX", help="or only that data's SHA-256 (with --eval-rows)")
    p.add_argument("--eval-rows", metavar="N", type=int, help="rows of the evaluation data")
    p.add_argument("--params", metavar="JSON", help="training parameters (JSON object or @file.json)")
    p.add_argument("--code-version", metavar="REV", help="code revision (git SHA, tag)")
    p.add_argument("--tag", metavar="KEY=VALUE", action="append", default=[], help="free-form tag (repeatable)")
    p.add_argument("--description", help="model description (first registration only)")
    p.add_argument("--job-id", type=int, default=None,
                   help="retraining job that produced it (default: $MODELDECK_JOB_ID)")
    p.add_argument("--reason", default="", help="why (goes to the audit log)")
    _json_flag(p)

    p = sub.add_parser("evaluate", parents=[common], help="run the model's evaluate hook on data; record the metrics",
                       description="Run [models.MODEL] evaluate (argv printing a JSON object of metrics on its last "
                                   "line) for one version on DATA and record the metrics, audited, as that "
                                   "version's on that dataset (its SHA-256 and rows).")
    p.set_defaults(handler=_cmd_evaluate)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION", type=_version_number)
    p.add_argument("--data", metavar="PATH", required=True,
                   help="a file, folder or glob, or 'recent' (the newest labelled rows of --env's endpoints)")
    p.add_argument("--env", metavar="ENV", default="production", help="for --data recent (default production)")
    p.add_argument("--reason", default="", help="why (goes to the audit log)")
    _json_flag(p)

    p = sub.add_parser("policy", parents=[common], help="show or set a model's release policy (in the registry)",
                       description="A model's release policy lives in the registry, versioned and audited: every "
                                   "promote and rollback applies it, with or without a config (a config may only "
                                   "make it stricter). Without --set it prints the policy as a policy file.")
    p.set_defaults(handler=_cmd_policy)
    p.add_argument("model", metavar="MODEL")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--set", metavar="FILE", dest="set_file", help="replace the policy with this TOML file")
    what.add_argument("--from-config", action="store_true",
                      help="store the config's [models.MODEL] rules as the first policy")
    what.add_argument("--history", action="store_true", help="list every version of the policy")
    what.add_argument("--version", dest="policy_version", metavar="N", type=int, help="show this version")
    p.add_argument("--reason", help="why (required with --set and --from-config; goes to the audit log)")
    _json_flag(p)

    p = sub.add_parser("versions", parents=[common], help="list a model's versions")
    p.set_defaults(handler=_cmd_versions)
    p.add_argument("model", metavar="MODEL")
    _json_flag(p)

    p = sub.add_parser("history", parents=[common], help="alias history of a model (newest first)")
    p.set_defaults(handler=_cmd_history)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--env", metavar="ENV", help="only this environment")
    p.add_argument("--at", metavar="TIME",
                   help="which version held --env at TIME: ISO-8601 (local unless Z or an offset), "
                        "or relative: '2h ago', --at=-2h")
    p.add_argument("--limit", type=int, default=None)
    _json_flag(p)

    p = sub.add_parser("audit", parents=[common], help="the audit log (newest first); checkpoint: sign its head",
                       description="The audit log, newest first. `modeldeck audit checkpoint` verifies the chain, "
                                   "signs its length and head with the Ed25519 audit key ($MODELDECK_AUDIT_KEY, else "
                                   "audit-key.pem in the XDG config folder; made on first use), appends the "
                                   "checkpoint to a file and prints it. `audit --verify --checkpoints FILE "
                                   "--public-key KEY` proves every checkpointed prefix unchanged.")
    p.set_defaults(handler=_cmd_audit)
    p.add_argument("what", nargs="?", choices=["checkpoint"], metavar="checkpoint",
                   help="sign the current head and append the checkpoint to --checkpoints (default: one file per "
                        "registry in the XDG state folder)")
    p.add_argument("--verify", action="store_true", help="verify the hash chain; exit 1 when broken")
    p.add_argument("--checkpoints", metavar="FILE", help="signed checkpoints to verify against (with --verify), or "
                   "the file a new one is appended to")
    p.add_argument("--public-key", metavar="KEY", help="the audit key's public half (default: the local key's .pub)")
    p.add_argument("--model", help="only entries about this model")
    p.add_argument("--action", help="only this action (promote, rollback, approve, ...)")
    p.add_argument("--actor", help="only this actor")
    p.add_argument("--limit", type=int, default=50, help="entries to show (default 50; 0: all)")
    _json_flag(p)

    approvals: tuple[tuple[str, str, Callable[[argparse.Namespace], int]], ...] = (
        ("approve", "approve a version", _cmd_approve), ("reject", "reject a version", _cmd_reject))
    for name, verb, handler in approvals:
        p = sub.add_parser(name, parents=[common], help=verb)
        p.set_defaults(handler=handler)
        p.add_argument("model", metavar="MODEL")
        p.add_argument("version", metavar="VERSION", type=_version_number)
        p.add_argument("--reason", required=True, help="why (required; goes to the audit log)")

    p = sub.add_parser("promote", parents=[common], help="promote a version to an environment")
    p.set_defaults(handler=_cmd_promote)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION", type=_version_number)
    p.add_argument("--env", metavar="ENV", required=True)
    p.add_argument("--reason", required=True, help="why (required; goes to the audit log)")
    p.add_argument("--expect", metavar="N", help="fail unless ENV holds version N now ('none': unset)")
    p.add_argument("--force", action="store_true",
                   help="release even when a metric or health gate fails (audited; never past approval)")
    p.add_argument("--no-verify", action="store_true",
                   help="do not wait for the endpoints to serve it, and skip baking")
    p.add_argument("--create-env", action="store_true", help="ENV is new: create it (else a typo is refused)")
    p.add_argument("--detach", action="store_true",
                   help="return right after the alias move; the rollout goes on (modeldeck rollout ID --follow)")
    _json_flag(p)

    p = sub.add_parser("rollback", parents=[common], help="roll an environment back")
    p.set_defaults(handler=_cmd_rollback)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--env", metavar="ENV", required=True)
    p.add_argument("--reason", required=True, help="why (required; goes to the audit log)")
    p.add_argument("--to", metavar="VERSION", type=_version_number, help="this version instead of the previous")
    p.add_argument("--expect", metavar="N", help="fail unless ENV holds version N now")
    p.add_argument("--force", action="store_true", help="accepted for symmetry: a rollback has no metric or "
                   "health gates, and approval (not to a rejected version) is never forced")
    p.add_argument("--no-verify", action="store_true", help="do not wait for the endpoints to serve it")
    p.add_argument("--create-env", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--detach", action="store_true",
                   help="return right after the alias move; the rollout goes on (modeldeck rollout ID --follow)")
    _json_flag(p)  # with --json, progress goes to stderr and the outcome as JSON to stdout

    p = sub.add_parser("rollouts", parents=[common], help="list rollouts (newest first)")
    p.set_defaults(handler=_cmd_rollouts)
    p.add_argument("model", metavar="MODEL", nargs="?")
    p.add_argument("--limit", type=int, default=50, help="rollouts to show (default 50; 0: all)")
    _json_flag(p)

    p = sub.add_parser("rollout", parents=[common], help="one rollout with its step log",
                       description="Show one rollout and its step log; --follow until it ends (exit 0 when done, "
                                   "1 when rolled back, aborted, failed or unverified); --confirm an unverified one.")
    p.set_defaults(handler=_cmd_rollout)
    p.add_argument("rollout", metavar="ID", type=int)
    p.add_argument("--follow", action="store_true", help="print its steps as they happen, until it ends")
    p.add_argument("--confirm", action="store_true", help="an unverified rollout was checked: count it done")
    p.add_argument("--reason", help="why (required with --confirm; goes to the audit log)")
    _json_flag(p)

    p = sub.add_parser("abort", parents=[common], help="stop a rollout and roll it back")
    p.set_defaults(handler=_cmd_abort)
    p.add_argument("rollout", metavar="ID", type=int)
    p.add_argument("--reason", required=True, help="why (required; goes to the audit log)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the rollback to finish")

    p = sub.add_parser("tag", parents=[common], help="set (KEY=VALUE) or remove (KEY=) a version's tag")
    p.set_defaults(handler=_cmd_tag)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION", type=_version_number)
    p.add_argument("tags", metavar="KEY=VALUE", nargs="+")
    p.add_argument("--reason", default="")

    p = sub.add_parser("retrain", parents=[common], help="start the model's retraining pipeline")
    p.set_defaults(handler=_cmd_retrain)
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--reason", default="", help="why (goes to the job and the audit log)")
    p.add_argument("--wait", action="store_true",
                   help="stream the job's output until it ends; exit 1 when it fails (Ctrl-C cancels it)")

    p = sub.add_parser("jobs", parents=[common], help="list retraining jobs (newest first)")
    p.set_defaults(handler=_cmd_jobs)
    p.add_argument("model", metavar="MODEL", nargs="?")
    p.add_argument("--limit", type=int, default=50)
    _json_flag(p)

    p = sub.add_parser("cancel", parents=[common], help="cancel a running retraining job")
    p.set_defaults(handler=_cmd_cancel)
    p.add_argument("job", metavar="JOB", type=int)

    p = sub.add_parser("serve", parents=[common], help="serve the TUI to a browser (read-only by default)",
                       description="Serve the same TUI to a web browser (textual-serve), one console per tab, "
                                   "read-only unless --allow-writes. It listens on loopback unless --host says "
                                   "otherwise; it has no login of its own: for other machines put it behind an "
                                   "authenticating proxy or an SSH tunnel (ssh -L 8000:127.0.0.1:8000 box).")
    p.set_defaults(handler=_cmd_serve)
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; another one warns)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--demo", action="store_true", dest="serve_demo",
                   help="serve the demo fleet's console (one fleet for every tab)")
    p.add_argument("--allow-writes", action="store_true",
                   help="let browser users promote, roll back, approve and retrain (audited as this user)")
    p.add_argument("--public-url", metavar="URL", default=None,
                   help="the address browsers use, when behind a proxy (default http://HOST:PORT)")

    p = sub.add_parser("completion", help="print the shell completion script (bash, zsh or fish)",
                       description="Print a completion script for your shell: commands, options, and model "
                                   "and environment names read from the registry as you type.")
    p.set_defaults(handler=_cmd_completion)
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")

    _finish(parser, sub)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    from modeldeck.tui import serve

    host = args.host or "127.0.0.1"
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: use 1-65535")
    if args.serve_demo and args.config:
        raise InputError("--demo serves the demo fleet's own config: leave out --config")
    mode = "with writes allowed" if args.allow_writes else "read-only"
    if not serve.is_loopback(host):
        print(f"{PROG}: warning: serving on {host}:{args.port}, {mode}, with no login: anyone who can reach "
              f"this port gets the console. Prefer an SSH tunnel or an authenticating proxy.", file=sys.stderr)
    fleet = None
    try:
        if args.serve_demo:
            import tempfile

            from modeldeck.core.demo import fleet as demo_fleet

            print(f"{PROG}: starting the demo fleet…", file=sys.stderr)
            fleet = demo_fleet.start_subprocess(tempfile.mkdtemp(prefix="modeldeck-serve-demo-"), registry=args.registry,
                                                cleanup=True)
            command = serve.session_argv(fleet.config_path, allow_writes=args.allow_writes)
        else:
            settings = _settings(args, required=True)  # a missing or bad config: one line now, not per tab
            assert settings.path is not None
            command = serve.session_argv(settings.path, registry=args.registry, allow_writes=args.allow_writes)
        shown = f"[{host}]" if ":" in host else host
        print(f"{PROG}: serving the console ({mode}) on http://{shown}:{args.port}  (ctrl+c stops)", file=sys.stderr)
        with _unguarded_streams():
            serve.serve(command, host, args.port, public_url=args.public_url)
    except OSError as e:
        raise InputError(f"cannot serve on {host}:{args.port}: {e.strerror or e}") from None
    finally:
        if fleet is not None:
            fleet.stop()
    return 0


def _cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete

    _out(argcomplete.shellcode([PROG], shell=args.shell).rstrip("\n"))
    return 0


def _endpoint_rate(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use ENDPOINT=REQUESTS_PER_SECOND") from None


def _byte_count(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        n = float(t[: len(t) - len(unit)] if unit else t) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (bytes, or 64K, 512M, 2G)") from None
    if not 1 <= n < 1 << 50:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size of at least 1 byte")
    return int(n)


def _version_number(text: str) -> int:
    try:
        n = int(text.lstrip("v"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number (they start at 1)")
    return n


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked (importlib.metadata
    costs 40 ms, which every other command, the cron report included, would pay)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit", **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> NoReturn:
        parser._print_message(f"{parser.prog} {_version()}\n", sys.stdout)
        parser.exit()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("modeldeck")
    except Exception:
        return "dev"


# ---------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    with _guarded_streams():
        parser = build_parser()
        if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions: answer and exit
            import argcomplete

            with _unguarded_streams():
                argcomplete.autocomplete(parser)
        args = parser.parse_args(argv)
        report = bool(args.report) and args.command is None
        try:
            _check_combination(parser, args)
            handler: Callable[[argparse.Namespace], int] = args.handler
            return handler(args)
        except ModeldeckError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 3 if report else e.exit_code
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `modeldeck audit | head`
            with _suppress():
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
            return 0


class _SafeStream:
    """A text stream that writes every control character it is given visibly (``\\x1b``; tabs
    and line breaks kept): whatever a file, an endpoint or a name holds, nothing modeldeck prints
    can move the cursor, retitle the terminal or hide text. ``unguarded`` is the stream itself,
    for output modeldeck colours on purpose (the text report) after cleaning its parts."""

    def __init__(self, stream: TextIO) -> None:
        self.unguarded = stream

    def write(self, text: str) -> int:
        self.unguarded.write(escape_controls(text))
        return len(text)

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unguarded, name)


@contextlib.contextmanager
def _guarded_streams():
    """sys.stdout and sys.stderr as :class:`_SafeStream` while a command runs (the TUI's
    handler puts the real ones back: Textual draws with escape sequences)."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, _SafeStream):
        sys.stdout = _SafeStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _SafeStream):
        sys.stderr = _SafeStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        if isinstance(sys.stdout, _SafeStream):  # (a broken pipe may have replaced it)
            sys.stdout = saved[0]
        sys.stderr = saved[1]


@contextlib.contextmanager
def _unguarded_streams():
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _unguarded(sys.stdout), _unguarded(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _unguarded(stream: Any) -> Any:
    return stream.unguarded if isinstance(stream, _SafeStream) else stream


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def _check_combination(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command is not None:
        if args.via_prometheus:
            parser.error(f"--via-prometheus does not combine with the {args.command} command")
        if args.mlflow is True:  # the top-level flag (demo-fleet's own --mlflow takes a URL)
            parser.error(f"--mlflow applies to --demo; the {args.command} command reads [mlflow] from the config")
        if args.demo or args.report:
            parser.error(f"--demo and --report do not combine with the {args.command} command")
        return
    if args.demo and args.report:
        parser.error("choose --demo or --report, not both")
    if args.mlflow and not args.demo:
        parser.error("--mlflow only applies to --demo (a config names its MLflow in [mlflow])")
    if args.via_prometheus and not args.demo:
        parser.error("--via-prometheus only applies to --demo")
    if not args.report:
        for flag, value in (("--output", args.output), ("--sample", args.sample),
                            ("--retrain-on-drift", args.retrain_on_drift or None),
                            ("--retrain-on", args.retrain_on)):
            if value is not None:
                parser.error(f"{flag} only applies to --report")
        if args.format is not None:
            parser.error("--format only applies to --report (or to the drift command)")


def _settings(args: argparse.Namespace, *, required: bool = False) -> configmod.Settings:
    return configmod.load(args.config, args.registry, required=required)


def _registry(args: argparse.Namespace, *, create: bool = False, readonly: bool = False):
    """The registry of the config: the ledger, or MLflow with the ledger on top ([mlflow])."""
    from modeldeck.core.registry import open_registry

    settings = _settings(args)
    reg = open_registry(settings, create=create, readonly=readonly)
    try:
        _reconcile_rollouts(reg, settings)
    except BaseException:
        reg.close()
        raise
    return reg


def _reconcile_rollouts(reg: Any, settings: configmod.Settings | None) -> None:
    """Nothing stays silently unwatched: every command that opens the registry resumes (or
    sets unverified) the rollouts whose supervisor is gone. One query when none is active."""
    from modeldeck.core.registry import ROLLOUT_ACTIVE

    if reg.readonly or not reg.rollouts(states=ROLLOUT_ACTIVE, limit=1):
        return
    from modeldeck.core import rollout

    rollout.reconcile(reg, settings)


def _out(text: str = "", file: TextIO | None = None) -> None:
    print(text, file=file or sys.stdout)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _json_arg(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    source = flag
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"{flag} {path}"
        try:
            text = path.read_text()
        except OSError as e:
            raise RegistryError(f"{flag}: cannot read {path}: {e.strerror or e}") from None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise RegistryError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{source}: must be a JSON object like {{\"auc\": 0.91}}")
    return value


def _expect(text: str | None) -> int | str | None:
    if text is None:
        return "current"
    if text.lower() in ("none", "unset", "-"):
        return None
    try:
        return int(text.lstrip("v"))
    except ValueError:
        raise RegistryError(f"--expect {text!r}: give a version number or 'none'") from None


# ---------------------------------------------------------------------------------------------
# the TUI, the report, the demo fleet, drift


def _cmd_tui(args: argparse.Namespace) -> int:
    from modeldeck.tui.app import run_app  # Textual is imported only here

    def left_running(lines: list[str]) -> None:  # quitting during a rollout: it goes on, and where to follow it
        for line in lines:
            print(f"{PROG}: {one_line(line, 300)}", file=sys.stderr)

    if args.demo:
        if args.mlflow:
            from modeldeck.core.demo import mlflowserver

            if not mlflowserver.venv_ready():
                raise mlflowserver.MlflowServerError(f"--demo --mlflow: {mlflowserver.why_not_ready()}")
        if args.via_prometheus:
            from modeldeck.core.demo.prometheus import binary

            if binary() is None:
                raise ModeldeckError("--via-prometheus needs the prometheus binary on PATH "
                                     "(Debian: apt-get install prometheus)")
        with _unguarded_streams():
            return run_app(None, demo=True, read_only=args.read_only, registry=args.registry,
                           via_prometheus=args.via_prometheus, on_exit=left_running, mlflow=args.mlflow)
    if args.mlflow:
        raise configmod.ConfigError("--mlflow only applies to --demo (a config names its MLflow in [mlflow])")
    settings = _settings(args, required=True)
    with contextlib.suppress(RegistryError), _registry(args):  # resume or mark unverified what nobody watches
        pass
    with _unguarded_streams():
        return run_app(settings, demo=False, read_only=args.read_only or settings.read_only, on_exit=left_running)


def _cmd_report(args: argparse.Namespace) -> int:
    settings = _settings(args, required=True)
    return run_report(settings, fmt=args.format or "text", output=args.output,
                      sample=args.sample, retrain_on_drift=args.retrain_on_drift, retrain_on=args.retrain_on)


def run_report(settings: configmod.Settings, *, fmt: str = "text", output: str | os.PathLike[str] | None = None,
               sample: float | None = None, retrain_on_drift: bool = False, retrain_on: str | None = None,
               stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``modeldeck --report``: collect (``core.report``), render, write; returns the exit code
    (0 OK, 1 WARNING, 2 CRITICAL, 3 when the report could not run: the reason is one line on
    stderr). With ``output`` and the prometheus format, a run that cannot collect still
    replaces the file with ``modeldeck_report_status 3``, so a collector never keeps serving
    an old OK."""
    from modeldeck.core import report

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if fmt not in report.FORMATS:
        print(f"{PROG}: unknown report format {fmt!r} (one of {', '.join(report.FORMATS)})", file=err)
        return report.EXIT_CODES[report.UNKNOWN]
    # A report is one short burst of allocations (thousands of snapshots and findings for a
    # large discovered fleet) in a process that exits after it: the cyclic collector walking
    # them again and again cost more than the work (see core.promql.gc_paused); it runs after.
    gc_was = gc.isenabled()
    gc.disable()
    try:
        triggers = report.retrain_triggers(retrain_on, drift_flag=retrain_on_drift)
        result = report.collect(settings, sample=sample, retrain_on=triggers)
    except (ModeldeckError, OSError) as e:
        _report_could_not_run(fmt, output, e, err)
        return report.EXIT_CODES[report.UNKNOWN]
    except Exception as e:  # a bug: still one line and UNKNOWN, never a traceback in a cron mail
        _report_could_not_run(fmt, output, RuntimeError(f"internal error: {type(e).__name__}: {e}"), err)
        return report.EXIT_CODES[report.UNKNOWN]
    finally:
        if gc_was:
            gc.enable()
    color = output is None and _wants_color(out) and fmt == "text"
    text = report.render(result, fmt, color=color)
    try:
        if output is None:
            (_unguarded(out) if color else out).write(text)  # colour codes are ours; the parts are one_line'd
            out.flush()
        else:
            report.write_atomic(output, text)
    except BrokenPipeError:
        raise
    except OSError as e:
        where = f"cannot write {output}" if output is not None else "cannot write the report"
        print(f"{PROG}: {where}: {e.strerror or e}", file=err)
        return report.EXIT_CODES[report.UNKNOWN]
    return result.exit_code


def _report_could_not_run(fmt: str, output: str | os.PathLike[str] | None, e: BaseException, err: TextIO) -> None:
    from modeldeck.core import report

    if isinstance(e, OSError) and e.strerror:
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e)
    print(f"{PROG}: report could not run: {one_line(text, 400)}", file=err)
    if output is not None and fmt == "prometheus":
        with contextlib.suppress(OSError):
            report.write_atomic(output, report.render_prometheus(None, generated_at=time.time()))


def _wants_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM", "") in ("", "dumb"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cmd_demo_fleet(args: argparse.Namespace) -> int:
    """The fleet in the foreground until SIGTERM / ctrl+c: logs on stderr, and one line on
    stdout when it is ready (``DemoFleetProcess`` waits for that line)."""
    from modeldeck.core.demo import fleet

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s demo-fleet %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per MLflow request otherwise
    given = {"drift_at": args.drift_at, "errors_at": args.errors_at, "error_rate": args.error_rate,
             "rate_scale": args.rate_scale, "seed": args.seed, "poll_interval": args.poll_interval,
             "ready_timeout": args.ready_timeout, "label_delay": args.label_delay, "mlflow_url": args.mlflow}
    settings = fleet.FleetSettings(**{k: v for k, v in given.items() if v is not None}, rates=tuple(args.rate))

    def ready(path: Path) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            print(fleet.READY_PREFIX + str(path), flush=True)

    try:
        return fleet.main(args.write_config, args.registry, workdir=args.workdir, settings=settings,
                          exit_with_parent=args.exit_with_parent, on_ready=ready)
    except ModeldeckError as e:
        print(f"{PROG} demo-fleet: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the fleet's own signal handlers were in place
        return 0


def _cmd_run_job(args: argparse.Namespace) -> int:
    """The detached retraining supervisor (``core.retrain`` starts it): 0 when the job
    succeeded, 1 when it failed or was cancelled, 2 (one line on stderr, which is the job's
    log) when it could not run; the job is then marked failed."""
    from modeldeck.core import retrain

    job = retrain.run_job_spec(args.job, args.registry, sys.stdin.read())
    return 0 if job.status == "succeeded" else 1


def _cmd_run_rollout(args: argparse.Namespace) -> int:
    """The detached rollout supervisor (``core.rollout`` starts it): 0 when done, 1 otherwise."""
    from modeldeck.core import rollout

    r = rollout.supervise(args.rollout, args.registry, sys.stdin.buffer.read())
    return rollout.exit_code(r)


def _cmd_drift(args: argparse.Namespace) -> int:
    def cols(text: str | None) -> list[str] | None:
        return [c.strip() for c in text.split(",") if c.strip()] if text else None

    return run_drift(args.reference, args.current, args.format, cols(args.categorical), cols(args.columns),
                     sys.stdout, max_bytes=args.max_bytes)


def run_drift(reference: str, current: str, fmt: str, categorical: list[str] | None, columns: list[str] | None,
              out: TextIO, *, max_bytes: int | None = None) -> int:
    """``modeldeck drift REFERENCE CURRENT``: prints the table or the JSON; 0 without dataset
    drift, 1 with; ``InputError`` (exit 2) on bad input."""
    if fmt not in ("text", "json"):
        raise InputError(f"unknown --format {fmt!r} (text or json)")
    from modeldeck.core import drift

    result = drift.compare_files(reference, current, categorical=categorical, columns=columns, max_bytes=max_bytes)
    if fmt == "json":
        out.write(json.dumps(drift.result_to_json(result), indent=2) + "\n")
    else:
        out.write(drift.render_text(result))
    return 1 if result.dataset_drift else 0


def _cmd_quality(args: argparse.Namespace) -> int:
    return run_quality(args, sys.stdout)


def run_quality(args: argparse.Namespace, out: TextIO) -> int:
    """``modeldeck quality CAPTURE LABELS``: the metrics of the joined rows; with ``--model``
    judged against the served version's registered metrics (0 fine or not enough labels, 1
    degraded; ``InputError`` exit 2)."""
    from modeldeck.core import quality
    from modeldeck.core.config import ModelConfig

    mc = ModelConfig(name=args.model or "-")
    registered = None
    served: str | None = None
    if args.model:
        from modeldeck.core.registry import open_registry

        settings = _settings(args)
        with open_registry(settings, create=False, readonly=True) as reg:
            mc = quality.rules_for(reg, settings, args.model)  # as the report and the TUI judge it
            version = args.version
            if version is None:
                version = reg.model(args.model).aliases.get(args.env)
                if version is None:
                    raise InputError(f"{one_line(args.model, 60)} has no {one_line(args.env, 40)} version: "
                                     f"pass --version N")
            registered = quality.registered(reg, args.model, version)
            served = str(version)
    for flag, value in (("--window", args.window), ("--min-rows", args.min_rows)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be at least 1, not {value}")
    spec = quality.spec_for(mc, window=args.window, id_column=args.label_id_column)
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if args.problem_type:
        changes["problem_type"] = args.problem_type
    if args.prediction_column is not None:
        changes["prediction_column"] = args.prediction_column
    if args.probability_column is not None:
        changes["probability_column"] = args.probability_column or None
    if args.positive_label is not None:
        changes["positive_label"] = args.positive_label
    if args.min_rows is not None:
        changes["min_rows"] = args.min_rows
    if served is not None:
        changes["version"] = served  # rows another version answered are left out (when the captures say)
    spec = replace(spec, **changes)
    result = quality.assess(args.capture, args.labels, spec, label_id_column=args.label_id_column,
                            label_column=args.label_column)
    doc = quality.document(result, registered, mc.quality_drop)
    if args.format == "json":
        out.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    else:
        out.write(quality.render_text(result, registered, doc["verdicts"]))
    return 1 if doc["verdicts"] else 0


# ---------------------------------------------------------------------------------------------
# registry commands


def _cmd_models(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        models = reg.models()
    if args.json:
        _print_json([{"name": m.name, "latest_version": m.latest_version, "versions": m.n_versions,
                      "aliases": dict(m.aliases), "created_at": m.created_at} for m in models])
        return 0
    if not models:
        _out("no models registered yet (modeldeck register MODEL --artifact URI)")
        return 0
    _out(table(["MODEL", "VERSIONS", "LATEST", "ALIASES"],
               [[m.name, m.n_versions, m.latest_version or "-",
                 " ".join(f"{e}={v}" for e, v in m.aliases.items()) or "-"] for m in models], right=[1, 2]))
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    tags = dict(_pair(t, "--tag") for t in args.tag)
    job_id = args.job_id
    if job_id is None and os.environ.get("MODELDECK_JOB_ID", "").strip().isdigit():
        job_id = int(os.environ["MODELDECK_JOB_ID"])
    metrics = _json_arg(args.metrics, "--metrics")
    params = _json_arg(args.params, "--params")
    settings = _settings(args)
    if args.run_id and settings.mlflow is None:
        raise RegistryError("--run-id names an MLflow run: it needs [mlflow] in the config")
    if not args.artifact and not args.run_id:
        raise RegistryError("an artifact URI is required (--artifact URI" +
                            (", or --run-id RUN)" if settings.mlflow is not None else ")"))
    extra = {"run_id": args.run_id} if args.run_id else {}
    if args.reference:  # read it now and refuse what drift would refuse, with drift's words
        from modeldeck.core import drift

        drift.load_profile(args.reference)
    from modeldeck.core.registry import open_registry

    with open_registry(settings, create=True) as reg:
        v = reg.register(args.model, args.artifact, **extra, dataset=args.dataset, reference=args.reference,
                         code_version=args.code_version, params=params, metrics=metrics, tags=tags,
                         description=args.description, job_id=job_id, reason=args.reason,
                         eval_dataset=args.eval_dataset, eval_sha256=args.eval_sha256, eval_rows=args.eval_rows)
        evals = reg.evaluations(v.model, v.version)
    if args.json:
        _print_json({**v.as_dict(), "evaluations": [e.as_dict() for e in evals]})
    else:
        where = f" in MLflow ({one_line(v.artifact, 120)})" if settings.mlflow is not None else ""
        _out(f"registered {v.model} version {v.version}{where} (pending approval)")
    if metrics and not (args.eval_dataset or args.eval_sha256):
        print(f"{PROG}: note: metrics recorded without their evaluation data: metric gates compare them with no "
              f"other version's (--eval-dataset PATH, or modeldeck evaluate)", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from modeldeck.core import datafiles, evaluation
    from modeldeck.core.registry import open_registry

    settings = _settings(args)
    with open_registry(settings, create=False) as reg:
        v = reg.version(args.model, args.version)
        if settings.model(args.model).evaluate is None:
            raise evaluation.no_hook(args.model)
        data = evaluation.resolve_data(settings, args.model, args.data, environment=args.env)
        progress = sys.stderr
        print(f"evaluating {v.model} version {v.version} on {data.describe()} ({data.path})", file=progress,
              flush=True)
        evals = evaluation.evaluate(settings, reg, v, data, reason=args.reason,
                                    on_output=lambda line: print(f"  | {one_line(line, 400)}", file=progress,
                                                                 flush=True))
    if args.json:
        _print_json({"model": v.model, "version": v.version, "dataset_sha256": data.sha256,
                     "dataset_rows": data.rows, "dataset_path": data.path,
                     "metrics": {e.metric: e.value for e in evals}})
        return 0
    metrics = " ".join(f"{one_line(e.metric, 40)}={num(e.value, 4)}" for e in evals)
    _out(f"evaluated {v.model} version {v.version} on {datafiles.describe(data.sha256, data.rows)}: {metrics}")
    return 0


def _cmd_policy(args: argparse.Namespace) -> int:
    from modeldeck.core import policy
    from modeldeck.core.registry import open_registry

    settings = _settings(args)
    writes = bool(args.set_file or args.from_config)
    if writes and not (args.reason and args.reason.strip()):
        raise RegistryError("a reason is required to set a policy (--reason)")
    with open_registry(settings, create=False) as reg:
        reg.model(args.model)
        current = reg.policy(args.model)
        if args.history:
            history = reg.policy_history(args.model)
            if args.json:
                _print_json([h.as_dict() for h in history])
            elif not history:
                _out(f"{args.model} has no release policy in the registry")
            else:
                _out(table(["VERSION", "SET (UTC)", "BY", "REASON", "RULES"],
                           [[h.version, h.at[:19].replace("T", " "), h.actor, h.reason,
                             ", ".join(sorted(h.rules))] for h in history], right=[0]))
            return 0
        if writes:
            mc = settings.model(args.model)
            if args.from_config:
                if current is not None:
                    raise RegistryError(f"{args.model} already has policy version {current.version} in the registry; "
                                        f"--from-config only imports a config into a registry without one "
                                        f"(edit it: modeldeck policy {args.model} > FILE, then --set FILE)")
                rules = policy.config_rules(mc)
                if not rules:
                    where = settings.path or "no config file"
                    raise RegistryError(f"{where}: [models.{args.model}] sets no release rules to import")
                text = policy.to_toml(rules)
            else:
                rules, text = policy.parse_file(args.set_file)
            if current is not None and dict(current.rules) == rules:
                _out(f"the release policy of {args.model} is unchanged (still version {current.version})")
                return 0
            rec = reg.set_policy(args.model, rules, args.reason, text=text,
                                 expect=current.version if current else None)
            was = f" (was version {current.version})" if current else ""
            _out(f"set the release policy of {args.model}: version {rec.version}{was}")
            merged = policy.merge(mc, rec, settings.path)
            for problem in merged.problems:
                print(f"{PROG}: warning: {one_line(problem, 400)}: releases with this config are refused until it "
                      f"is changed", file=sys.stderr)
            return 0
        rec = reg.policy(args.model, args.policy_version) if args.policy_version else current
    merged = policy.merge(settings.model(args.model), rec, settings.path)
    if args.json:
        _print_json({"model": args.model, "policy": rec.as_dict() if rec else None,
                     "applies": policy.config_rules(merged.model_config) if rec or merged.model_config.explicit
                     else {}, "tightened_by_config": list(merged.tightened), "problems": list(merged.problems),
                     "config": str(settings.path) if settings.path else None})
        return 0
    lines = []
    if rec is None:
        lines.append(f"# {args.model} has no release policy in the registry: the config's [models.{args.model}] "
                     f"rules apply" + ("" if merged.model_config.explicit else " (none: the defaults)"))
        lines.append(f"# store them: modeldeck policy {args.model} --from-config --reason TEXT; or write a policy "
                     f"file and: modeldeck policy {args.model} --set FILE --reason TEXT")
        body = policy.to_toml(policy.config_rules(merged.model_config)) if merged.model_config.explicit else ""
    else:
        lines.append(f"# release policy of {args.model}: version {rec.version}, set {rec.at[:19].replace('T', ' ')} "
                     f"UTC by {one_line(rec.actor, 60)}: {one_line(rec.reason, 200)}")
        lines.append(f"# edit a copy and apply it: modeldeck policy {args.model} --set FILE --reason TEXT")
        body = policy.to_toml(rec.rules)
    for t in merged.tightened:
        lines.append(f"# the config {settings.path} makes it stricter: {one_line(t, 200)}")
    for problem in merged.problems:
        lines.append(f"# REFUSED: {one_line(problem, 300)}")
    applies = f"policy version {rec.version}" if rec else "no policy"
    applies += f" with the config {settings.path}" if settings.path else ", no config"
    lines.append(f"# what applies ({applies}):")
    lines += [f"#   {k}: {one_line(v, 200)}" for k, v in policy.describe_rules(merged.model_config)]
    _out("\n".join(lines) + ("\n" + body.rstrip("\n") if body else ""))
    for problem in merged.problems:
        print(f"{PROG}: warning: {one_line(problem, 400)}", file=sys.stderr)
    return 0


def _pair(text: str, flag: str) -> tuple[str, str]:
    if "=" not in text:
        raise RegistryError(f"{flag} {text!r}: use KEY=VALUE")
    k, v = text.split("=", 1)
    if not k.strip():
        raise RegistryError(f"{flag} {text!r}: the key is empty")
    return k.strip(), v


def _cmd_versions(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        versions = reg.versions(args.model)
        aliases = reg.aliases(args.model)
        evaluations = reg.evaluations(args.model) if args.json else []
    holders: dict[int, list[str]] = {}
    for env, n in aliases.items():
        holders.setdefault(n, []).append(env)
    versions = sorted(versions, key=lambda v: v.version, reverse=True)  # newest first, as every listing
    if args.json:
        _print_json([{**v.as_dict(), "environments": holders.get(v.version, []),
                      "evaluations": [e.as_dict() for e in evaluations if e.version == v.version]}
                     for v in versions])
        return 0
    if not versions:
        _out(f"{args.model} has no versions")
        return 0
    rows = []
    for v in versions:
        metrics = " ".join(f"{k}={num(val)}" for k, val in list(v.metrics.items())[:3])
        rows.append([v.version, v.created_at[:16].replace("T", " "), v.approval,
                     ",".join(holders.get(v.version, [])) or "-", metrics or "-",
                     (v.dataset_sha256 or _digest(v))[:12] or "-", v.code_version or "-", v.created_by])
    _out(table(["VERSION", "CREATED (UTC)", "APPROVAL", "ENVIRONMENTS", "METRICS", "DATASET", "CODE", "BY"],
               rows, right=[0]))
    return 0


def _digest(v: Any) -> str:
    """An MLflow version's training dataset digest when modeldeck has no SHA-256 of its data."""
    return next((str(d.get("digest") or "") for d in v.datasets if d.get("context") in ("training", "train")),
                str(v.datasets[0].get("digest") or "") if v.datasets else "")


def _cmd_history(args: argparse.Namespace) -> int:
    from modeldeck.core.registry import parse_time

    with _registry(args) as reg:
        if args.at:
            if not args.env:
                raise RegistryError("--at needs --env (which environment?)")
            when = parse_time(args.at)
            change = reg.alias_at(args.model, args.env, when)
            reg.model(args.model)  # unknown model -> clear error
            if args.json:
                _print_json(change.as_dict() if change else None)
            elif change is None or change.to_version is None:
                _out(f"{args.env} of {args.model} held no version at {when:%Y-%m-%d %H:%M:%S} UTC")
            else:
                _out(f"{args.env} of {args.model} held version {change.to_version} at "
                     f"{when:%Y-%m-%d %H:%M:%S} UTC (since {change.at[:19].replace('T', ' ')} UTC, "
                     f"{change.action} by {one_line(change.actor)}: {one_line(change.reason)})")
            return 0
        changes = reg.history(args.model, args.env, limit=args.limit)
    if args.json:
        _print_json([c.as_dict() for c in changes])
        return 0
    if not changes:
        _out(f"{args.model} has no alias history" + (f" in {args.env}" if args.env else ""))
        return 0
    _out(table(["WHEN (UTC)", "ENV", "ACTION", "FROM", "TO", "ACTOR", "REASON"],
               [[c.at[:19].replace("T", " "), c.environment, c.action,
                 "-" if c.from_version is None else c.from_version,
                 "-" if c.to_version is None else c.to_version, c.actor, c.reason]
                for c in changes], right=[3, 4]))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    if args.what == "checkpoint":
        return _cmd_checkpoint(args)
    if args.public_key and not args.checkpoints:
        raise RegistryError("--public-key goes with --verify --checkpoints FILE")
    with _registry(args) as reg:
        if args.verify:
            result = _verify_with_checkpoints(reg, args) if args.checkpoints else reg.verify_audit()
            if args.json:
                _print_json({"ok": result.ok, "checked": result.checked, "first_bad": result.first_bad,
                             "problem": result.problem, "head": result.head, "rows_checked": result.rows_checked,
                             "rows_uncovered": result.rows_uncovered, "checkpoints": result.checkpoints})
            else:
                _out(result.describe(), None if result.ok else sys.stderr)
            return 0 if result.ok else 1
        if args.checkpoints:
            raise RegistryError("--checkpoints goes with --verify, or with: modeldeck audit checkpoint")
        entries = reg.audit(subject=args.model, action=args.action, actor=args.actor,
                            limit=args.limit or None)
    if args.json:
        _print_json([e.as_dict() for e in entries])
        return 0
    if not entries:
        _out("no audit entries")
        return 0
    _out(table(["#", "WHEN (UTC)", "ACTOR", "ACTION", "SUBJECT", "CHANGE", "REASON"],
               [[e.id, e.at[:19].replace("T", " "), e.actor, e.action, e.subject,
                 _change_text(e.before, e.after), e.reason] for e in entries], right=[0]))
    return 0


def _verify_with_checkpoints(reg: Any, args: argparse.Namespace) -> Any:
    """``audit --verify --checkpoints FILE [--public-key KEY]``: every checkpoint of this
    registry in FILE must carry a good signature and vouch for an unchanged prefix."""
    from modeldeck.core import checkpoints as cps
    from modeldeck.core.registry import VerifyResult

    public_path = Path(args.public_key) if args.public_key else cps.public_key_path(cps.key_path())
    public = cps.load_public_key(public_path)
    found = cps.read(args.checkpoints)
    registry = reg.registry_id(create=False)
    mine = [cp for cp in found if cp.registry == registry]
    if not mine:
        what = "no checkpoints" if not found else f"no checkpoint of this registry (id {(registry or 'none')[:16]})"
        return VerifyResult(False, 0, None, f"{args.checkpoints} holds {what}: nothing vouches for the log")
    bad = cps.check_signatures(mine, public, str(args.checkpoints))
    if bad:
        return VerifyResult(False, 0, None, bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    return reg.verify_audit(mine)


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    from modeldeck.core import checkpoints as cps

    if args.verify or args.public_key:
        raise RegistryError("audit checkpoint signs the head: --verify and --public-key are for audit --verify")
    with _registry(args) as reg:
        cp, result = cps.checkpoint(reg, Path(args.checkpoints) if args.checkpoints else None)
        where = Path(args.checkpoints) if args.checkpoints else cps.default_file(reg.path)
    if cp is None:
        print(f"{PROG}: not signed: {result.describe()}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(json.loads(cp.to_line()))
    else:
        _out(cp.to_line())
        print(f"{PROG}: {cp.describe()} appended to {where} (public key: "
              f"{cps.public_key_path(cps.key_path())})", file=sys.stderr)
    return 0


def _change_text(before: Any, after: Any) -> str:
    """One cell: what changed, the version first, gates summarised as passed/failed."""
    if after is None or after in ({}, [], ""):
        return "-"
    if not isinstance(after, dict):
        return _cell(after)
    b = before if isinstance(before, dict) else {}
    if "rollout" in after and "state" in after:  # a rollout's transition
        head = f"rollout {after['rollout']}: {b.get('state') or 'new'} -> {after['state']}"
        return head + (f" ({after['message']})" if after.get("message") else "")
    if "rules" in after and "version" in after:  # a policy
        old_rules, new_rules = b.get("rules") or {}, after.get("rules") or {}
        changed = sorted(k for k in {*old_rules, *new_rules} if old_rules.get(k) != new_rules.get(k))
        return (f"policy version {b.get('version') or '-'} -> {after['version']}"
                + (f"; changed: {', '.join(changed)}" if changed else ""))
    if "dataset_sha256" in after and isinstance(after.get("metrics"), dict):  # an evaluation
        from modeldeck.core.datafiles import describe

        metrics = " ".join(f"{k}={num(v, 4)}" for k, v in list(after["metrics"].items())[:4])
        return f"{metrics} on {describe(after['dataset_sha256'], after.get('dataset_rows'))}"
    parts = []
    if "approvers" in after and isinstance(after["approvers"], list):
        parts.append(f"approved by {', '.join(map(str, after['approvers']))}")
        after = {k: v for k, v in after.items() if k != "approvers"}
    if "version" in after:
        before_v = b.get("version") if b else None
        parts.append(f"version: {'-' if before_v is None else before_v} -> "
                     f"{after['version'] if after['version'] is not None else 'unset'}")
    gates = after.get("gates")
    if isinstance(gates, list) and gates:
        failed = [str(g.get("name")) for g in gates if isinstance(g, dict) and not g.get("passed")]
        parts.append(f"gates {len(gates) - len(failed)}/{len(gates)} passed" + (f" ({', '.join(failed)} failed)"
                                                                                  if failed else ""))
    if after.get("forced"):
        parts.append("FORCED")
    if after.get("automatic"):
        parts.append("automatic")
    skip = {"version", "gates", "forced", "forced_gates", "automatic", "stage", "undoes", "failed", "plan"}
    rest = [k for k in after if k not in skip and b.get(k) != after.get(k) and after[k] not in (None, {}, "")]
    for k in rest[: max(0, 3 - len(parts))]:
        parts.append(f"{k}: {_cell(b[k])} -> {_cell(after[k])}" if k in b else f"{k}={_cell(after[k])}")
    return ", ".join(str(p) for p in parts if p is not None) or "-"


def _cell(value: Any) -> str:
    """A value in the audit's CHANGE column: text as it is, anything else as compact JSON,
    ``-`` for none (never a Python repr)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _cmd_approve(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        v = reg.approve(args.model, args.version, args.reason)
        approvers = [a for a, _ in reg.approvers(v.model, v.version)]
    more = f" (approved by {', '.join(approvers)})" if len(approvers) > 1 else ""
    _out(f"approved {v.model} version {v.version}{more}")
    return 0


def _cmd_reject(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        v = reg.reject(args.model, args.version, args.reason)
    _out(f"rejected {v.model} version {v.version}")
    return 0


def _cmd_tag(args: argparse.Namespace) -> int:
    pairs = [_pair(t, "tag") for t in args.tags]
    with _registry(args) as reg:
        for k, v in pairs:
            reg.tag(args.model, args.version, k, v if v != "" else None, reason=args.reason)
    _out(f"tagged {one_line(args.model, 128)} version {args.version}: "
         + ", ".join(f"{one_line(k, 128)}={one_line(v, 200)}" for k, v in pairs))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    return run_release(_settings(args), action="promote", model=args.model, version=args.version,
                       environment=args.env, reason=args.reason,
                       expect="plan" if args.expect is None else _expect(args.expect),
                       force=args.force, verify=not args.no_verify, as_json=args.json, create_env=args.create_env,
                       detach=args.detach)


def _cmd_rollback(args: argparse.Namespace) -> int:
    return run_release(_settings(args), action="rollback", model=args.model, version=None,
                       environment=args.env, reason=args.reason, to=args.to,
                       expect="plan" if args.expect is None else _expect(args.expect),
                       force=args.force, verify=not args.no_verify, as_json=args.json, create_env=args.create_env,
                       detach=args.detach)


class _Detached(Exception):
    """A signal (Ctrl-C, SIGHUP, SIGTERM) while following a rollout: stop following, not it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _detach_on_signals() -> Any:
    import signal

    def handler(signum: int, _frame: Any) -> None:
        raise _Detached(signum)

    saved = {}
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave them
            saved[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)


def _step_line(stage: str, level: str, message: str) -> str:
    text = one_line(message, 400)
    return f"  | {text}" if level == "output" else f"{stage}: {text}"


def run_release(settings: configmod.Settings, *, action: str, model: str, version: int | None, environment: str,
                reason: str, to: int | None = None, expect: int | str | None = "plan", force: bool = False,
                verify: bool = True, as_json: bool = False, out: TextIO | None = None,
                err: TextIO | None = None, create_env: bool = False, detach: bool = False) -> int:
    """``modeldeck promote`` / ``rollback``: print the plan and the gates, move the alias, hand
    the rest to the rollout's detached supervisor (``core.rollout``) and follow its steps. Exit
    0 when the rollout is done, 1 when it was rolled back, aborted, failed or is unverified, 2
    when refused before anything moved (a failed gate, approval, a conflict; bad input raises).
    ``detach`` (or Ctrl-C, SIGHUP, SIGTERM while following) leaves the rollout to its
    supervisor and says how to follow it. With ``as_json`` the progress goes to stderr and the
    rollout as JSON to stdout."""
    from modeldeck.core import releases, rollout
    from modeldeck.core.registry import open_registry

    out = out or sys.stdout
    err = err or sys.stderr
    progress = err if as_json else out
    if not reason or not reason.strip():
        raise RegistryError(f"a reason is required to {action} (--reason)")

    def show(ev: ReleaseEvent) -> None:
        if ev.stage == "done":
            return
        print(_step_line(ev.stage, ev.level, ev.message), file=progress, flush=True)

    with open_registry(settings, create=False) as reg:
        _reconcile_rollouts(reg, settings)
        p = releases.plan(settings, reg, model, version, environment, action=action, to=to, expect=expect,
                          create_env=create_env, on_event=show)
        refused = p.unforceable_failures
        if refused:
            extra = " (--force does not pass approval)" if force else ""
            raise GateError(f"{refused[0].detail}; nothing was changed{extra}")
        for note in p.notes:
            print(f"note: {note}", file=progress, flush=True)
        started = rollout.start(p, reason=reason, force=force, verify=verify, registry=reg, on_event=show)
        r = started.rollout
        if started.refused or r is None:
            if as_json:
                print(json.dumps({"id": None, "state": "refused", "message": started.message, "plan": p.as_dict()},
                                 indent=2, default=str), file=out)
            print(f"{PROG}: {one_line(started.message, 400)}", file=err)
            return rollout.EXIT_REFUSED
        steps = reg.rollout_steps(r.id)
        seen = steps[-1].id if steps else 0
        follow_hint = f"modeldeck rollout {r.id} --follow"
        if detach or not r.active:
            if not r.active:  # ended already (the supervisor could not start: rolled back here)
                for st in reg.rollout_steps(r.id, after=seen):
                    print(_step_line(st.stage, st.level, st.message), file=progress, flush=True)
            elif not as_json:
                print(f"rollout {r.id} goes on in the background (pid {r.pid or 'starting'}): {follow_hint}",
                      file=out, flush=True)
            if as_json:
                print(json.dumps(_rollout_json(reg, r, p), indent=2, default=str), file=out)
            return rollout.exit_code(r) if not r.active else 0
        print(f"rollout {r.id}: the supervisor takes it from here (Ctrl-C stops following, not the rollout)",
              file=progress, flush=True)
        try:
            with _detach_on_signals():
                r = rollout.follow(reg, r.id, after=seen, settings=settings,
                                   on_step=lambda st: None if st.stage == "done" else print(
                                       _step_line(st.stage, st.level, st.message), file=progress, flush=True))
        except _Detached as d:
            print(f"\nrollout {r.id} goes on: {follow_hint}", file=err, flush=True)
            return 128 + d.signum
        if as_json:
            print(json.dumps(_rollout_json(reg, r, p), indent=2, default=str), file=out)
    return _rollout_end(r, out, err, as_json)


def _rollout_end(r: Any, out: TextIO, err: TextIO, as_json: bool) -> int:
    from modeldeck.core import rollout

    code = rollout.exit_code(r)
    text = one_line(r.message, 400)
    if code == 0:
        if not as_json:
            print(text, file=out)
    elif r.critical:
        print(f"{PROG}: CRITICAL: rollout {r.id} {r.state}: {text}", file=err)
    else:
        print(f"{PROG}: rollout {r.id} {r.state}: {text}", file=err)
    return code


def _rollout_json(reg: Any, r: Any, plan: Any = None) -> dict[str, Any]:
    d = r.as_dict()
    d["steps"] = [st.as_dict() for st in reg.rollout_steps(r.id)]
    if plan is not None:
        d["plan"] = plan.as_dict()
    return d


def _cmd_rollouts(args: argparse.Namespace) -> int:
    from modeldeck.core import rollout

    with _registry(args) as reg:
        if args.model:
            reg.model(args.model)
        rows = reg.rollouts(args.model, limit=args.limit or None)
    if args.json:
        _print_json([r.as_dict() for r in rows])
        return 0
    if not rows:
        _out("no rollouts" + (f" of {args.model}" if args.model else ""))
        return 0
    _out(table(["ID", "MODEL", "ENV", "ACTION", "FROM", "TO", "STATE", "STARTED (UTC)", "ACTOR", "MESSAGE"],
               [[r.id, r.model, r.environment, r.action, "-" if r.from_version is None else r.from_version,
                 r.to_version, rollout.describe_state(r) + (" !" if r.critical else ""),
                 r.started_at[:19].replace("T", " "), r.actor, one_line(r.message, 120)] for r in rows],
               right=[0, 4, 5]))
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    from modeldeck.core import rollout

    settings = _settings(args)
    with _registry(args) as reg:
        if args.confirm:
            if not args.reason or not args.reason.strip():
                raise RegistryError("a reason is required to confirm a rollout (--reason)")
            r = rollout.confirm(reg, args.rollout, args.reason)
            if args.json:
                _print_json(_rollout_json(reg, r))
            else:
                _out(f"rollout {r.id} confirmed: {one_line(r.message, 300)}")
            return 0
        if args.reason:
            raise RegistryError("--reason goes with --confirm (to abort: modeldeck abort ID --reason ...)")
        r = reg.rollout(args.rollout)
        if args.follow and r.active:
            if not args.json:
                _print_rollout_head(r)
            try:
                with _detach_on_signals():
                    r = rollout.follow(reg, r.id, settings=settings, on_step=None if args.json else _print_step)
            except _Detached as d:
                print(f"\nstopped following; rollout {r.id} goes on: modeldeck rollout {r.id} --follow",
                      file=sys.stderr)
                return 128 + d.signum
            if args.json:
                _print_json(_rollout_json(reg, r))
            return _rollout_end(r, sys.stdout, sys.stderr, args.json)
        if args.json:
            _print_json(_rollout_json(reg, r))
        else:
            _print_rollout_head(r)
            for st in reg.rollout_steps(r.id):
                _print_step(st)
            _out(f"state: {rollout.describe_state(r)}: {one_line(r.message, 400)}")
        if args.follow:
            return rollout.exit_code(r)
    return 0


def _print_rollout_head(r: Any) -> None:
    before = "unset" if r.from_version is None else f"version {r.from_version}"
    _out(f"rollout {r.id}: {r.action} {one_line(r.model)} {one_line(r.environment)}: {before} -> version "
         f"{r.to_version} by {one_line(r.actor)} at {r.started_at[:19].replace('T', ' ')} UTC: "
         f"{one_line(r.reason, 200)}" + (" (forced)" if r.forced else ""))


def _print_step(st: Any) -> None:
    print(f"{st.at[11:19]} " + _step_line(st.stage, st.level, st.message), flush=True)


def _cmd_abort(args: argparse.Namespace) -> int:
    from modeldeck.core import rollout

    settings = _settings(args)
    with _registry(args) as reg:
        r = rollout.abort(reg, args.rollout, args.reason)
        if r.active and not args.no_wait:
            _out(f"rollout {r.id}: abort requested; waiting for its supervisor to roll back")
            r = rollout.follow(reg, r.id, settings=settings, on_step=_print_step, timeout=600)
    if r.active:
        _out(f"rollout {r.id}: abort requested; its supervisor rolls back (modeldeck rollout {r.id} --follow)")
        return 0
    _out(f"rollout {r.id} {r.state}: {one_line(r.message, 400)}")
    return 0 if r.state in ("aborted", "rolled_back") else 1


def _cmd_jobs(args: argparse.Namespace) -> int:
    from modeldeck.core import retrain

    with _registry(args) as reg:
        if args.model:
            reg.model(args.model)
        jobs = retrain.list_jobs(reg, args.model, limit=args.limit or None)  # marks dead runners failed
    if args.json:
        _print_json([j.as_dict() for j in jobs])
        return 0
    if not jobs:
        _out("no retraining jobs")
        return 0
    _out(table(["JOB", "MODEL", "TRIGGER", "STATUS", "CREATED (UTC)", "EXIT", "VERSION", "ACTOR", "REASON",
                "MESSAGE"],
               [[j.id, j.model, j.trigger, j.status, j.created_at[:19].replace("T", " "),
                 exit_words(j.exit_code), j.produced_version or "-", j.actor,
                 j.reason or "-", j.message or "-"]
                for j in jobs], right=[0]))
    return 0


def _cmd_retrain(args: argparse.Namespace) -> int:
    from modeldeck.core import retrain

    settings = _settings(args)
    if not args.wait:  # a detached runner: the job outlives this command
        run = retrain.start_retrain(settings, args.model, reason=args.reason, detach=True)
        _out(f"started job {run.job_id}: retraining {args.model} (log: {run.log_path}; "
             f"follow it with: modeldeck jobs {args.model})")
        return 0
    import threading

    header_done = threading.Event()  # the job's first lines wait for the "started job N" line

    def show(line: str) -> None:
        header_done.wait(5)
        print(one_line(line, 2000), flush=True)

    run = retrain.start_retrain(settings, args.model, reason=args.reason, on_output=show)
    _out(f"started job {run.job_id}: retraining {args.model} (log: {run.log_path})")
    sys.stdout.flush()
    header_done.set()
    try:
        job = run.wait()
    except KeyboardInterrupt:
        try:
            run.cancel()
            print(f"{PROG}: interrupted: job {run.job_id} cancelled", file=sys.stderr)
        except ModeldeckError as e:  # it ended meanwhile
            print(f"{PROG}: interrupted: {e}", file=sys.stderr)
        run.wait(10)
        return 130
    if job is None:  # pragma: no cover - wait() without a timeout always returns the job
        raise RegistryError(f"job {run.job_id}: lost track of it")
    made = f"; produced version {job.produced_version}" if job.produced_version else ""
    if job.status == "succeeded":
        _out(f"job {job.id} succeeded{made}" + (f" ({job.message})" if job.message else ""))
        return 0
    print(f"{PROG}: job {job.id} {job.status}" + (f": {one_line(job.message)}" if job.message else "") + made,
          file=sys.stderr)
    return 1


def _cmd_cancel(args: argparse.Namespace) -> int:
    from modeldeck.core import retrain

    with _registry(args) as reg:
        job = retrain.cancel(args.job, registry=reg)
    _out(f"cancelled job {job.id} ({job.model})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
