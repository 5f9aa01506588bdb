"""THE rules: what a snapshot's numbers mean. Written once here and called by the poller (an
endpoint's status), the fleet screen (cell colours, header counts), the report (findings and
exit code) and the releases (the health gate, verification and the bake), so they never
disagree.

**One comparison.** A value *equal to* a threshold is over it: an error ratio of exactly 20 %
with ``error_ratio_crit = 0.20`` is critical, everywhere (:func:`reaches`).

**Levels**, worst last: ``OK`` (nothing to say), ``NOTICE`` (worth a colour in the fleet, not a
finding: a PSI over ``psi_warn``, a few drifted columns), ``WARNING``, ``CRITICAL``; and
``UNKNOWN`` (not polled yet). The report's finding severity is the level (a NOTICE is not a
finding); the fleet's colour is :data:`STYLE` of the level; the release health gate blocks
on a CRITICAL health verdict (down, error ratio or p95 over its critical threshold).

**Status** (:func:`status`): DOWN when the endpoint or its model does not answer ready;
DEGRADED when it answers but something is wrong (server not ready, a version other than the
registry's, error ratio or p95 at or over the warning threshold, metrics that cannot be read);
else UP. Drift and quality do not change the status: they are judged on their own.

**Quality** (:func:`quality_level`, :func:`quality_verdicts`): every live metric is judged
against the version's registered metric of the same name, in its direction
(:data:`QUALITY_HIGHER_IS_BETTER`). Higher is better (accuracy, precision, recall, F1, ROC AUC,
R²): at least ``quality_drop`` (absolute) below the registered value, the upper end of its 95 %
interval below the registered value too, is a WARNING. Lower is better (MAE, RMSE: errors in
the label's own units, so the drop is a share of the registered value): at least
``quality_drop`` x the registered value above it, the lower end of the interval above it too.
Twice the drop is CRITICAL. Fewer labelled rows than ``quality_min_rows`` is "not enough
labels", never a verdict.

**Drift** (:func:`summarize_drift`): only *judged* columns count (status ``ok``, ``drift`` or
``constant``; never ``low_sample``, ``error`` or ``skipped``). A column's PSI counts only when
it is judged and has at least :data:`PSI_MIN_ROWS` current values: over 10 bins a smaller
window of the reference's own distribution often leaves a bin empty (floored at 1e-4), and its
PSI then passes 0.25 by chance. The worst PSI is the largest PSI that counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modeldeck.core.snapshot import DEGRADED, DOWN, PENDING, UP, DriftSummary, EndpointSnapshot
from modeldeck.core.textfmt import finite, one_line, pct

if TYPE_CHECKING:
    from modeldeck.core.config import Thresholds

OK, NOTICE, WARNING, CRITICAL, UNKNOWN = "OK", "NOTICE", "WARNING", "CRITICAL", "UNKNOWN"
RANK = {OK: 0, NOTICE: 1, WARNING: 2, UNKNOWN: 3, CRITICAL: 4}
# The fleet's colours for each level (Rich styles).
STYLE = {OK: "", NOTICE: "yellow", WARNING: "bold yellow", CRITICAL: "bold red", UNKNOWN: "dim"}

JUDGED = ("ok", "drift", "constant")  # drift column statuses that count (modeldeck.core.drift.JUDGED)
PSI_MIN_ROWS = 200
REASON_LIMIT = 160


def reaches(value: Any, limit: float | None) -> bool:
    """The one comparison: ``value`` is a finite number at or over ``limit``."""
    v = finite(value)
    return v is not None and limit is not None and v >= limit


def worst(levels: Iterable[str], rank: Mapping[str, int] = RANK) -> str:
    """The worst of ``levels`` by ``rank`` (OK without any). The report ranks by exit code,
    where UNKNOWN (3) is above CRITICAL (2)."""
    out = OK
    for lv in levels:
        if rank[lv] > rank[out]:
            out = lv
    return out


@dataclass(frozen=True)
class Verdict:
    """One thing the rules say about an endpoint: what (``key``), how bad, in words (without
    the endpoint's name)."""

    key: str  # down | pending | version | not_ready | errors | p95 | degraded | drift | psi | missing | drift_error
    #           | quality | quality_error
    level: str
    text: str


# ---------------------------------------------------------------------------------------------
# health: error ratio, latency, versions


def error_level(ratio: float | None, th: Thresholds) -> str:
    if reaches(ratio, th.error_ratio_crit):
        return CRITICAL
    return WARNING if reaches(ratio, th.error_ratio_warn) else OK


def latency_level(p95_ms: float | None, th: Thresholds) -> str:
    if reaches(p95_ms, th.p95_ms_crit):
        return CRITICAL
    return WARNING if reaches(p95_ms, th.p95_ms_warn) else OK


def _over(value: float, limit: float) -> str:
    return "over" if value > limit else "reaches"


def error_text(ratio: float, th: Thresholds, level: str) -> str:
    limit = th.error_ratio_crit if level == CRITICAL else th.error_ratio_warn
    return f"error ratio {ratio * 100:.1f}% {_over(ratio, limit)} {limit * 100:.1f}%"


def latency_text(p95_ms: float, th: Thresholds, level: str) -> str:
    limit = th.p95_ms_crit if level == CRITICAL else th.p95_ms_warn
    return f"p95 latency {p95_ms:.0f} ms {_over(p95_ms, limit)} {limit:.0f} ms"


def version_mismatch(registry_version: str | None, served_versions: Sequence[str]) -> bool:
    """The endpoint serves versions, and the registry's version for its environment is not
    among them (a canary serving the old and the new version is not a mismatch)."""
    return registry_version is not None and bool(served_versions) and str(registry_version) not in served_versions


def served_version(registry_version: str | None, served_versions: Sequence[str]) -> str | None:
    """The version an endpoint is said to serve: the registry's when it is among those served,
    else the last one it lists, else None."""
    if not served_versions:
        return None
    return str(registry_version) if registry_version is not None and str(registry_version) in served_versions \
        else served_versions[-1]


def drift_version(snap: EndpointSnapshot) -> str | None:
    """Whose reference data an endpoint's live window is compared with: the version it serves,
    else (nothing known served, e.g. down) the registry's for its environment."""
    return snap.served_version or snap.registry_version


def status(*, down: str | None, environment: str, registry_version: str | None,
           served_versions: Sequence[str], error_ratio: float | None, p95_ms: float | None,
           th: Thresholds, not_ready: str | None = None, missing_version: str | None = None,
           metrics_error: str | None = None, notes: Sequence[str] = ()) -> tuple[str, str]:
    """An endpoint's status and the reason in words, from what one poll found: ``down`` (why
    it does not answer ready), ``not_ready`` (the server is live but not ready),
    ``missing_version`` (the server says it has no such version: a 404 on the version's ready
    route), ``metrics_error``, and ``notes`` added to an UP reason."""
    if down:
        return DOWN, one_line(down, REASON_LIMIT)
    problems: list[str] = []
    if not_ready:
        problems.append(not_ready)
    if version_mismatch(registry_version, served_versions):
        served = served_version(registry_version, served_versions)
        problems.append(f"serves version {one_line(served, 24)}, {one_line(environment, 24)} alias is "
                        f"{registry_version}")
    elif missing_version:
        problems.append(missing_version)
    er, p95 = finite(error_ratio), finite(p95_ms)
    if er is not None and error_level(er, th) != OK:
        problems.append(error_text(er, th, WARNING))
    if p95 is not None and latency_level(p95, th) != OK:
        problems.append(latency_text(p95, th, WARNING))
    if metrics_error:
        problems.append(metrics_error)
    if problems:
        return DEGRADED, one_line("; ".join(problems), REASON_LIMIT)
    return UP, one_line("; ".join(["ready", *notes]), REASON_LIMIT)


def health_verdicts(snap: EndpointSnapshot, th: Thresholds) -> list[Verdict]:
    """Down, not polled, error ratio and p95 levels: what the release health gate, the
    verification and the bake judge an endpoint by (with the drift and version verdicts,
    :func:`verdicts` is what the report says)."""
    if snap.status == DOWN:
        return [Verdict("down", CRITICAL, f"down: {one_line(snap.reason, 200)}")]
    if snap.status == PENDING:
        return [Verdict("pending", UNKNOWN, "not polled")]
    out = []
    er, p95 = finite(snap.error_ratio), finite(snap.latency_p95_ms)
    if er is not None and (lv := error_level(er, th)) != OK:
        out.append(Verdict("errors", lv, error_text(er, th, lv)))
    if p95 is not None and (lv := latency_level(p95, th)) != OK:
        out.append(Verdict("p95", lv, latency_text(p95, th, lv)))
    return out


def health_line(snap: EndpointSnapshot, th: Thresholds) -> str:
    """The values an endpoint was judged on, or which it lacks: ``up, errors 1.2% (critical at
    20.0%), p95 85 ms (critical at 2000 ms)``."""
    parts = [snap.status.lower()]
    er, p95 = finite(snap.error_ratio), finite(snap.latency_p95_ms)
    lacks = []
    if er is None:
        lacks.append("error ratio")
    else:
        parts.append(f"errors {pct(er)} (critical at {pct(th.error_ratio_crit)})")
    if p95 is None:
        lacks.append("p95 latency")
    else:
        parts.append(f"p95 {p95:.0f} ms (critical at {th.p95_ms_crit:.0f} ms)")
    if lacks:
        why = "no two metrics readings yet" if len(lacks) == 2 and snap.metrics_window is None else \
            "not in its metrics"
        parts.append(f"{' and '.join(lacks)} not known ({why})")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# drift


def counted_columns(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The columns of a drift result (``modeldeck.core.drift.result_to_json``) that count."""
    cols = result.get("columns") or []
    return [c for c in cols if isinstance(c, Mapping) and c.get("status") in JUDGED]


def psi_counts(column: Mapping[str, Any]) -> float | None:
    """The column's PSI when it counts (judged, at least PSI_MIN_ROWS current values)."""
    psi = finite(column.get("psi"))
    if psi is None or column.get("status") not in JUDGED or int(column.get("n_current") or 0) < PSI_MIN_ROWS:
        return None
    return psi


def summarize_drift(result: Mapping[str, Any], *, version: str | None, computed_at: float,
                    rows: int | None = None, keep_result: bool = True) -> DriftSummary:
    """A drift result as the snapshot's :class:`DriftSummary`: columns and drifted columns as
    the comparison judged them, the worst PSI among the columns whose PSI counts."""
    worst_psi, worst_col = None, None
    for c in counted_columns(result):
        psi = psi_counts(c)
        if psi is not None and (worst_psi is None or psi > worst_psi):
            worst_psi, worst_col = psi, str(c.get("column") or "")
    n_rows = result.get("n_current", rows)
    return DriftSummary(n_columns=int(result.get("n_columns") or 0), n_drifted=int(result.get("n_drifted") or 0),
                        dataset_drift=bool(result.get("dataset_drift", False)),
                        drift_share=finite(result.get("drift_share")) or 0.0, worst_psi=worst_psi,
                        worst_psi_column=worst_col, computed_at=computed_at,
                        result=dict(result) if keep_result else {}, version=version,
                        window_rows=int(n_rows) if isinstance(n_rows, int) else rows)


def prediction_drift_columns(result: Mapping[str, Any], psi_min: float) -> list[str]:
    """The output columns of a drift result that fail a bake: the comparison's test says drifted
    *and* the shift is large enough to matter (a counted PSI reaching ``psi_min``). The test
    alone rejects at 5 % per column, so a healthy version with two output columns would be rolled
    back about once in ten bakes by chance."""
    out = []
    for c in counted_columns(result):
        if c.get("drifted") and reaches(psi_counts(c), psi_min):
            out.append(str(c.get("column") or ""))
    return out


def drift_level(summary: DriftSummary | None, th: Thresholds) -> str:
    """WARNING: dataset drift, a PSI at or over ``psi_alert``, or no comparison (an error);
    NOTICE: some drifted columns or a PSI at or over ``psi_warn``; else OK (also while no
    column is judged yet)."""
    if summary is None:
        return OK
    if summary.error:
        return WARNING
    if summary.dataset_drift or reaches(summary.worst_psi, th.psi_alert):
        return WARNING
    if summary.n_drifted or reaches(summary.worst_psi, th.psi_warn):
        return NOTICE
    return OK


def drift_verdicts(result: Mapping[str, Any], th: Thresholds) -> list[Verdict]:
    """Dataset drift, PSI at or over ``psi_alert`` and jumps in missing values, judged on the
    columns that count."""
    out = []
    if result.get("dataset_drift"):
        share = finite(result.get("drift_share")) or 0.0
        drifted = [c.get("column") for c in result.get("columns") or [] if c.get("drifted")]
        out.append(Verdict("drift", WARNING, f"dataset drift: {result.get('n_drifted')} of {result.get('n_columns')} "
                           f"columns drifted ({share * 100:.0f}% >= {th.drift_share * 100:.0f}%): {_names(drifted)}"))
    high, jumps = [], []
    for c in counted_columns(result):
        psi = psi_counts(c)
        if psi is not None and reaches(psi, th.psi_alert):
            high.append((psi, str(c.get("column"))))
        a, b = finite(c.get("missing_share_reference")), finite(c.get("missing_share_current"))
        if a is not None and b is not None and b > a and reaches(b - a, th.missing_jump):
            jumps.append(f"{one_line(c.get('column'), 40)} ({pct(a)} -> {pct(b)})")
    if high:
        high.sort(reverse=True)
        cols = ", ".join(f"{one_line(n, 40)} ({p:.2f})" for p, n in high[:6])
        more = f" and {len(high) - 6} more" if len(high) > 6 else ""
        out.append(Verdict("psi", WARNING, f"PSI >= {th.psi_alert:g} in {cols}{more}"))
    if jumps:
        out.append(Verdict("missing", WARNING, f"missing values up by >= {th.missing_jump * 100:.0f} points in "
                           + ", ".join(jumps[:6]) + (f" and {len(jumps) - 6} more" if len(jumps) > 6 else "")))
    return out


def _names(names: Sequence[Any], limit: int = 6) -> str:
    shown = ", ".join(one_line(n, 40) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---------------------------------------------------------------------------------------------
# everything about one snapshot


def verdicts(snap: EndpointSnapshot, th: Thresholds, *, drift_result: Mapping[str, Any] | None = None,
             drift_error: str | None = None) -> list[Verdict]:
    """Everything the rules say about one endpoint, in this order (the report's findings):
    down or not polled, a version other than the registry's (CRITICAL), a server that is not
    ready, the error ratio and p95 levels, a DEGRADED status that no other verdict explains,
    then drift: from ``drift_result`` (or why there is none, ``drift_error``) when given, else
    from the snapshot's own :class:`DriftSummary`; then quality, from the snapshot's
    :class:`QualitySummary` (:func:`snapshot_quality_verdicts`)."""
    health = health_verdicts(snap, th)
    out = [v for v in health if v.key in ("down", "pending")]
    if version_mismatch(snap.registry_version, snap.served_versions):
        served = snap.served_versions
        what = (f"served version {one_line(served[0], 24)}" if len(served) == 1
                else "served versions " + ", ".join(one_line(v, 24) for v in served))
        out.append(Verdict("version", CRITICAL, f"{what} but {one_line(snap.environment, 40)} is "
                                                f"{snap.registry_version}"))
    if snap.status not in (DOWN, PENDING):
        if snap.ready is False:
            out.append(Verdict("not_ready", WARNING, "server not ready (/v2/health/ready)"))
        out += [v for v in health if v.key not in ("down", "pending")]
        if snap.status == DEGRADED and not out:
            out.append(Verdict("degraded", WARNING, f"degraded: {one_line(snap.reason, 200)}"))
    summary = snap.drift
    if drift_result is None and drift_error is None and summary is not None:
        drift_result, drift_error = (summary.result or None), summary.error
    if drift_result:
        out += drift_verdicts(drift_result, th)
    elif drift_error:
        out.append(Verdict("drift_error", WARNING, f"drift not checked: {one_line(drift_error, 300)}"))
    elif summary is not None and drift_level(summary, th) == WARNING:  # a stored summary: no columns kept
        text = (f"dataset drift: {summary.n_drifted} of {summary.n_columns} columns drifted" if summary.dataset_drift
                else f"PSI >= {th.psi_alert:g} in {one_line(summary.worst_psi_column, 40)} ({summary.worst_psi:.2f})")
        out.append(Verdict("drift", WARNING, text))
    out += snapshot_quality_verdicts(snap.quality)
    return out


def snapshot_quality_verdicts(summary: Any) -> list[Verdict]:
    """The quality verdicts of a snapshot's :class:`QualitySummary`: judged again from its
    document (metrics, the registered values and the drop it carries), so a stored snapshot
    is judged by today's rule."""
    if summary is None:
        return []
    doc = summary.result or {}
    if summary.error and not doc:
        return [Verdict("quality_error", WARNING, f"quality not measured: {one_line(summary.error, 300)}")]
    reg = doc.get("registered") or {}
    drop = finite(doc.get("quality_drop"))
    return quality_verdicts(doc, reg.get("metrics"), 0.05 if drop is None else drop,
                            str(reg.get("describe") or "its registered value"), reg.get("dataset_rows"))


def level(snap: EndpointSnapshot, th: Thresholds) -> str:
    """The worst level of an endpoint's verdicts."""
    return worst(v.level for v in verdicts(snap, th))


# -- approvals ------------------------------------------------------------------------------------


def approvals_needed(environment: str, approvals: int = 0, four_eyes: bool = False,
                     protected: Sequence[str] = ("production",)) -> int:
    """Distinct approvals a promotion to ``environment`` needs: the policy's ``approvals``, at
    least 1 for a protected environment (production) and with four eyes."""
    need = int(approvals or 0)
    if environment in protected or four_eyes:
        need = max(need, 1)
    return need


def approval_verdict(*, model: str, version: int, environment: str, action: str, approval: str,
                     approvers: Sequence[str], needed: int, four_eyes: bool, promoter: str) -> tuple[bool, str]:
    """THE approval rule, for the release gate and the registry's own check (the same words
    in both): a promotion needs ``needed`` distinct approvers since the last rejection, the
    promoter not counted with ``four_eyes``; a rollback only needs a target not rejected.
    Never forceable. Returns (passed, one line naming who approved and who is promoting)."""
    who = ", ".join(approvers)
    if action != "promote":
        if approval == "rejected":
            return False, (f"{model} version {version} was rejected; {environment} cannot be rolled back to it "
                           f"(approval cannot be forced): roll back to another version with --to N, or approve it again")
        return True, f"version {version} is {approval} (not rejected)"
    if approval == "rejected":
        return False, (f"{model} version {version} was rejected; only an approved version can be promoted "
                       f"to {environment}")
    counted = [a for a in approvers if not (four_eyes and a == promoter)]
    if len(counted) >= needed:
        if not approvers:
            return True, f"version {version} is {approval}; {environment} needs no approval"
        text = f"version {version} is approved by {who}"
        if needed > 1 or four_eyes:
            text += f" ({len(counted)} of {needed} needed" + (f"; {promoter} is promoting" if four_eyes else "") + ")"
        return True, text
    if not approvers:
        if needed == 1 and not four_eyes:
            return False, (f"{model} version {version} is {approval}, not approved; only an approved version can "
                           f"be promoted to {environment}")
        return False, (f"{environment} needs {needed} approval{'s' if needed != 1 else ''}"
                       f"{' by people other than the promoter' if four_eyes else ''}: {model} version {version} "
                       f"is {approval}, approved by no one; {promoter} is promoting")
    return False, (f"{environment} needs {needed} approval{'s' if needed != 1 else ''}"
                   f"{' by people other than the promoter' if four_eyes else ' by different people'}: "
                   f"{model} version {version} is approved by {who}; {promoter} is promoting")


# -- model quality --------------------------------------------------------------------------------

# The live metrics judged against the version's registered ones of the same name, and which way
# is better. MAE and RMSE are in the label's units: their drop is relative (QUALITY_RELATIVE).
QUALITY_JUDGED = {"classification": ("accuracy", "precision", "recall", "f1", "roc_auc"),
                  "regression": ("mae", "rmse", "r2")}
QUALITY_HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True,
                            "r2": True, "mae": False, "rmse": False}
QUALITY_RELATIVE = frozenset({"mae", "rmse"})


def quality_shortfall(metric: str, value: Any, registered: Any) -> float | None:
    """How much worse ``value`` is than ``registered``, in the unit ``quality_drop`` is given
    in: higher-is-better metrics ``registered - value``; MAE and RMSE ``(value - registered) /
    registered`` (a share; a registered error of 0 makes any error infinitely worse). Negative:
    better. None when a number is missing."""
    v, r = finite(value), finite(registered)
    if v is None or r is None:
        return None
    if QUALITY_HIGHER_IS_BETTER.get(metric, True):
        return r - v
    if metric in QUALITY_RELATIVE:
        if r <= 0:
            return 0.0 if v <= r else float("inf")
        return (v - r) / r
    return v - r


def quality_margin(metric: str, m: Mapping[str, Any], registered_rows: Any = None,
                   live_rows: Any = None) -> float | None:
    """The bound of the live metric's 95 % interval on its worse side (the upper end for a
    higher-is-better metric, the lower end for MAE and RMSE), widened for the registered
    value's own sampling noise when the rows it was measured on are known: the interval of
    the difference of two estimates, the registered one's spread scaled from the live one by
    sqrt(live rows / registered rows) (``live_rows``: the labelled rows measured, else the
    metric's own). None without an interval."""
    v = finite(m.get("value"))
    bound = finite(m.get("high") if QUALITY_HIGHER_IS_BETTER.get(metric, True) else m.get("low"))
    if v is None or bound is None:
        return None
    reg_rows = finite(registered_rows)
    rows = finite(live_rows if live_rows is not None else m.get("rows"))
    if reg_rows is not None and reg_rows > 0 and rows is not None and rows > 0:
        # both rest on the same share of their rows (precision: the predicted positives), so
        # the ratio is that of the whole windows: the labelled rows against the evaluation's
        bound = v + (bound - v) * (1.0 + rows / reg_rows) ** 0.5
    return bound


def quality_level(metric: str, m: Mapping[str, Any] | None, registered: Any, drop: float, *, min_rows: int = 0,
                  registered_rows: Any = None, live_rows: Any = None) -> str:
    """THE quality rule for one metric (``m``: its ``value``, ``low``, ``high`` and ``rows`` as
    the quality document holds them): WARNING when the live value is worse than the
    ``registered`` one by at least ``drop`` (:func:`quality_shortfall`: absolute for the
    higher-is-better metrics, a share of the registered value for MAE and RMSE) and its 95 %
    interval is wholly on the worse side too (:func:`quality_margin`: the upper end below the
    registered value, for MAE and RMSE the lower end above it; widened for the registered
    value's own noise when ``registered_rows`` is known; ``live_rows``: the labelled rows
    measured), so the drop is not chance. CRITICAL
    at twice the drop. OK when a number is missing, and when the metric rests on fewer than
    ``min_rows`` rows (precision on the predicted positives, recall on the actual ones: too
    few to judge, as a window with too few labels)."""
    m = m or {}
    r = finite(registered)
    short = quality_shortfall(metric, m.get("value"), r)
    if short is None or r is None:
        return OK
    rows = finite(m.get("rows"))
    if min_rows and (rows is None or rows < min_rows):
        return OK
    bound = quality_margin(metric, m, registered_rows, live_rows)
    if bound is None:
        return OK
    if not (bound < r if QUALITY_HIGHER_IS_BETTER.get(metric, True) else bound > r):
        return OK
    if reaches(short, 2 * drop - 1e-12):
        return CRITICAL
    return WARNING if reaches(short, drop - 1e-12) else OK


def _qnum(metric: str, v: float) -> str:
    return f"{v:.4g}" if metric in QUALITY_RELATIVE else f"{v:.3f}"


def quality_verdicts(doc: Mapping[str, Any] | None, registered: Mapping[str, float] | None, drop: float,
                     against: str = "its registered value", registered_rows: Any = None) -> list[Verdict]:
    """What the rules say about a quality result (``core.quality.QualityResult.to_json()``,
    as the report embeds it and snapshots store it): one verdict per judged metric that got
    worse against ``registered`` (:func:`quality_level`; ``registered_rows``: the rows its
    values were measured on, when known), or why quality was not measured. Fewer labelled rows
    than its ``min_rows`` is "not enough labels": never a verdict; so is a metric resting on
    fewer rows than that (precision, recall)."""
    if not doc:
        return []
    if doc.get("error"):
        return [Verdict("quality_error", WARNING, f"quality not measured: {one_line(doc.get('error'), 300)}")]
    if doc.get("status") != "measured" or not registered:
        return []
    out = []
    metrics = doc.get("metrics") or {}
    min_rows = int(finite(doc.get("min_rows")) or 0)
    for name in QUALITY_JUDGED.get(str(doc.get("problem_type")), ()):
        m = metrics.get(name) or {}
        r = finite(registered.get(name))
        v, lo, hi = finite(m.get("value")), finite(m.get("low")), finite(m.get("high"))
        if v is None or r is None:
            continue
        lv = quality_level(name, m, r, drop, min_rows=min_rows, registered_rows=registered_rows,
                           live_rows=doc.get("rows"))
        if lv == OK:
            continue
        limit = drop * (2 if lv == CRITICAL else 1)
        iv = f"95% {_qnum(name, lo) if lo is not None else '?'}-{_qnum(name, hi) if hi is not None else '?'}"
        head = f"{name} {_qnum(name, v)} ({iv}, {m.get('rows', doc.get('rows'))} rows) is "
        if QUALITY_HIGHER_IS_BETTER.get(name, True):
            text = f"{head}{r - v:.3f} below {r:.3f}, {one_line(against, 80)} (limit {limit:g})"
        else:
            short = quality_shortfall(name, v, r) or 0.0
            text = (f"{head}{_qnum(name, v - r)} above {_qnum(name, r)} (+{short * 100:.0f}%), "
                    f"{one_line(against, 80)} (limit +{limit * 100:g}%; lower is better)")
        out.append(Verdict("quality", lv, text))
    return out


def quality_level_of(doc: Mapping[str, Any] | None) -> str:
    """The level a quality document was judged at (its stored verdicts; OK without any)."""
    if not doc:
        return OK
    return worst(str(v.get("level")) for v in doc.get("verdicts") or () if v.get("level") in RANK)


# ---------------------------------------------------------------------------------------------
# the bake: the new version against the old one's baseline

SIGNIFICANCE = 0.01  # one-sided two-proportion test of the new error ratio against the baseline's


def error_ratio_increase_p(new_errors: float, new_requests: float, base_errors: float,
                           base_requests: float) -> float | None:
    """One-sided two-proportion z-test (pooled): the p-value of "the new error ratio is higher
    than the baseline's". None when either side has no requests."""
    if new_requests <= 0 or base_requests <= 0:
        return None
    from scipy.stats import norm

    p1, p0 = new_errors / new_requests, base_errors / base_requests
    pooled = (new_errors + base_errors) / (new_requests + base_requests)
    var = pooled * (1 - pooled) * (1 / new_requests + 1 / base_requests)
    if var <= 0:
        return 0.0 if p1 > p0 else 1.0
    return float(norm.sf((p1 - p0) / var ** 0.5))


@dataclass(frozen=True)
class BakeVerdict:
    state: str  # fail | pass | too_little (traffic to judge)
    text: str


def bake_verdict(*, requests: float, errors: float, p95_ms: float | None, baseline: Mapping[str, Any] | None,
                 th: Thresholds, margin: float, p95_ratio: float, min_requests: int) -> BakeVerdict:
    """THE bake rule for one endpoint. Fails when the new version's error ratio is over the
    critical threshold, or over the baseline's by more than ``margin`` and significantly so
    (:func:`error_ratio_increase_p` < SIGNIFICANCE); or its p95 is over the critical threshold
    or over ``p95_ratio`` times the baseline's. Under ``min_requests`` it is ``too_little``
    (unless already failing on a critical threshold with some traffic)."""
    b = baseline or {}
    ratio = errors / requests if requests > 0 else None
    enough = requests >= max(1, min_requests)
    if ratio is not None and enough and ratio >= th.error_ratio_crit:
        return BakeVerdict("fail", f"error ratio {ratio * 100:.1f}% over {requests:.0f} requests (critical at "
                                   f"{th.error_ratio_crit * 100:.1f}%)")
    b_req, b_err = float(b.get("requests") or 0.0), float(b.get("errors") or 0.0)
    if ratio is not None and enough and b_req > 0:
        b_ratio = b_err / b_req
        p = error_ratio_increase_p(errors, requests, b_err, b_req)
        if ratio - b_ratio > margin and p is not None and p < SIGNIFICANCE:
            return BakeVerdict("fail", f"error ratio {ratio * 100:.1f}% over {requests:.0f} requests against the "
                                       f"old version's {b_ratio * 100:.1f}% over {b_req:.0f} (margin "
                                       f"{margin * 100:.1f}%, p={p:.2g})")
    b_p95 = b.get("p95_ms")
    if p95_ms is not None and enough:
        if p95_ms >= th.p95_ms_crit:
            return BakeVerdict("fail", f"p95 latency {p95_ms:.0f} ms (critical at {th.p95_ms_crit:.0f} ms)")
        if b_p95 and p95_ms > p95_ratio * float(b_p95):
            return BakeVerdict("fail", f"p95 latency {p95_ms:.0f} ms, over {p95_ratio:g} x the old version's "
                                       f"{float(b_p95):.0f} ms")
    if not enough:
        return BakeVerdict("too_little", f"{requests:.0f} of the {min_requests} requests needed to judge it")
    er = "-" if ratio is None else f"{ratio * 100:.1f}%"
    vs = f" (old {b_err / b_req * 100:.1f}%)" if b_req > 0 else ""
    lat = "" if p95_ms is None else f", p95 {p95_ms:.0f} ms" + (f" (old {float(b_p95):.0f} ms)" if b_p95 else "")
    return BakeVerdict("pass", f"errors {er} over {requests:.0f} requests{vs}{lat}")
