"""Metrics on named data: the ``evaluate`` hook, and the data it evaluates on.

A version's metrics are only comparable with another's when both were measured on the same
data (its SHA-256 and row count: ``core.datafiles``). The evaluate hook measures a version on
data of modeldeck's choosing, so the release gates can compare like with like::

    [models.churn]
    evaluate = { command = ["python", "sample_data/pipeline/evaluate.py", "--model", "{model}",
                            "--artifact", "{artifact}", "--data", "{data}"] }

It is a command (argv, never a shell), templated like the other hooks (``core.hooks``:
``{model}`` ``{version}`` ``{artifact}`` ``{data}`` ``{rows}`` ``{sha256}`` ``{registry}``
``{config}`` ``{python}``), run in the config's folder with ``MODELDECK_MODEL``,
``MODELDECK_VERSION``, ``MODELDECK_ARTIFACT``, ``MODELDECK_DATA``, ``MODELDECK_DATA_SHA256``
and ``MODELDECK_REGISTRY`` set, within its ``timeout``; its last output line is one JSON
object of metrics (``{"auc": 0.91, "accuracy": 0.87}``). The result is recorded, audited, as
metrics of that version on that dataset (:meth:`Registry.record_evaluation`).

Data (:func:`resolve_data`): a file or folder; a glob (one file as it is, several combined into
one CSV); or ``recent``: the newest labelled rows (``eval_rows``) of the environment's
endpoints that have both ``capture`` and ``labels`` (joined as model quality joins them:
``labelled_window``), written to a CSV with the inputs and a ``label``
column. Combined data is written once per content to ``$XDG_CACHE_HOME/modeldeck/evaldata/``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modeldeck.core import datafiles, paths
from modeldeck.core.config import ModelConfig, Settings
from modeldeck.core.errors import InputError, ModeldeckError
from modeldeck.core.hooks import (
    config_file,
    exit_words,
    hook_cwd,
    hook_env,
    render_argv,
    start_command,
    stream_process,
    timed_out_words,
)
from modeldeck.core.registry import Evaluation, Registry, Version, current_actor, utcnow
from modeldeck.core.textfmt import finite, one_line

RECENT = "recent"
LABEL_COLUMN = "label"


class EvaluationError(ModeldeckError):
    """The evaluate hook is missing, failed, or printed no metrics (exit status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class DataRef:
    """Data a version is (or will be) evaluated on: a local file and its identity."""

    path: str  # what the hook reads as {data}
    sha256: str
    rows: int
    label: str  # what it was named by: a path, a glob, "recent"

    def describe(self) -> str:
        return datafiles.describe(self.sha256, self.rows)


def data_ref(path: str | os.PathLike[str], label: str | None = None) -> DataRef:
    p = Path(path).expanduser()
    sha, rows = datafiles.identity(p)
    return DataRef(str(p.resolve()), sha, rows, label or str(path))


def resolve_data(settings: Settings, model: str, spec: str, *, environment: str | None = None,
                 rows: int | None = None) -> DataRef:
    """The data ``spec`` names (see the module docstring). A relative path means the folder
    hooks run in (the config file's, else the working folder)."""
    spec = spec.strip()
    if not spec:
        raise InputError("empty evaluation data")
    if spec == RECENT:
        if environment is None:
            raise InputError("'recent' evaluation data needs an environment (--env)")
        return recent_data(settings, model, environment, rows or settings.model(model).eval_rows)
    if "://" in spec:
        raise InputError(f"{spec}: evaluation data must be a local file, folder or glob")
    base = Path(hook_cwd(settings))
    text = os.path.expanduser(spec)
    full = text if os.path.isabs(text) else str(base / text)
    from glob import has_magic

    if not has_magic(full):
        if not Path(full).exists():
            raise InputError(f"{spec}: no such file")
        return data_ref(full, spec)
    from modeldeck.core.capture import expand_source

    files = expand_source(full)
    if len(files) == 1:
        return data_ref(files[0], spec)
    from modeldeck.core.capture import read_table

    frame = read_table(full)
    return _materialize(frame.reset_index(drop=True), f"{model}-glob", spec)


def _materialize(frame: Any, stem: str, label: str) -> DataRef:
    """Write ``frame`` as CSV under the cache, named by its content; the same rows give the
    same file (and hash) every time."""
    folder = paths.cache_dir() / "evaldata"
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".eval.", suffix=".csv", dir=folder)
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        sha = datafiles.sha256_file(tmp)
        final = folder / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in stem)}-{sha[:16]}.csv"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return DataRef(str(final), sha, len(frame), label)


# -- recent: the newest labelled rows ------------------------------------------------------------


def recent_data(settings: Settings, model: str, environment: str, rows: int) -> DataRef:
    every = settings.endpoints_for(model, environment)
    eps = [e for e in every if e.capture and e.labels]
    if not eps:
        raise InputError(f"eval_data = 'recent' needs labelled traffic: no endpoint of {model} in {environment} "
                         f"has both capture and labels configured{_discovered_note(settings, model, environment)}")
    import pandas as pd

    frames = []
    for ep in eps:
        assert ep.capture is not None and ep.labels is not None
        frames.append(labelled_window(ep.capture, ep.labels, rows, label_id_column=ep.label_id_column,
                                      label_column=ep.label_column))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if "_time" in frame.columns:
        frame = frame.sort_values("_time", kind="stable").drop(columns=["_time"])
    frame = frame.tail(rows).reset_index(drop=True)
    if frame.empty:
        raise InputError(f"no captured request of {model} in {environment} has a label yet")
    return _materialize(frame, f"{model}-{environment}-recent", RECENT)


def _discovered_note(settings: Settings, model: str, environment: str) -> str:
    """What ``[[discover]]`` adds to "no endpoint has capture and labels": the endpoints it
    finds for ``model`` in ``environment`` (they carry neither), or that Prometheus could not
    be asked. Empty without blocks that could find them."""
    from modeldeck.core.promql import might_find

    if not any(might_find(b, model, environment) for b in settings.discover):
        return ""
    if not settings.discovery_resolved:
        from modeldeck.core.promql import resolve_discovered

        settings = resolve_discovered(settings, model, environment)
    found = [e for e in settings.endpoints_for(model, environment) if e.discovered]
    failed = [(b.name, why) for b in settings.discover if might_find(b, model, environment)
              for why in [settings.discover_errors.get(b.name)] if why]
    parts = []
    if found:
        parts.append(f"{len(found)} found by [[discover]] ({one_line(found[0].name, 60)}"
                     f"{', …' if len(found) > 1 else ''}), which carry no capture or labels: "
                     f"configure them as [[endpoints]] to evaluate on their traffic")
    if failed:
        parts.append(f"discover {failed[0][0]}: {one_line(failed[0][1], 160)}")
    return ("; " + "; ".join(parts)) if parts else ""


def labelled_window(capture: str, labels: str, rows: int, *, label_id_column: str | None = None,
                    label_column: str = LABEL_COLUMN) -> Any:
    """The newest ``rows`` captured input rows that have a label: the captures joined with the
    labels as quality joins and counts them (``core.quality.read_labelled``: SageMaker ground
    truth or a plain file with an id column; the newest label of an id wins). Inputs only (the
    model's outputs are left out), the label as ``label``, the inference time as ``_time``;
    the join's counts in ``attrs["counts"]``."""
    import pandas as pd

    from modeldeck.core import quality

    found, counts = quality.read_labelled(capture, labels, rows, label_id_column=label_id_column,
                                          label_column=label_column)
    if not len(found):
        out = pd.DataFrame()
        out.attrs["counts"] = counts.as_dict()
        return out
    frame = quality.input_columns(found)
    frame[LABEL_COLUMN] = found[quality.LABELLED].to_numpy()
    idx = found.index
    frame["_time"] = [str(t) if t is not None and t == t else "" for t in idx] if isinstance(
        idx, pd.DatetimeIndex) else ""
    frame = frame.reset_index(drop=True)
    frame.attrs["counts"] = counts.as_dict()
    return frame


# -- the evaluate hook ---------------------------------------------------------------------------


def hook_argv(mc: ModelConfig, version: Version, data: DataRef, settings: Settings) -> list[str]:
    if mc.evaluate is None or not mc.evaluate.command:
        raise no_hook(mc.name)
    return render_argv(mc.evaluate.command, _fields(version, data, settings))


def no_hook(model: str) -> EvaluationError:
    return EvaluationError(f"no evaluate hook for {model}: set [models.{model}] evaluate = {{ command = [...] }} in "
                           f"the config (argv printing a JSON object of metrics on its last line)")


def _fields(version: Version, data: DataRef, settings: Settings) -> dict[str, Any]:
    return {"model": version.model, "version": version.version, "artifact": version.artifact, "data": data.path,
            "rows": data.rows, "sha256": data.sha256, "registry": str(Path(settings.registry).resolve()),
            "config": config_file(settings), "python": sys.executable}


def evaluation_log_path(model: str, version: int) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return paths.state_dir() / "evaluations" / f"{paths.slug(model)}-v{int(version)}-{stamp}.log"


def run_hook(settings: Settings, version: Version, data: DataRef, *,
             on_output: Callable[[str], None] | None = None) -> tuple[dict[str, float], Path]:
    """Run the model's evaluate hook on ``data``; returns (metrics, log file). Raises
    EvaluationError with the reason in words (not found, exit status, timed out, no JSON)."""
    mc = settings.model(version.model)
    hook = mc.evaluate
    if hook is None or not hook.command:
        raise no_hook(version.model)
    argv = hook_argv(mc, version, data, settings)
    f = _fields(version, data, settings)
    env = hook_env({"MODELDECK_MODEL": version.model, "MODELDECK_VERSION": version.version,
                    "MODELDECK_ARTIFACT": version.artifact, "MODELDECK_DATA": data.path,
                    "MODELDECK_DATA_SHA256": data.sha256, "MODELDECK_REGISTRY": f["registry"],
                    "MODELDECK_CONFIG": f["config"] or None})
    log_path = evaluation_log_path(version.model, version.version)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        def out(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            if on_output is not None:
                on_output(line)

        out(f"# {utcnow()} evaluate {version.model} version {version.version} on {data.describe()} ({data.path})")
        out("$ " + shlex.join(argv))
        proc = start_command(argv, env, hook_cwd(settings))
        if isinstance(proc, str):
            raise EvaluationError(f"evaluate hook for {version.model}: {proc}")
        rc, last, timed_out = stream_process(proc, hook.timeout, out, grace=5.0)
    what = f"evaluate hook for {version.model} version {version.version}"
    if timed_out:
        raise EvaluationError(f"{what}: {timed_out_words(hook.timeout)} (log: {log_path})")
    if rc != 0:
        raise EvaluationError(f"{what}: {exit_words(rc)}" + (f": {one_line(last, 160)}" if last else "")
                              + f" (log: {log_path})")
    return parse_metrics(last, what), log_path


def parse_metrics(line: str, what: str = "evaluate hook") -> dict[str, float]:
    """The hook's last line: one JSON object of finite numbers."""
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not obj:
        raise EvaluationError(f"{what}: its last line is not a JSON object of metrics: {one_line(line, 120)!r}")
    out: dict[str, float] = {}
    for k, v in obj.items():
        f = finite(v)
        if f is None:
            raise EvaluationError(f"{what}: metric {one_line(k, 60)!r} is not a finite number ({one_line(v, 40)})")
        out[str(k)] = f
    return out


def evaluate(settings: Settings, registry: Registry, version: Version, data: DataRef, *, source: str = "evaluate",
             reason: str = "", actor: str | None = None,
             on_output: Callable[[str], None] | None = None) -> list[Evaluation]:
    """Run the evaluate hook and record its metrics as that version's on ``data`` (audited)."""
    metrics, log_path = run_hook(settings, version, data, on_output=on_output)
    return registry.record_evaluation(version.model, version.version, metrics, dataset_sha256=data.sha256,
                                      dataset_rows=data.rows, dataset_path=data.path, source=source,
                                      actor=actor or current_actor(),
                                      reason=reason or f"evaluated on {data.label} (log: {log_path})")


def still_there(ev: Evaluation) -> DataRef | None:
    """The file an evaluation was measured on, when it is still here with the same content."""
    if not ev.dataset_path or not ev.dataset_sha256:
        return None
    p = Path(ev.dataset_path)
    if not p.exists():
        return None
    try:
        sha = datafiles.sha256_file(p)
    except InputError:
        return None
    if sha != ev.dataset_sha256:
        return None
    rows = ev.dataset_rows if ev.dataset_rows is not None else datafiles.count_rows(p)
    return DataRef(str(p), sha, rows, str(p))


def by_dataset(evals: Iterable[Evaluation]) -> dict[str | None, Evaluation]:
    """The newest evaluation per dataset SHA-256 (None: registered without its data)."""
    out: dict[str | None, Evaluation] = {}
    for e in evals:
        out[e.dataset_sha256] = e  # oldest first in, so the newest stays
    return out


def metrics_on(evals: Iterable[Evaluation]) -> Mapping[str | None, dict[str, float]]:
    out: dict[str | None, dict[str, float]] = {}
    for e in evals:
        out.setdefault(e.dataset_sha256, {})[e.metric] = e.value
    return out
