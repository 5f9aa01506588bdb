"""The release registry: one SQLite file (sqlite-utils) holding models, versions with their
lineage, approvals, environment aliases with their full history, retraining jobs, stored
endpoint snapshots, and a hash-chained audit log.

Every mutation is one ``BEGIN IMMEDIATE`` transaction together with its audit row, so a
crash or a concurrent writer never leaves an alias moved without its history and audit
entries. Promote and rollback are compare-and-set on the alias.

Times are UTC ISO-8601 strings with microseconds (``2026-11-26T14:05:00.000000Z``): they
sort as text, so "what served production at 14:05 yesterday" is an indexed query.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeck.core import datafiles
from modeldeck.core.errors import ConflictError, GateError, ModeldeckError, NotFoundError, RegistryError
from modeldeck.core.textfmt import format_time, one_line, stored_time, utcnow, visible  # noqa: F401 - part of this module's API

if TYPE_CHECKING:  # sqlite-utils imports pandas when it is installed (~0.35 s): only migrations need it
    import sqlite_utils

SCHEMA_VERSION = 4
APPLICATION_ID = 0x4D444B31  # "MDK1" in the SQLite header: marks the file as ours
BUSY_TIMEOUT_MS = 15_000
GENESIS = "0" * 64
APPROVAL_STATES = ("pending", "approved", "rejected")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_TRIGGERS = ("manual", "drift", "quality", "schedule")
AUTOMATIC_TRIGGERS = ("drift", "quality")  # share one cool-down (create_job's not_since)
PROTECTED_ENVIRONMENTS = ("production",)
# rollouts: gating -> deploying -> verifying -> baking -> done, or rolled_back / failed / aborted;
# unverified: nothing could watch it to its end (its supervisor died with no bake time left, or a
# rollback whose endpoints did not come to the version) until an operator confirms it
ROLLOUT_ACTIVE = ("gating", "deploying", "verifying", "baking")
ROLLOUT_ENDED = ("done", "rolled_back", "failed", "aborted", "unverified")
ROLLOUT_STATES = ROLLOUT_ACTIVE + ROLLOUT_ENDED
_ROLLOUT_NEXT = {
    "gating": {"deploying", "failed"},
    "deploying": {"verifying", "baking", "done", "rolled_back", "failed", "aborted", "unverified"},
    "verifying": {"baking", "done", "rolled_back", "failed", "aborted", "unverified"},
    "baking": {"verifying", "done", "rolled_back", "failed", "aborted", "unverified"},
    "unverified": {"done"},  # an operator confirmed it
}
MAX_ROLLOUT_STEPS = 5000  # per rollout; a chatty deploy hook's further lines stay in its log file


# ---------------------------------------------------------------------------------------------
# small helpers


_RELATIVE = re.compile(r"^(?:-\s*(?P<a>\d+(?:\.\d+)?)\s*(?P<u>[smhd])|(?P<b>\d+(?:\.\d+)?)\s*"
                       r"(?P<v>s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)\s+ago)$", re.I)


def parse_time(text: str) -> datetime:
    """Parse a user-given or stored time: ISO-8601 (``Z`` or offset; naive means local),
    or relative: ``-90m``, ``-2h``, ``2 hours ago``, ``1d ago``."""
    s = text.strip()
    m = _RELATIVE.match(s)
    if m:
        amount = float(m.group("a") or m.group("b"))
        unit = (m.group("u") or m.group("v"))[0].lower()
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        return datetime.now(timezone.utc) - timedelta(seconds=seconds)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise RegistryError(f"cannot read time {text!r}: use ISO-8601 like 2026-11-25T14:05 "
                            f"or a relative time like '2h ago'") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.astimezone(timezone.utc)


def current_actor() -> str:
    """``MODELDECK_ACTOR``, else the login user plus the SSH client address when present."""
    actor = os.environ.get("MODELDECK_ACTOR", "").strip()
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (containers, cron)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    ssh = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION") or ""
    addr = ssh.split()[0] if ssh.split() else ""
    return f"{user}@{addr}" if addr else user


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, in order)."""
    p = Path(path)
    h = hashlib.sha256()
    try:
        datafiles.check_regular(p)
    except ModeldeckError as e:
        raise RegistryError(str(e)) from None
    try:
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode() + b"\0")
                _hash_into(h, f)
        else:
            _hash_into(h, p)
    except FileNotFoundError:
        raise RegistryError(f"{p}: no such file") from None
    except OSError as e:
        raise RegistryError(f"{p}: cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def _hash_into(h: Any, f: Path) -> None:
    with open(f, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _dumps_fast(value: Any) -> str:
    """As :func:`_dumps`, 5x faster, for rows no hash covers (snapshots: a report stores 5,000):
    the same values when read back (orjson writes non-ASCII as UTF-8; to_dict has no NaN)."""
    import orjson  # not at the top: this module needs only the standard library to import

    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return default


def _loads_fast(text: str | None, default: Any = None) -> Any:
    """As :func:`_loads`, 4x faster, for snapshot rows (the TUI reads 100,000 at start for a
    large fleet): orjson, which reads an integer past 64 bits as a float (no snapshot field
    holds one) and refuses the NaN an old row may hold (then json.loads)."""
    if text is None or text == "":
        return default
    import orjson

    try:
        return orjson.loads(text)
    except (ValueError, TypeError):
        return _loads(text, default)


def entry_hash(prev: str, entry_id: int, at: str, actor: str, action: str, subject: str,
               before: str, after: str, reason: str) -> str:
    """The audit chain: SHA-256 over the previous hash and this row's fields as stored."""
    payload = "\x1f".join((prev, str(entry_id), at, actor, action, subject, before, after, reason))
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Model:
    name: str
    created_at: str
    created_by: str
    description: str = ""
    latest_version: int | None = None
    n_versions: int = 0
    aliases: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Version:
    model: str
    version: int
    artifact: str
    created_at: str
    created_by: str
    dataset_path: str | None = None
    dataset_sha256: str | None = None
    reference_path: str | None = None
    code_version: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    approval: str = "pending"
    approval_reason: str | None = None
    approval_by: str | None = None
    approval_at: str | None = None
    job_id: int | None = None  # the retraining job that produced it
    run_id: str | None = None  # the MLflow run it came from ([mlflow])
    datasets: tuple[Mapping[str, str], ...] = ()  # MLflow dataset inputs: name, digest, context, source

    def as_dict(self) -> dict[str, Any]:
        out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.__dict__.items()}
        out["datasets"] = [dict(d) for d in self.datasets]
        return out


@dataclass(frozen=True)
class Evaluation:
    """One metric of one version measured on one dataset (SHA-256 and rows; both None when the
    metrics were registered without their evaluation data)."""

    model: str
    version: int
    metric: str
    value: float
    dataset_sha256: str | None
    dataset_rows: int | None
    dataset_path: str | None
    source: str  # register | evaluate | gate
    at: str
    actor: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PolicyRecord:
    """One version of a model's release policy as stored: ``rules`` holds only the keys given."""

    model: str
    version: int
    rules: Mapping[str, Any]
    text: str  # the policy file as given ("" when imported from a config)
    at: str
    actor: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "rules": dict(self.rules), "text": self.text,
                "at": self.at, "actor": self.actor, "reason": self.reason}


@dataclass(frozen=True)
class AliasChange:
    id: int
    model: str
    environment: str
    from_version: int | None
    to_version: int | None  # None: the alias was removed (unset)
    action: str  # promote | rollback | unset
    actor: str
    at: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    subject: str
    before: Any
    after: Any
    reason: str
    hash: str
    row: Mapping[str, Any] | None = None  # the versions / alias_history row it wrote: table, key, SHA-256

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Job:
    id: int
    model: str
    trigger: str
    actor: str
    reason: str
    status: str
    runner: str
    created_at: str
    started_at: str | None
    ended_at: str | None
    exit_code: int | None
    log_path: str | None
    produced_version: int | None
    external_id: str | None
    pid: int | None
    message: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Rollout:
    """One promote or rollback as a record: what moves where, who and why, its state, the
    supervisor process driving it (pid, heartbeat), and when the bake ends."""

    id: int
    model: str
    environment: str
    action: str  # promote | rollback
    from_version: int | None
    to_version: int
    state: str
    actor: str
    reason: str
    started_at: str
    updated_at: str
    ended_at: str | None
    pid: int | None
    heartbeat_at: str | None
    message: str
    change_id: int | None  # the alias_history row of the move
    forced: bool
    verify: bool  # False: --no-verify (no verification, no bake)
    bake_seconds: float
    bake_started_at: str | None
    bake_ends_at: str | None
    verified_at: str | None
    config_path: str | None  # the config the release was made with (resuming a watch reads it)
    abort_reason: str | None
    abort_by: str | None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ROLLOUT_ACTIVE

    @property
    def critical(self) -> bool:
        """A state an operator must look at: unverified, or failed after the alias moved."""
        return self.state == "unverified" or (self.state == "failed" and self.change_id is not None)

    def as_dict(self) -> dict[str, Any]:
        d = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.__dict__.items()}
        d["critical"] = self.critical
        return d


@dataclass(frozen=True)
class RolloutStep:
    id: int
    rollout_id: int
    at: str
    stage: str
    level: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad: int | None = None
    problem: str = ""
    head: str = GENESIS
    rows_checked: int = 0  # versions and alias-history rows whose content matched their audit entry
    rows_uncovered: int = 0  # rows no audit entry carries a hash of (older modeldeck, MLflow mirrors)
    checkpoints: int = 0  # signed checkpoints whose prefix was proven unchanged

    def describe(self) -> str:
        if self.ok:
            text = (f"audit chain intact: {self.checked} entries, head {self.head[:16]}; {self.rows_checked} "
                    f"version and alias-history rows match their entries")
            if self.rows_uncovered:
                text += (f" ({self.rows_uncovered} rows carry no hash: written by an older modeldeck or mirrored "
                         f"from MLflow, not covered)")
            if self.checkpoints:
                text += f"; {self.checkpoints} signed checkpoints hold"
            return text
        if self.first_bad is None:
            return f"audit chain BROKEN: {self.problem}"
        return f"audit chain BROKEN at entry {self.first_bad}: {self.problem}"


# ---------------------------------------------------------------------------------------------
# schema and migrations


def _migrate_1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["models"].create({"name": str, "created_at": str, "created_by": str, "description": str},
                        pk="name", not_null=["created_at", "created_by"])
    db["versions"].create({
        "model": str, "version": int, "artifact": str, "created_at": str, "created_by": str,
        "dataset_path": str, "dataset_sha256": str, "reference_path": str, "code_version": str,
        "params": str, "metrics": str, "tags": str, "approval": str, "approval_reason": str,
        "approval_by": str, "approval_at": str, "job_id": int,
    }, pk=("model", "version"), foreign_keys=[("model", "models", "name")],
        not_null=["artifact", "created_at", "created_by", "approval"])
    db["aliases"].create({"model": str, "environment": str, "version": int, "updated_at": str,
                          "updated_by": str, "history_id": int},
                         pk=("model", "environment"), foreign_keys=[("model", "models", "name")])
    db["alias_history"].create({"id": int, "model": str, "environment": str, "from_version": int,
                                "to_version": int, "action": str, "actor": str, "at": str,
                                "reason": str}, pk="id", not_null=["action", "at"])
    db["alias_history"].create_index(["model", "environment", "at"])
    db["audit"].create({"id": int, "at": str, "actor": str, "action": str, "subject": str,
                        "before": str, "after": str, "reason": str, "prev_hash": str, "hash": str},
                       pk="id")
    db["audit"].create_index(["subject", "id"])
    db["jobs"].create({"id": int, "model": str, "trigger": str, "actor": str, "reason": str,
                       "status": str, "runner": str, "created_at": str, "started_at": str,
                       "ended_at": str, "exit_code": int, "log_path": str, "produced_version": int,
                       "external_id": str, "pid": int, "message": str}, pk="id")
    db["jobs"].create_index(["model", "id"])
    db["jobs"].create_index(["status"])
    db["snapshots"].create({"id": int, "endpoint": str, "taken_at": str, "source": str, "data": str},
                           pk="id")
    db["snapshots"].create_index(["endpoint", "taken_at"])
    db["snapshots"].create_index(["taken_at"])


def _migrate_2(db: sqlite_utils.Database) -> None:
    """Release rules: metrics with the data they were measured on (``evaluations``), the
    versioned release policy per model (``policies``), and every approval decision
    (``approvals``: N distinct approvers, four eyes). Existing metrics become evaluations on
    unknown data; existing approvals become one decision each."""
    db["evaluations"].create({"id": int, "model": str, "version": int, "metric": str, "value": float,
                              "dataset_sha256": str, "dataset_rows": int, "dataset_path": str,
                              "source": str, "at": str, "actor": str}, pk="id",
                             not_null=["model", "version", "metric", "value", "source", "at"])
    db["evaluations"].create_index(["model", "version", "metric"])
    db["evaluations"].create_index(["model", "metric", "dataset_sha256"])
    # one value per version, metric and dataset (a re-evaluation replaces it; the audit log keeps both)
    db.conn.execute("CREATE UNIQUE INDEX evaluations_one_per_dataset ON evaluations"
                    "(model, version, metric, dataset_sha256) WHERE dataset_sha256 IS NOT NULL")
    db["policies"].create({"model": str, "version": int, "rules": str, "text": str, "at": str, "actor": str,
                           "reason": str}, pk=("model", "version"), not_null=["rules", "at"])
    db["approvals"].create({"id": int, "model": str, "version": int, "decision": str, "actor": str, "at": str,
                            "reason": str}, pk="id", not_null=["model", "version", "decision", "actor", "at"])
    db["approvals"].create_index(["model", "version", "id"])
    c = db.conn
    for model, version, metrics, at, actor in c.execute(
            "SELECT model, version, metrics, created_at, created_by FROM versions").fetchall():
        for k, v in (_loads(metrics, {}) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                c.execute("INSERT INTO evaluations(model, version, metric, value, source, at, actor) "
                          "VALUES (?,?,?,?,?,?,?)", (model, version, str(k), float(v), "register", at, actor))
    c.execute("INSERT INTO approvals(model, version, decision, actor, at, reason) SELECT model, version, "
              "CASE approval WHEN 'approved' THEN 'approve' ELSE 'reject' END, coalesce(approval_by, 'unknown'), "
              "coalesce(approval_at, created_at), coalesce(approval_reason, '') FROM versions "
              "WHERE approval IN ('approved', 'rejected') ORDER BY coalesce(approval_at, created_at)")


def _migrate_3(db: sqlite_utils.Database) -> None:
    """MLflow as the registry of record ([mlflow]): a version's run and its dataset inputs
    (the ledger's copy of MLflow's lineage)."""
    db.conn.execute("ALTER TABLE versions ADD COLUMN run_id TEXT")
    db.conn.execute("ALTER TABLE versions ADD COLUMN datasets TEXT")


def _migrate_4(db: sqlite_utils.Database) -> None:
    """Rollouts: every promote and rollback as a record driven by a supervisor process, with
    its step log."""
    db["rollouts"].create({
        "id": int, "model": str, "environment": str, "action": str, "from_version": int, "to_version": int,
        "state": str, "actor": str, "reason": str, "started_at": str, "updated_at": str, "ended_at": str,
        "pid": int, "heartbeat_at": str, "message": str, "change_id": int, "forced": int, "verify": int,
        "bake_seconds": float, "bake_started_at": str, "bake_ends_at": str, "verified_at": str,
        "config_path": str, "abort_reason": str, "abort_by": str, "details": str,
    }, pk="id", not_null=["model", "environment", "action", "to_version", "state", "started_at"])
    db["rollouts"].create_index(["model", "environment", "id"])
    db["rollouts"].create_index(["state"])
    db["rollout_steps"].create({"id": int, "rollout_id": int, "at": str, "stage": str, "level": str,
                                "message": str}, pk="id", not_null=["rollout_id", "at"])
    db["rollout_steps"].create_index(["rollout_id", "id"])


# Each entry brings a database from version i to i + 1 (index 0: empty -> 1).
MIGRATIONS = [_migrate_1, _migrate_2, _migrate_3, _migrate_4]
assert len(MIGRATIONS) == SCHEMA_VERSION


# ---------------------------------------------------------------------------------------------
# the registry


def open_registry(settings: Any, *, create: bool = True, readonly: bool = False) -> Registry:
    """The registry a config describes: the ledger alone, or with ``[mlflow]`` MLflow's Model
    Registry of record with the ledger on top (``core.mlflow.MlflowRegistry``: the same
    methods). Every caller that has settings opens the registry through this."""
    ml = getattr(settings, "mlflow", None)
    if ml is None:
        return Registry(settings.registry, create=create, readonly=readonly)
    from modeldeck.core.mlflow import MlflowRegistry

    # MLflow holds the models: the ledger is made on first use whatever ``create`` says
    return MlflowRegistry(settings.registry, ml, create=create or not readonly, readonly=readonly)


class Registry:
    """A connection to one registry file. Cheap to open; safe to use from one thread at a
    time (open one per thread or process). Use as a context manager or call close()."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.conn = _open(self.path, create=create, readonly=readonly)
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def _prepare(self) -> None:
        name = self.path
        try:
            app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise RegistryError(f"{name}: not a modeldeck registry ({_sqlite_reason(e)})") from None
        version = 0
        if tables:
            if app_id != APPLICATION_ID or "meta" not in tables:
                raise RegistryError(f"{name}: an SQLite database, but not a modeldeck registry; "
                                    f"nothing was changed")
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RegistryError(f"{name}: written by a newer modeldeck (schema {version}, this one "
                                f"understands up to {SCHEMA_VERSION}); upgrade modeldeck; the file "
                                f"was not changed")
        if self.readonly:
            if version < SCHEMA_VERSION:
                raise RegistryError(f"{name}: needs a schema upgrade ({version} -> {SCHEMA_VERSION}); "
                                    f"open it once without read-only")
            return
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as e:
            raise RegistryError(f"{name}: cannot use the registry: {_sqlite_reason(e)}") from None
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        with self._write():
            # Re-read under the write lock: another process may have migrated meanwhile.
            import sqlite_utils

            db = sqlite_utils.Database(self.conn)
            row = None
            if db["meta"].exists():
                row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = int(row[0]) if row else 0
            for step in range(current, SCHEMA_VERSION):
                MIGRATIONS[step](db)
            if current < SCHEMA_VERSION:
                self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                                  (str(SCHEMA_VERSION),))
                if current == 0:
                    self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('audit_head', ?)",
                                      (_dumps({"id": 0, "hash": GENESIS}),))

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so a writer
        waits (busy timeout) instead of failing on a read-to-write upgrade."""
        if self.readonly:
            raise RegistryError(f"{self.path}: opened read-only")
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    if time.monotonic() < deadline:
                        time.sleep(0.01)
                        continue
                    raise RegistryError(f"{self.path}: the registry stayed locked by another writer "
                                        f"for {BUSY_TIMEOUT_MS // 1000} s; try again") from None
                raise RegistryError(f"{self.path}: {_sqlite_reason(e)}") from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise RegistryError(f"{self.path}: could not commit: {_sqlite_reason(e)}") from None

    def _read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            raise RegistryError(f"{self.path}: {_sqlite_reason(e)}") from None

    # -- audit ----------------------------------------------------------------------------------
    def _audit(self, action: str, subject: str, before: Any, after: Any, reason: str, actor: str,
               at: str) -> int:
        """Append one chained audit row. Called inside a write transaction."""
        head = self._head()
        prev = head["hash"]
        entry_id = head["id"] + 1
        b, a = _dumps(before), _dumps(after)
        h = entry_hash(prev, entry_id, at, actor, action, subject, b, a, reason)
        self.conn.execute(
            "INSERT INTO audit(id, at, actor, action, subject, before, after, reason, prev_hash, hash) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)", (entry_id, at, actor, action, subject, b, a, reason, prev, h))
        self.conn.execute("UPDATE meta SET value=? WHERE key='audit_head'",
                          (_dumps({"id": entry_id, "hash": h}),))
        return entry_id

    def audit(self, *, subject: str | None = None, action: str | None = None, actor: str | None = None,
              limit: int | None = None, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first. ``subject`` matches a model name or ``model:...`` subjects."""
        where, params = [], []
        if subject:
            where.append("(subject = ? OR subject LIKE ? ESCAPE '\\')")
            params += [subject, _like_prefix(subject) + "%"]
        if action:
            where.append("action LIKE ? ESCAPE '\\'")
            params.append(_like_prefix(action) + "%")
        if actor:
            where.append("actor = ?")
            params.append(actor)
        if before_id:
            where.append("id < ?")
            params.append(before_id)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [AuditEntry(id=r["id"], at=r["at"], actor=r["actor"], action=r["action"],
                           subject=r["subject"], before=_loads(r["before"]), after=_without_row(r["after"]),
                           reason=r["reason"], hash=r["hash"], row=_row_of(r["after"]))
                for r in self._read(sql, params)]

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every SELECT inside sees the same committed state (WAL keeps
        that snapshot however many writers commit meanwhile)."""
        try:
            self.conn.execute("BEGIN")
        except sqlite3.OperationalError as e:
            raise RegistryError(f"{self.path}: {_sqlite_reason(e)}") from None
        try:
            yield self.conn
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    def verify_audit(self, checkpoints: Sequence[Any] = ()) -> VerifyResult:
        """Walk the chain from the first entry: ids contiguous from 1, each prev_hash the
        previous entry's hash, each hash recomputed from the stored fields, and the last one
        the head recorded in meta (so deleting the newest rows shows too; a missing, null or
        unreadable head is a broken chain). Then the rows the chain vouches for: every
        ``versions`` and ``alias_history`` row an entry carries the SHA-256 of must still hash
        to it (the newest entry of a version wins), every alias-history row after the first
        hashed one must have its entry, and every alias must point where its history says.
        ``checkpoints`` (``core.checkpoints.Checkpoint``, signatures already checked) must each
        name this registry and an entry whose hash is the signed head: a prefix that was
        rewritten (even with every hash recomputed) or cut is a break. Everything is read in
        one snapshot, so writers committing meanwhile never look like a break."""
        with self._snapshot() as c:
            return self._verify(c, checkpoints)

    def _verify(self, c: sqlite3.Connection, checkpoints: Sequence[Any]) -> VerifyResult:
        wanted = {int(cp.entries) for cp in checkpoints}
        at_id: dict[int, str] = {0: GENESIS}
        rows: dict[tuple[str, Any], tuple[int, str]] = {}
        legacy: list[bool] = []
        chain = self._verify_chain(c, wanted, at_id, rows, legacy)
        if not chain.ok:
            return chain
        checked, head = chain.checked, chain.head

        def broken(first: int | None, problem: str) -> VerifyResult:
            return VerifyResult(False, checked, first, problem, head)

        # the rows the chain vouches for
        n_ok = uncovered = 0
        seen: set[tuple[str, Any]] = set()
        for r in c.execute(f"SELECT {', '.join(_ROW_COLUMNS['versions'])} FROM versions"):
            key = ("versions", (r[0], r[1]))
            got = rows.get(key)
            if got is None:
                uncovered += 1
                continue
            seen.add(key)
            if _row_hash("versions", tuple(r)) != got[1]:
                return broken(got[0], f"version {r[1]} of {one_line(r[0], 60)} differs from what audit entry {got[0]} "
                                      f"recorded (its row was edited outside modeldeck)")
            n_ok += 1
        first_hashed = min((k[1] for k in rows if k[0] == "alias_history"), default=None)
        for r in c.execute(f"SELECT {', '.join(_ROW_COLUMNS['alias_history'])} FROM alias_history ORDER BY id"):
            key = ("alias_history", r[0])
            got = rows.get(key)
            if got is None:
                if legacy and (first_hashed is None or r[0] < first_hashed):
                    uncovered += 1  # written by a modeldeck that did not hash rows yet
                    continue
                return broken(None, f"alias history row {r[0]} ({one_line(r[1], 60)} {one_line(r[2], 40)}: "
                                    f"{r[5]} to version {r[4]} by {one_line(r[6], 40)}) has no audit entry "
                                    f"(written outside modeldeck)")
            seen.add(key)
            if _row_hash("alias_history", tuple(r)) != got[1]:
                return broken(got[0], f"alias history row {r[0]} ({one_line(r[1], 60)} {one_line(r[2], 40)}) "
                                      f"differs from what audit entry {got[0]} recorded (edited outside modeldeck)")
            n_ok += 1
        for key, (entry, _) in rows.items():
            if key not in seen:
                what = (f"version {key[1][1]} of {one_line(key[1][0], 60)}" if key[0] == "versions"
                        else f"alias history row {key[1]}")
                return broken(entry, f"{what}, written by audit entry {entry}, is gone (deleted outside modeldeck)")
        latest = {(m, e): (i, v) for i, m, e, v in c.execute(
            "SELECT id, model, environment, to_version FROM alias_history WHERE id IN "
            "(SELECT max(id) FROM alias_history GROUP BY model, environment)")}
        for m, e, v, hid in c.execute("SELECT model, environment, version, history_id FROM aliases"):
            want = latest.get((m, e))
            if want is None or want[1] != v or (hid is not None and hid != want[0]):
                says = "no version" if want is None or want[1] is None else f"version {want[1]}"
                return broken(None, f"the {one_line(e, 40)} alias of {one_line(m, 60)} points at version {v} but "
                                    f"its history says {says} (the alias was changed outside modeldeck)")
        # signed checkpoints: each vouches for the prefix it signed
        registry_id = self._meta(c, "registry_id")
        n_cp = 0
        for cp in checkpoints:
            where = f"the checkpoint on line {cp.line}" if getattr(cp, "line", 0) else "a checkpoint"
            if cp.registry != registry_id:
                return broken(None, f"{where} is of another registry ({cp.registry[:16] or 'none'}; this one is "
                                    f"{(registry_id or 'not checkpointed yet')[:16]})")
            if cp.entries > checked:
                return broken(checked + 1, f"{where} ({cp.describe()}) vouches for {cp.entries} entries but the log "
                                           f"has {checked} (history was cut)")
            if at_id.get(cp.entries) != cp.head:
                return broken(cp.entries, f"entry {cp.entries} is not the one {where} signed ({cp.describe()}): "
                                          f"history up to it was rewritten")
            n_cp += 1
        return VerifyResult(True, checked, None, "", head, rows_checked=n_ok, rows_uncovered=uncovered,
                            checkpoints=n_cp)

    def _verify_chain(self, c: sqlite3.Connection, wanted: set[int] | None = None, at_id: dict[int, str] | None = None,
                      rows: dict[tuple[str, Any], tuple[int, str]] | None = None,
                      legacy: list[bool] | None = None) -> VerifyResult:
        head_row = c.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()
        cur = c.execute(
            "SELECT id, at, actor, action, subject, before, after, reason, prev_hash, hash "
            "FROM audit ORDER BY id")
        prev = GENESIS
        expected_id = 1
        checked = 0
        sha = hashlib.sha256
        wanted = wanted or set()
        while batch := cur.fetchmany(10_000):
            for (i, at, actor, action, subject, before, after, reason, prev_hash, h) in batch:
                if i != expected_id:
                    return VerifyResult(False, checked, expected_id,
                                        f"entry {expected_id} is missing (next present is {i})", prev)
                if prev_hash != prev:
                    return VerifyResult(False, checked, i, "its link to the previous entry does not match "
                                        "(an earlier entry was edited or removed)", prev)
                payload = "\x1f".join((prev, str(i), at or "", actor or "", action or "", subject or "",
                                       before or "", after or "", reason or ""))
                if sha(payload.encode("utf-8", "surrogatepass")).hexdigest() != h:
                    return VerifyResult(False, checked, i, "its contents do not match its hash "
                                        "(the entry was edited)", prev)
                if rows is not None and action in _ROW_ACTIONS:
                    ref = _row_of(after) if after and '"_row"' in after else None
                    if ref is not None:
                        rows[(ref["table"], ref["key"])] = (i, ref["sha256"])
                    elif legacy is not None and not legacy:
                        legacy.append(True)  # written before rows were hashed
                prev = h
                expected_id += 1
                checked += 1
                if i in wanted and at_id is not None:
                    at_id[i] = h
        head, why = _parse_head(head_row[0] if head_row else None, missing=head_row is None)
        if head is None:
            return VerifyResult(False, checked, checked + 1, f"{why} (entries may have been removed)", prev)
        if head["id"] != checked:
            return VerifyResult(False, checked, checked + 1,
                                f"the log ends at entry {checked} but entry {head['id']} was written "
                                f"(newest entries were removed)", prev)
        if head["hash"] != prev:
            return VerifyResult(False, checked, checked, "the newest entry differs from the one written",
                                prev)
        return VerifyResult(True, checked, None, "", prev)

    @staticmethod
    def _meta(c: sqlite3.Connection, key: str) -> str | None:
        row = c.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def registry_id(self, *, create: bool = True) -> str | None:
        """This registry's random id (what signed checkpoints name), made on first use."""
        found = self._meta(self.conn, "registry_id")
        if found or not create or self.readonly:
            return found
        import uuid

        with self._write() as c:
            found = self._meta(c, "registry_id")
            if not found:
                found = uuid.uuid4().hex
                c.execute("INSERT INTO meta(key, value) VALUES ('registry_id', ?)", (found,))
        return found

    def _row_ref(self, table: str, key: Any) -> dict[str, Any]:
        """What an audit entry carries of the row it wrote (inside the write transaction)."""
        cols = _ROW_COLUMNS[table]
        if table == "versions":
            r = self.conn.execute(f"SELECT {', '.join(cols)} FROM versions WHERE model=? AND version=?",
                                  (key[0], int(key[1]))).fetchone()
            key = [key[0], int(key[1])]
        else:
            r = self.conn.execute(f"SELECT {', '.join(cols)} FROM alias_history WHERE id=?", (int(key),)).fetchone()
            key = int(key)
        return {"table": table, "key": key, "sha256": _row_hash(table, tuple(r))}

    # -- models and versions ----------------------------------------------------------------------
    def models(self) -> list[Model]:
        rows = self._read(
            "SELECT m.name, m.created_at, m.created_by, m.description, "
            "  (SELECT max(version) FROM versions v WHERE v.model = m.name) AS latest, "
            "  (SELECT count(*) FROM versions v WHERE v.model = m.name) AS n "
            "FROM models m ORDER BY m.name")
        aliases: dict[str, dict[str, int]] = {}
        for r in self._read("SELECT model, environment, version FROM aliases ORDER BY model, environment"):
            aliases.setdefault(r["model"], {})[r["environment"]] = r["version"]
        return [Model(name=r["name"], created_at=r["created_at"], created_by=r["created_by"],
                      description=r["description"] or "", latest_version=r["latest"], n_versions=r["n"],
                      aliases=aliases.get(r["name"], {})) for r in rows]

    def model(self, name: str) -> Model:
        rows = self._read("SELECT * FROM models WHERE name=?", (name,))
        if not rows:
            raise NotFoundError(self._unknown_model(name))
        r = rows[0]
        agg = self._read("SELECT max(version), count(*) FROM versions WHERE model=?", (name,))[0]
        return Model(name=r["name"], created_at=r["created_at"], created_by=r["created_by"],
                     description=r["description"] or "", latest_version=agg[0], n_versions=agg[1],
                     aliases=self.aliases(name))

    def has_model(self, name: str) -> bool:
        return bool(self._read("SELECT 1 FROM models WHERE name=?", (name,)))

    def _unknown_model(self, name: str) -> str:
        names = [r[0] for r in self._read("SELECT name FROM models ORDER BY name LIMIT 50")]
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ("" if names else " (the registry is empty)")
        return f"no model named {name!r} in {self.path}{hint}"

    def versions(self, model: str) -> list[Version]:
        rows = self._read("SELECT * FROM versions WHERE model=? ORDER BY version", (model,))
        if not rows and not self.has_model(model):
            raise NotFoundError(self._unknown_model(model))
        return [_version(r) for r in rows]

    def version(self, model: str, version: int) -> Version:
        rows = self._read("SELECT * FROM versions WHERE model=? AND version=?", (model, int(version)))
        if not rows:
            raise NotFoundError(self._no_version(model, version))
        return _version(rows[0])

    def _no_version(self, model: str, version: int) -> str:
        if not self.has_model(model):
            return self._unknown_model(model)
        latest = self._read("SELECT max(version) FROM versions WHERE model=?", (model,))[0][0]
        if latest is None:
            return f"model {model} has no versions yet"
        return f"model {model} has no version {version} (latest is {latest})"

    def register(self, model: str, artifact: str, *, dataset: str | None = None,
                 dataset_sha256: str | None = None, reference: str | None = None,
                 code_version: str | None = None, params: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None,
                 description: str | None = None, job_id: int | None = None,
                 actor: str | None = None, reason: str = "", eval_dataset: str | None = None,
                 eval_sha256: str | None = None, eval_rows: int | None = None,
                 run_id: str | None = None) -> Version:
        """Add the next version of ``model`` (created on first use). The dataset's SHA-256 is
        computed here unless given, before the transaction, so the write lock is held briefly.
        ``eval_dataset`` (or ``eval_sha256`` and ``eval_rows``) is the data ``metrics`` were
        measured on: its SHA-256 and rows are recorded with each metric (:meth:`evaluations`),
        so release gates compare versions on the same data only."""
        _check_name(model, "model name")
        eval_path = None
        if (eval_dataset or eval_sha256 or eval_rows is not None) and not metrics:
            raise RegistryError("--eval-dataset / --eval-sha256 describe the data of --metrics: give the metrics too")
        if eval_dataset and eval_sha256:
            raise RegistryError("give --eval-dataset PATH or --eval-sha256 HEX, not both")
        if eval_rows is not None and (isinstance(eval_rows, bool) or not isinstance(eval_rows, int) or eval_rows < 0):
            raise RegistryError(f"--eval-rows must be a whole number >= 0, not {eval_rows!r}")
        if eval_dataset:
            if "://" in eval_dataset:
                raise RegistryError(f"--eval-dataset {eval_dataset}: give a local file (or its hash with --eval-sha256)")
            eval_sha256, counted = datafiles.identity(eval_dataset)
            if eval_rows is not None and eval_rows != counted:
                raise RegistryError(f"--eval-rows {eval_rows}: {eval_dataset} has {counted} rows")
            eval_rows = counted
            eval_path = _abs_if_local(eval_dataset)
        elif eval_sha256:
            eval_sha256 = datafiles.check_sha256(eval_sha256)
        if not artifact or not str(artifact).strip():
            raise RegistryError("an artifact URI is required (--artifact)")
        if dataset and not dataset_sha256:
            dataset_sha256 = sha256_file(dataset)
        if dataset:
            dataset = _abs_if_local(dataset)
        if reference:
            if not Path(reference).exists() and "://" not in reference:
                raise RegistryError(f"{reference}: reference data not found")
            reference = _abs_if_local(reference)
        for label, value in (("metrics", metrics), ("params", params), ("tags", tags)):
            if value is not None and not isinstance(value, Mapping):
                raise RegistryError(f"{label} must be a JSON object, not {type(value).__name__}")
        if metrics:
            _check_metrics(metrics)
        actor = actor or current_actor()
        at = utcnow()
        row = {"artifact": str(artifact), "created_at": at, "created_by": actor, "dataset_path": dataset,
               "dataset_sha256": dataset_sha256, "reference_path": reference, "code_version": code_version,
               "params": _dumps(dict(params or {})), "metrics": _dumps(dict(metrics or {})),
               "tags": _dumps({str(k): str(v) for k, v in (tags or {}).items()}),
               "approval": "pending", "approval_reason": None, "approval_by": None,
               "approval_at": None, "job_id": job_id, "run_id": run_id}
        return self._register_row(model, None, row, params=dict(params or {}), metrics=dict(metrics or {}),
                                  tags={str(k): str(v) for k, v in (tags or {}).items()},
                                  evaluation=(eval_sha256, eval_rows, eval_path), description=description or "",
                                  reason=reason, actor=actor, at=at)

    def _register_row(self, model: str, n: int | None, row: dict[str, Any], *, params: dict[str, Any],
                      metrics: dict[str, Any], tags: dict[str, str], evaluation: tuple[str | None, int | None, str | None],
                      description: str, reason: str, actor: str, at: str) -> Version:
        """The write of :meth:`register` (inputs checked): the next version, or version ``n``
        when a registry of record elsewhere numbered it (its row replaces a copy read meanwhile)."""
        eval_sha256, eval_rows, eval_path = evaluation
        job_id = row.get("job_id")
        with self._write() as c:
            if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                c.execute("INSERT INTO models(name, created_at, created_by, description) VALUES (?,?,?,?)",
                          (model, at, actor, description or ""))
            if n is None:
                n = (c.execute("SELECT max(version) FROM versions WHERE model=?", (model,)).fetchone()[0] or 0) + 1
            else:
                c.execute("DELETE FROM versions WHERE model=? AND version=?", (model, n))
                c.execute("DELETE FROM evaluations WHERE model=? AND version=? AND source='register'", (model, n))
            row = {"model": model, "version": n, **row}
            c.execute(f"INSERT INTO versions({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                      list(row.values()))
            after = {k: row[k] for k in ("artifact", "dataset_path", "dataset_sha256", "reference_path",
                                         "code_version", "job_id")}
            if row.get("run_id"):
                after["run_id"] = row["run_id"]
            after.update(version=n, params=dict(params or {}), metrics=dict(metrics or {}))
            if metrics:
                self._insert_evaluations(model, n, metrics, eval_sha256, eval_rows, eval_path, "register", at, actor)
                after.update(eval_sha256=eval_sha256, eval_rows=eval_rows, eval_path=eval_path)
            after["_row"] = self._row_ref("versions", (model, n))
            self._audit("register", f"{model}:{n}", None, after, reason, actor, at)
            if job_id is not None:
                c.execute("UPDATE jobs SET produced_version=? WHERE id=? AND model=?", (n, job_id, model))
        return self.version(model, n)

    # -- evaluations: metrics with the data they were measured on --------------------------------
    def _insert_evaluations(self, model: str, version: int, metrics: Mapping[str, Any], sha: str | None,
                            rows: int | None, path: str | None, source: str, at: str, actor: str) -> None:
        for k, v in metrics.items():
            self.conn.execute(
                "INSERT INTO evaluations(model, version, metric, value, dataset_sha256, dataset_rows, dataset_path, "
                "source, at, actor) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(model, version, metric, dataset_sha256) "
                "WHERE dataset_sha256 IS NOT NULL DO UPDATE SET value=excluded.value, "
                "dataset_rows=excluded.dataset_rows, dataset_path=excluded.dataset_path, source=excluded.source, "
                "at=excluded.at, actor=excluded.actor",
                (model, int(version), str(k), float(v), sha, rows, path, source, at, actor))

    def record_evaluation(self, model: str, version: int, metrics: Mapping[str, Any], *, dataset_sha256: str,
                          dataset_rows: int | None, dataset_path: str | None = None, source: str = "evaluate",
                          actor: str | None = None, reason: str = "") -> list[Evaluation]:
        """Record ``metrics`` of a version measured on one dataset (audited as ``evaluate``). A
        metric already recorded for that version on the same dataset is replaced."""
        _check_metrics(metrics)
        if not metrics:
            raise RegistryError("an evaluation needs at least one metric")
        sha = datafiles.check_sha256(dataset_sha256, "dataset SHA-256")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            if not c.execute("SELECT 1 FROM versions WHERE model=? AND version=?", (model, int(version))).fetchone():
                raise NotFoundError(self._no_version(model, version))
            before = {r[0]: r[1] for r in c.execute(
                "SELECT metric, value FROM evaluations WHERE model=? AND version=? AND dataset_sha256=?",
                (model, int(version), sha)) if r[0] in metrics}
            self._insert_evaluations(model, int(version), metrics, sha, dataset_rows, dataset_path, source, at, actor)
            self._audit("evaluate", f"{model}:{version}", {"metrics": before} if before else None,
                        {"metrics": {k: float(v) for k, v in metrics.items()}, "dataset_sha256": sha,
                         "dataset_rows": dataset_rows, "dataset_path": dataset_path, "source": source},
                        reason, actor, at)
        return self.evaluations(model, version, dataset_sha256=sha)

    def evaluations(self, model: str, version: int | None = None, *, metric: str | None = None,
                    dataset_sha256: str | None = None) -> list[Evaluation]:
        """Metrics with their data, oldest first; filtered by version, metric and dataset."""
        where, params = ["model=?"], [model]
        for col, val in (("version", version), ("metric", metric), ("dataset_sha256", dataset_sha256)):
            if val is not None:
                where.append(f"{col}=?")
                params.append(int(val) if col == "version" else val)
        rows = self._read(f"SELECT * FROM evaluations WHERE {' AND '.join(where)} ORDER BY at, id", params)
        return [Evaluation(model=r["model"], version=r["version"], metric=r["metric"], value=r["value"],
                           dataset_sha256=r["dataset_sha256"], dataset_rows=r["dataset_rows"],
                           dataset_path=r["dataset_path"], source=r["source"], at=r["at"], actor=r["actor"] or "")
                for r in rows]

    # -- approvals ---------------------------------------------------------------------------------
    def approvers(self, model: str, version: int) -> list[tuple[str, str]]:
        """Who approved a version since it was last rejected: (actor, at), first approval first,
        each actor once."""
        return _approvers(self.conn, model, int(version))

    def _set_approval(self, model: str, version: int, state: str, reason: str, actor: str | None,
                      force: bool = False) -> Version:
        if not reason or not reason.strip():
            raise RegistryError(f"a reason is required to {'approve' if state == 'approved' else 'reject'} "
                                f"(--reason)")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            row = c.execute("SELECT approval FROM versions WHERE model=? AND version=?",
                            (model, int(version))).fetchone()
            if not row:
                raise NotFoundError(self._no_version(model, version))
            before = row[0]
            approvers = [a for a, _ in _approvers(c, model, int(version))]
            if before == state and (state == "rejected" or actor in approvers):
                by = f" by {actor}" if state == "approved" else ""
                raise ConflictError(f"{model} version {version} is already {state}{by}")
            if state == "rejected" and not force:
                holders = [r[0] for r in c.execute(
                    "SELECT environment FROM aliases WHERE model=? AND version=? ORDER BY environment",
                    (model, int(version)))]
                if PROTECTED_ENVIRONMENTS[0] in holders:
                    raise GateError(f"{model} version {version} serves production; roll production back "
                                    f"before rejecting it")
            self._apply_approval(model, int(version), state, reason, actor,
                                 [*approvers, actor] if state == "approved" else [actor])
            c.execute("UPDATE versions SET approval=?, approval_reason=?, approval_by=?, approval_at=? "
                      "WHERE model=? AND version=?", (state, reason, actor, at, model, int(version)))
            c.execute("INSERT INTO approvals(model, version, decision, actor, at, reason) VALUES (?,?,?,?,?,?)",
                      (model, int(version), "approve" if state == "approved" else "reject", actor, at, reason))
            b: dict[str, Any] = {"approval": before}
            a: dict[str, Any] = {"approval": state}
            if state == "approved":
                b["approvers"], a["approvers"] = approvers, [*approvers, actor]
            a["_row"] = self._row_ref("versions", (model, version))
            self._audit("approve" if state == "approved" else "reject", f"{model}:{version}", b, a, reason, actor, at)
        return self.version(model, version)

    def _apply_approval(self, model: str, version: int, state: str, reason: str, actor: str,
                        deciders: list[str]) -> None:
        """Inside an approval's write transaction, after its checks: a registry of record
        elsewhere records the decision too (core.mlflow: version tags); raising rolls it back."""

    def approve(self, model: str, version: int, reason: str, actor: str | None = None) -> Version:
        return self._set_approval(model, version, "approved", reason, actor)

    def reject(self, model: str, version: int, reason: str, actor: str | None = None) -> Version:
        return self._set_approval(model, version, "rejected", reason, actor)

    def tag(self, model: str, version: int, key: str, value: str | None, actor: str | None = None,
            reason: str = "") -> Version:
        """Set (or with ``value=None`` remove) a free-form tag on a version."""
        _check_name(key, "tag name")
        if key == "_row":
            raise RegistryError("tag name '_row' is reserved (the audit log's row hash)")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            row = c.execute("SELECT tags FROM versions WHERE model=? AND version=?",
                            (model, int(version))).fetchone()
            if not row:
                raise NotFoundError(self._no_version(model, version))
            tags = _loads(row[0], {})
            before = tags.get(key)
            self._apply_tag(model, int(version), key, value)
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = str(value)
            c.execute("UPDATE versions SET tags=? WHERE model=? AND version=?",
                      (_dumps(tags), model, int(version)))
            self._audit("tag", f"{model}:{version}", {key: before},
                        {key: value, "_row": self._row_ref("versions", (model, version))}, reason, actor, at)
        return self.version(model, version)

    def _apply_tag(self, model: str, version: int, key: str, value: str | None) -> None:
        """Inside a tag's write transaction: a registry of record elsewhere sets it too."""

    # -- aliases ----------------------------------------------------------------------------------
    def aliases(self, model: str) -> dict[str, int]:
        return {r[0]: r[1] for r in self._read(
            "SELECT environment, version FROM aliases WHERE model=? ORDER BY environment", (model,))}

    def alias(self, model: str, environment: str) -> int | None:
        rows = self._read("SELECT version FROM aliases WHERE model=? AND environment=?", (model, environment))
        return rows[0][0] if rows else None

    def all_aliases(self) -> dict[tuple[str, str], int]:
        """Every (model, environment) -> version, in one query (the poller's per-cycle view)."""
        return {(r[0], r[1]): r[2] for r in self._read("SELECT model, environment, version FROM aliases")}

    def history(self, model: str, environment: str | None = None, *, limit: int | None = None) -> list[AliasChange]:
        """Alias changes, newest first."""
        if not self.has_model(model):
            raise NotFoundError(self._unknown_model(model))
        return self._history_rows(model, environment, limit)

    def _history_rows(self, model: str, environment: str | None, limit: int | None) -> list[AliasChange]:
        sql = "SELECT * FROM alias_history WHERE model=?"
        params: list[Any] = [model]
        if environment:
            sql += " AND environment=?"
            params.append(environment)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_change(r) for r in self._read(sql, params)]

    def alias_at(self, model: str, environment: str, when: datetime | str) -> AliasChange | None:
        """The alias change in force at ``when``: which version served ``environment`` then."""
        at = when if isinstance(when, str) else format_time(when)
        rows = self._read("SELECT * FROM alias_history WHERE model=? AND environment=? AND at <= ? "
                          "ORDER BY at DESC, id DESC LIMIT 1", (model, environment, at))
        return _change(rows[0]) if rows else None

    def promote(self, model: str, version: int, environment: str, reason: str, *,
                expect: int | str | None = "current", actor: str | None = None, force: bool = False,
                details: Mapping[str, Any] | None = None, undo: bool = False,
                rollout_id: int | None = None) -> AliasChange:
        """Move ``environment`` to ``version``. ``expect`` is the version the caller saw
        holding the alias (None: it was unset); if another writer moved it meanwhile, this
        raises ConflictError and writes nothing. ``expect="current"`` takes whatever holds
        it now (no check). Promoting to production requires an approved version, and the
        registry policy's ``approvals`` / ``approver_is_not_promoter`` for the environment hold,
        whatever ``force`` says (it only marks the entry ``forced``: metric and health gates
        are the caller's); only ``undo`` (putting back what a failed release replaced) skips
        them. ``details`` (gate results, rollout notes) go into the audit entry. With ``rollout_id``
        the rollout (in ``gating``) moves to ``deploying`` in the same transaction."""
        return self._move(model, int(version), environment, reason, "promote", expect, actor, force, details, undo,
                          rollout_id)

    def rollback_target(self, model: str, environment: str) -> int | None:
        """The version that held the alias before the current one, skipping versions that
        were themselves rolled back (replay of the history as a stack)."""
        stack = self._alias_stack(self.conn, model, environment)
        return stack[-2] if len(stack) >= 2 else None

    def rollback(self, model: str, environment: str, reason: str, *, to: int | None = None,
                 expect: int | str | None = "current", actor: str | None = None, force: bool = False,
                 details: Mapping[str, Any] | None = None, undo: bool = False,
                 rollout_id: int | None = None) -> AliasChange:
        """Move ``environment`` back to the previous holder (or ``to``). Compare-and-set
        like promote; a rejected version is refused (in production, or where the policy asks
        for approvals) unless ``undo``."""
        return self._move(model, to, environment, reason, "rollback", expect, actor, force, details, undo,
                          rollout_id)

    def unset_alias(self, model: str, environment: str, reason: str, *, expect: int | str | None = "current",
                    actor: str | None = None, details: Mapping[str, Any] | None = None) -> AliasChange:
        """Remove ``environment``'s alias (it then serves nothing from the registry's point of
        view): the undo of a first-ever promotion. Compare-and-set like promote."""
        _check_name(environment, "environment name")
        if not reason or not reason.strip():
            raise RegistryError("a reason is required to unset an alias")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            row = c.execute("SELECT version FROM aliases WHERE model=? AND environment=?",
                            (model, environment)).fetchone()
            current = row[0] if row else None
            if current is None:
                if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                    raise NotFoundError(self._unknown_model(model))
                raise RegistryError(f"{model} has nothing in {environment} to unset")
            if expect != "current" and expect != current:
                raise ConflictError(f"{environment} of {model} moved to version {current} since you saw it at "
                                    f"{'unset' if expect is None else f'version {expect}'}; nothing was changed")
            self._apply_move(model, environment, current, None)
            change = self._write_alias(c, model, environment, current, None, "unset", actor, at, reason, details)
        return change

    def _apply_move(self, model: str, environment: str, current: int | None, target: int | None) -> None:
        """Called inside an alias move's write transaction, after every check and before the
        ledger rows are written: a registry of record elsewhere (core.mlflow) moves its alias
        here, and an exception rolls the ledger's side back. Nothing to do for the ledger alone."""

    def _write_alias(self, c: sqlite3.Connection, model: str, environment: str, current: int | None,
                     version: int | None, action: str, actor: str, at: str, reason: str,
                     details: Mapping[str, Any] | None, force: bool = False) -> AliasChange:
        """Inside a write transaction: the history row, the alias itself (None: removed) and the
        audit entry of one alias move."""
        cur = c.execute("INSERT INTO alias_history(model, environment, from_version, to_version, action, "
                        "actor, at, reason) VALUES (?,?,?,?,?,?,?,?)",
                        (model, environment, current, version, action, actor, at, reason))
        hid = int(cur.lastrowid or 0)
        if version is None:
            c.execute("DELETE FROM aliases WHERE model=? AND environment=?", (model, environment))
        else:
            c.execute("INSERT INTO aliases(model, environment, version, updated_at, updated_by, history_id) "
                      "VALUES (?,?,?,?,?,?) ON CONFLICT(model, environment) DO UPDATE SET "
                      "version=excluded.version, updated_at=excluded.updated_at, "
                      "updated_by=excluded.updated_by, history_id=excluded.history_id",
                      (model, environment, version, at, actor, hid))
        after: dict[str, Any] = {"version": version}
        if force:
            after["forced"] = True
        if details:
            after.update(details)
        after["_row"] = self._row_ref("alias_history", hid)
        self._audit(action, f"{model}@{environment}", {"version": current}, after, reason, actor, at)
        return AliasChange(id=hid, model=model, environment=environment, from_version=current,
                           to_version=version, action=action, actor=actor, at=at, reason=reason)

    def _alias_stack(self, c: sqlite3.Connection, model: str, environment: str) -> list[int]:
        stack: list[int] = []
        for action, to in c.execute("SELECT action, to_version FROM alias_history WHERE model=? AND "
                                    "environment=? ORDER BY id", (model, environment)):
            if action == "unset" or to is None:
                stack.clear()
            elif action == "rollback" and to in stack:
                while stack[-1] != to:
                    stack.pop()
            else:
                stack.append(to)
        return stack

    def _check_approval(self, c: sqlite3.Connection, model: str, version: int, environment: str, action: str,
                        approval: str, actor: str) -> None:
        """The approval rule (``judge.approval_verdict``) with the registry's own policy for the
        environment (``approvals``, ``approver_is_not_promoter``), inside the write transaction:
        whatever a caller's config says, nothing below the registry's policy moves an alias."""
        from modeldeck.core import judge

        row = c.execute("SELECT rules FROM policies WHERE model=? ORDER BY version DESC LIMIT 1", (model,)).fetchone()
        rules = ((_loads(row[0], {}) or {}).get("environments") or {}).get(environment) or {} if row else {}
        four_eyes = bool(rules.get("approver_is_not_promoter", False))
        needed = judge.approvals_needed(environment, int(rules.get("approvals", 0) or 0), four_eyes,
                                        PROTECTED_ENVIRONMENTS)
        if action == "promote" and not needed:
            return
        if action == "rollback" and environment not in PROTECTED_ENVIRONMENTS and not needed:
            return
        approvers = [a for a, _ in _approvers(c, model, version)]
        ok, text = judge.approval_verdict(model=model, version=version, environment=environment, action=action,
                                          approval=approval, approvers=approvers, needed=needed,
                                          four_eyes=four_eyes, promoter=actor)
        if not ok:
            raise GateError(f"{text}; nothing was changed")

    def _move(self, model: str, version: int | None, environment: str, reason: str, action: str,
              expect: int | str | None, actor: str | None, force: bool,
              details: Mapping[str, Any] | None, undo: bool = False,
              rollout_id: int | None = None) -> AliasChange:
        _check_name(environment, "environment name")
        if not reason or not reason.strip():
            raise RegistryError(f"a reason is required to {action} (--reason)")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                raise NotFoundError(self._unknown_model(model))
            row = c.execute("SELECT version, updated_by, updated_at FROM aliases WHERE model=? AND "
                            "environment=?", (model, environment)).fetchone()
            current = row[0] if row else None
            if expect != "current" and expect != current:
                seen = "unset" if expect is None else f"version {expect}"
                now = "unset" if current is None else f"version {current}"
                who = f" by {row[1]} at {row[2]}" if row else ""
                raise ConflictError(f"{environment} of {model} moved to {now}{who} since you saw it at "
                                    f"{seen}; nothing was changed; look again and retry")
            if action == "rollback":
                if current is None:
                    raise RegistryError(f"{model} has nothing in {environment} to roll back")
                if version is None:
                    stack = self._alias_stack(c, model, environment)
                    if len(stack) < 2:
                        raise RegistryError(f"{environment} of {model} has no earlier version to roll "
                                            f"back to (it only ever held {current}); use --to N")
                    version = stack[-2]
            assert version is not None
            vrow = c.execute("SELECT approval FROM versions WHERE model=? AND version=?",
                             (model, version)).fetchone()
            if not vrow:
                raise NotFoundError(self._no_version(model, version))
            if version == current:
                raise ConflictError(f"{environment} of {model} already holds version {version}")
            if not undo:  # approval is never forced; only undoing a failed release skips it
                self._check_approval(c, model, version, environment, action, vrow[0], actor)
            self._apply_move(model, environment, current, version)
            change = self._write_alias(c, model, environment, current, version, action, actor, at, reason,
                                       details, force)
            if rollout_id is not None:
                self._rollout_to(c, rollout_id, "deploying", actor, at,
                                 f"{environment} of {model} moved to version {version}", change_id=change.id,
                                 forced=int(bool(force)), from_version=current, to_version=version)
        return change

    # -- release policies (rules in core.policy; stored here, versioned and audited) ----------------
    def policy(self, model: str, version: int | None = None) -> PolicyRecord | None:
        """The model's current release policy (or one version of it); None when it has none."""
        if version is None:
            rows = self._read("SELECT * FROM policies WHERE model=? ORDER BY version DESC LIMIT 1", (model,))
        else:
            rows = self._read("SELECT * FROM policies WHERE model=? AND version=?", (model, int(version)))
            if not rows:
                raise NotFoundError(f"{model} has no policy version {version}")
        return _policy(rows[0]) if rows else None

    def policy_history(self, model: str) -> list[PolicyRecord]:
        """Every version of the model's policy, newest first."""
        return [_policy(r) for r in self._read("SELECT * FROM policies WHERE model=? ORDER BY version DESC",
                                               (model,))]

    def set_policy(self, model: str, rules: Mapping[str, Any], reason: str, *, text: str = "",
                   actor: str | None = None, expect: int | str | None = "current") -> PolicyRecord:
        """Store ``rules`` (already checked by ``core.policy``) as the model's next policy
        version, audited with the previous one. ``expect``: the version the caller saw (None:
        no policy); another writer's change meanwhile raises ConflictError."""
        if not reason or not reason.strip():
            raise RegistryError("a reason is required to set a policy (--reason)")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                raise NotFoundError(self._unknown_model(model))
            row = c.execute("SELECT version, rules FROM policies WHERE model=? ORDER BY version DESC LIMIT 1",
                            (model,)).fetchone()
            current = row[0] if row else None
            if expect != "current" and expect != current:
                raise ConflictError(f"the policy of {model} changed to version {current} since you read it "
                                    f"(version {expect}); nothing was changed")
            n = (current or 0) + 1
            c.execute("INSERT INTO policies(model, version, rules, text, at, actor, reason) VALUES (?,?,?,?,?,?,?)",
                      (model, n, _dumps(dict(rules)), text, at, actor, reason))
            self._audit("policy", f"{model}:policy", {"version": current, "rules": _loads(row[1]) if row else None},
                        {"version": n, "rules": dict(rules)}, reason, actor, at)
        rec = self.policy(model)
        assert rec is not None
        return rec

    def policy_environments(self) -> dict[str, list[str]]:
        """Environment -> models whose current policy names it (environments declared by policy)."""
        out: dict[str, list[str]] = {}
        for r in self._read("SELECT p.model, p.rules FROM policies p JOIN (SELECT model, max(version) AS v FROM "
                            "policies GROUP BY model) m ON p.model = m.model AND p.version = m.v"):
            for env in (_loads(r["rules"], {}) or {}).get("environments", {}) or {}:
                out.setdefault(str(env), []).append(r["model"])
        return out

    def environments(self) -> dict[str, list[str]]:
        """Environment -> models holding an alias there, for every environment holding one."""
        out: dict[str, list[str]] = {}
        for r in self._read("SELECT environment, model FROM aliases ORDER BY environment, model"):
            out.setdefault(r["environment"], []).append(r["model"])
        return out

    # -- retraining jobs -----------------------------------------------------------------------
    def create_job(self, model: str, *, trigger: str, runner: str, reason: str = "",
                   actor: str | None = None, log_path: str | None = None,
                   not_since: str | None = None) -> Job:
        """Queue a retraining job. With ``not_since`` (a time), refuse with ConflictError when a
        job with the same trigger (for drift and quality: either of them) was created for this
        model since then (the automatic cool-down), checked inside the write transaction so two
        cron runs cannot both start one."""
        if trigger not in JOB_TRIGGERS:
            raise RegistryError(f"unknown trigger {trigger!r} (one of {', '.join(JOB_TRIGGERS)})")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                raise NotFoundError(self._unknown_model(model))
            if not_since is not None:
                same = AUTOMATIC_TRIGGERS if trigger in AUTOMATIC_TRIGGERS else (trigger,)
                recent = c.execute(f"SELECT id, created_at, trigger FROM jobs WHERE model=? AND trigger IN "
                                   f"({','.join('?' * len(same))}) AND created_at >= ? ORDER BY id DESC LIMIT 1",
                                   (model, *same, not_since)).fetchone()
                if recent:
                    raise ConflictError(f"{model}: a {recent[2]} retraining job (#{recent[0]}) already "
                                        f"started at {recent[1]}; cooling down")
            cur = c.execute("INSERT INTO jobs(model, trigger, actor, reason, status, runner, created_at, "
                            "log_path) VALUES (?,?,?,?,?,?,?,?)",
                            (model, trigger, actor, reason, "queued", runner, at, log_path))
            job_id = int(cur.lastrowid or 0)
            self._audit("retrain.start", f"{model}#job{job_id}", None,
                        {"job": job_id, "trigger": trigger, "runner": runner}, reason, actor, at)
        return self.job(job_id)

    def update_job(self, job_id: int, *, actor: str | None = None, **changes: Any) -> Job:
        """Update a job's fields; a move to an end state (succeeded, failed, cancelled) is
        audited. Allowed fields: status, started_at, ended_at, exit_code, log_path,
        produced_version, external_id, pid, message."""
        allowed = {"status", "started_at", "ended_at", "exit_code", "log_path", "produced_version",
                   "external_id", "pid", "message"}
        bad = set(changes) - allowed
        if bad:
            raise RegistryError(f"cannot update job field(s) {', '.join(sorted(bad))}")
        status = changes.get("status")
        if status is not None and status not in JOB_STATES:
            raise RegistryError(f"unknown job status {status!r}")
        actor = actor or current_actor()
        at = utcnow()
        if status in ("succeeded", "failed", "cancelled"):
            changes.setdefault("ended_at", at)
        if status == "running":
            changes.setdefault("started_at", at)
        with self._write() as c:
            row = c.execute("SELECT model, status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if not row:
                raise NotFoundError(f"no retraining job #{job_id}")
            model, before = row
            if before in ("succeeded", "failed", "cancelled") and status and status != before:
                raise ConflictError(f"job #{job_id} already ended ({before})")
            if changes:
                sets = ", ".join(f"{k}=?" for k in changes)
                c.execute(f"UPDATE jobs SET {sets} WHERE id=?", [*changes.values(), job_id])
            if status in ("succeeded", "failed", "cancelled") and status != before:
                after = {"status": status}
                for k in ("exit_code", "produced_version", "message"):
                    if changes.get(k) is not None:
                        after[k] = changes[k]
                self._audit(f"retrain.{status}", f"{model}#job{job_id}", {"status": before}, after,
                            "", actor, at)
        return self.job(job_id)

    def job(self, job_id: int) -> Job:
        rows = self._read("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            raise NotFoundError(f"no retraining job #{job_id}")
        return _job(rows[0])

    def jobs(self, model: str | None = None, *, status: Iterable[str] | None = None,
             since: str | None = None, limit: int | None = 200) -> list[Job]:
        """Newest first."""
        where, params = [], []
        if model:
            where.append("model=?")
            params.append(model)
        if status:
            st = list(status)
            where.append(f"status IN ({', '.join('?' * len(st))})")
            params += st
        if since:
            where.append("created_at >= ?")
            params.append(since)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_job(r) for r in self._read(sql, params)]

    # -- rollouts ----------------------------------------------------------------------------------
    def create_rollout(self, model: str, environment: str, action: str, to_version: int, reason: str, *,
                       from_version: int | None, actor: str | None = None, verify: bool = True,
                       bake_seconds: float = 0.0, config_path: str | None = None,
                       details: Mapping[str, Any] | None = None) -> Rollout:
        """Start a rollout in ``gating``. Refused (ConflictError) while another rollout of the
        same model and environment is still active."""
        _check_name(environment, "environment name")
        if action not in ("promote", "rollback"):
            raise RegistryError(f"unknown rollout action {action!r}")
        if not reason or not reason.strip():
            raise RegistryError(f"a reason is required to {action} (--reason)")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                raise NotFoundError(self._unknown_model(model))
            busy = c.execute(f"SELECT id, state FROM rollouts WHERE model=? AND environment=? AND state IN "
                             f"({', '.join('?' * len(ROLLOUT_ACTIVE))}) ORDER BY id DESC LIMIT 1",
                             (model, environment, *ROLLOUT_ACTIVE)).fetchone()
            if busy:
                raise ConflictError(f"rollout {busy[0]} of {model} in {environment} is still {busy[1]}: wait for it "
                                    f"(modeldeck rollout {busy[0]} --follow) or abort it (modeldeck abort {busy[0]} "
                                    f"--reason ...); nothing was changed")
            cur = c.execute(
                "INSERT INTO rollouts(model, environment, action, from_version, to_version, state, actor, reason, "
                "started_at, updated_at, message, forced, verify, bake_seconds, config_path, details) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (model, environment, action, from_version, int(to_version), "gating", actor, reason, at, at,
                 "checking the gates", 0, int(bool(verify)), float(bake_seconds), config_path,
                 _dumps(dict(details or {}))))
            rid = int(cur.lastrowid or 0)
            self._audit("rollout.gating", f"{model}@{environment}#rollout{rid}", None,
                        {"rollout": rid, "action": action, "from_version": from_version, "to_version": int(to_version),
                         "state": "gating"}, reason, actor, at)
        return self.rollout(rid)

    def _rollout_to(self, c: sqlite3.Connection, rollout_id: int, state: str, actor: str, at: str, message: str,
                    reason: str = "", **changes: Any) -> None:
        """One transition inside a write transaction, with its audit entry."""
        row = c.execute("SELECT model, environment, state FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
        if not row:
            raise NotFoundError(f"no rollout {rollout_id}")
        model, env, before = row
        if state != before and state not in _ROLLOUT_NEXT.get(before, set()):
            raise ConflictError(f"rollout {rollout_id} is {before}; it cannot become {state}")
        if state not in ROLLOUT_STATES:
            raise RegistryError(f"unknown rollout state {state!r}")
        fields = {"state": state, "updated_at": at, "message": message, **changes}
        if state in ROLLOUT_ENDED:
            fields.setdefault("ended_at", at)
        elif "ended_at" not in changes and before in ROLLOUT_ENDED:
            fields["ended_at"] = None
        c.execute(f"UPDATE rollouts SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?",
                  [*fields.values(), rollout_id])
        if state != before:
            after = {"rollout": rollout_id, "state": state, "message": message}
            self._audit(f"rollout.{state}", f"{model}@{env}#rollout{rollout_id}", {"state": before}, after, reason,
                        actor, at)

    _ROLLOUT_FIELDS = frozenset({"pid", "heartbeat_at", "bake_started_at", "bake_ends_at", "verified_at",
                                 "change_id", "details", "ended_at"})

    def transition_rollout(self, rollout_id: int, state: str, message: str, *, actor: str | None = None,
                           expect: Sequence[str] | None = None, **changes: Any) -> Rollout:
        """Move a rollout to ``state`` (one transaction with its audit entry). ``expect``: the
        states it may be in now (else ConflictError: someone else moved it meanwhile)."""
        bad = set(changes) - self._ROLLOUT_FIELDS
        if bad:
            raise RegistryError(f"cannot update rollout field(s) {', '.join(sorted(bad))}")
        if "details" in changes and not isinstance(changes["details"], str):
            changes["details"] = _dumps(dict(changes["details"]))
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            row = c.execute("SELECT state FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
            if row and expect is not None and row[0] not in expect:
                raise ConflictError(f"rollout {rollout_id} is {row[0]} now, not {' or '.join(expect)}")
            self._rollout_to(c, rollout_id, state, actor, at, message, **changes)
        return self.rollout(rollout_id)

    def update_rollout(self, rollout_id: int, **changes: Any) -> Rollout:
        """Change a rollout's bookkeeping (pid, heartbeat, bake times) without a transition."""
        bad = set(changes) - self._ROLLOUT_FIELDS - {"message"}
        if bad:
            raise RegistryError(f"cannot update rollout field(s) {', '.join(sorted(bad))}")
        if "details" in changes and not isinstance(changes["details"], str):
            changes["details"] = _dumps(dict(changes["details"]))
        with self._write() as c:
            c.execute(f"UPDATE rollouts SET {', '.join(f'{k}=?' for k in changes)}, updated_at=? WHERE id=?",
                      [*changes.values(), utcnow(), rollout_id])
        return self.rollout(rollout_id)

    def heartbeat(self, rollout_id: int, pid: int) -> Rollout | None:
        """The supervisor ``pid`` is alive. Returns the rollout, or None when another process
        took the rollout over (or it ended): the caller then stops watching."""
        at = utcnow()
        with self._write() as c:
            cur = c.execute(f"UPDATE rollouts SET heartbeat_at=? WHERE id=? AND pid=? AND state IN "
                            f"({', '.join('?' * len(ROLLOUT_ACTIVE))})", (at, rollout_id, pid, *ROLLOUT_ACTIVE))
            owned = cur.rowcount == 1
        return self.rollout(rollout_id) if owned else None

    def claim_rollout(self, rollout_id: int, pid: int, *, expect_pid: int | None,
                      expect_heartbeat: str | None) -> bool:
        """Take over an active rollout whose supervisor died (compare-and-set on its pid and
        last heartbeat, so two processes cannot both resume it). Not audited: the takeover
        is a step of the log."""
        at = utcnow()
        with self._write() as c:
            cur = c.execute("UPDATE rollouts SET pid=?, heartbeat_at=?, updated_at=? WHERE id=? AND pid IS ? AND "
                            "heartbeat_at IS ?", (pid, at, at, rollout_id, expect_pid, expect_heartbeat))
            return cur.rowcount == 1

    def request_abort(self, rollout_id: int, reason: str, *, actor: str | None = None) -> Rollout:
        """Ask the supervisor of an active rollout to stop and roll back (audited)."""
        if not reason or not reason.strip():
            raise RegistryError("a reason is required to abort a rollout (--reason)")
        actor = actor or current_actor()
        at = utcnow()
        with self._write() as c:
            row = c.execute("SELECT model, environment, state FROM rollouts WHERE id=?", (rollout_id,)).fetchone()
            if not row:
                raise NotFoundError(f"no rollout {rollout_id}")
            model, env, state = row
            if state not in ROLLOUT_ACTIVE:
                raise ConflictError(f"rollout {rollout_id} already ended ({state})")
            c.execute("UPDATE rollouts SET abort_reason=?, abort_by=?, updated_at=? WHERE id=?",
                      (reason, actor, at, rollout_id))
            self._audit("rollout.abort", f"{model}@{env}#rollout{rollout_id}", {"state": state},
                        {"rollout": rollout_id, "abort_requested": True}, reason, actor, at)
        return self.rollout(rollout_id)

    def confirm_rollout(self, rollout_id: int, reason: str, *, actor: str | None = None) -> Rollout:
        """An operator checked an ``unverified`` rollout: it counts as done (audited)."""
        if not reason or not reason.strip():
            raise RegistryError("a reason is required to confirm a rollout (--reason)")
        actor = actor or current_actor()
        r = self.rollout(rollout_id)
        if r.state != "unverified":
            raise ConflictError(f"rollout {rollout_id} is {r.state}; only an unverified rollout is confirmed")
        details = {**dict(r.details), "confirmed_by": actor, "confirmed_at": utcnow(), "confirm_reason": reason}
        at = utcnow()
        with self._write() as c:
            self._rollout_to(c, rollout_id, "done", actor, at, f"confirmed by {actor}: {reason}", reason,
                             details=_dumps(details), ended_at=at)
        return self.rollout(rollout_id)

    def add_rollout_steps(self, rollout_id: int, steps: Iterable[tuple[str, str, str, str]]) -> int:
        """Append (at, stage, level, message) rows to a rollout's step log (not audited: the
        log is what happened; the transitions are audited). At most MAX_ROLLOUT_STEPS each."""
        items = [(rollout_id, at, stage, level, message[:2000]) for at, stage, level, message in steps]
        if not items:
            return 0
        with self._write() as c:
            have = c.execute("SELECT count(*) FROM rollout_steps WHERE rollout_id=?", (rollout_id,)).fetchone()[0]
            room = MAX_ROLLOUT_STEPS - have
            if room <= 0:
                return 0
            c.executemany("INSERT INTO rollout_steps(rollout_id, at, stage, level, message) VALUES (?,?,?,?,?)",
                          items[:room])
        return min(room, len(items))

    def rollout_steps(self, rollout_id: int, *, after: int = 0, limit: int | None = None) -> list[RolloutStep]:
        sql = "SELECT * FROM rollout_steps WHERE rollout_id=? AND id > ? ORDER BY id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [RolloutStep(id=r["id"], rollout_id=r["rollout_id"], at=r["at"], stage=r["stage"] or "",
                            level=r["level"] or "", message=r["message"] or "")
                for r in self._read(sql, (rollout_id, after))]

    def rollout(self, rollout_id: int) -> Rollout:
        rows = self._read("SELECT * FROM rollouts WHERE id=?", (int(rollout_id),))
        if not rows:
            raise NotFoundError(f"no rollout {rollout_id} in {self.path}")
        return _rollout(rows[0])

    def rollouts(self, model: str | None = None, *, environment: str | None = None,
                 states: Iterable[str] | None = None, limit: int | None = 200) -> list[Rollout]:
        """Newest first."""
        where, params = [], []
        if model:
            where.append("model=?")
            params.append(model)
        if environment:
            where.append("environment=?")
            params.append(environment)
        if states is not None:
            st = list(states)
            where.append(f"state IN ({', '.join('?' * len(st))})")
            params += st
        sql = "SELECT * FROM rollouts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_rollout(r) for r in self._read(sql, params)]

    def latest_rollouts(self) -> dict[tuple[str, str], Rollout]:
        """The newest rollout of every (model, environment)."""
        rows = self._read("SELECT r.* FROM rollouts r JOIN (SELECT model, environment, max(id) AS i FROM rollouts "
                          "GROUP BY model, environment) m ON r.id = m.i")
        return {(r["model"], r["environment"]): _rollout(r) for r in rows}

    # -- endpoint snapshots ------------------------------------------------------------------------
    def store_snapshots(self, rows: Iterable[tuple[str, str, Mapping[str, Any]]], *, source: str = "tui",
                        retention_hours: float | None = None) -> int:
        """Store (endpoint, taken_at, data) rows; prune rows older than the retention. Not
        audited: snapshots are observations, not release decisions."""
        items = [(e, t, source, _dumps_fast(d)) for e, t, d in rows]
        with self._write() as c:
            c.executemany("INSERT INTO snapshots(endpoint, taken_at, source, data) VALUES (?,?,?,?)", items)
            if retention_hours is not None:
                cutoff = format_time(datetime.now(timezone.utc) - timedelta(hours=retention_hours))
                c.execute("DELETE FROM snapshots WHERE taken_at < ?", (cutoff,))
        return len(items)

    def snapshots(self, endpoint: str, *, since: str | None = None, limit: int = 300) -> list[dict[str, Any]]:
        """Stored snapshots of one endpoint, oldest first (the newest ``limit``)."""
        sql = "SELECT taken_at, source, data FROM snapshots WHERE endpoint=?"
        params: list[Any] = [endpoint]
        if since:
            sql += " AND taken_at >= ?"
            params.append(since)
        sql += f" ORDER BY taken_at DESC LIMIT {int(limit)}"
        out = []
        for r in reversed(self._read(sql, params)):
            d = _loads_fast(r["data"], {})
            d.setdefault("taken_at", r["taken_at"])
            d["_source"] = r["source"]
            out.append(d)
        return out

    def latest_snapshots(self) -> dict[str, dict[str, Any]]:
        """The newest stored snapshot of every endpoint."""
        rows = self._read("SELECT s.endpoint, s.taken_at, s.source, s.data FROM snapshots s JOIN "
                          "(SELECT endpoint, max(taken_at) AS t FROM snapshots GROUP BY endpoint) m "
                          "ON s.endpoint = m.endpoint AND s.taken_at = m.t")
        out = {}
        for r in rows:
            d = _loads_fast(r["data"], {})
            d.setdefault("taken_at", r["taken_at"])
            d["_source"] = r["source"]
            out[r["endpoint"]] = d
        return out

    def last_audit_id(self) -> int:
        return self._head()["id"]

    def _head(self) -> dict[str, Any]:
        """The stored head of the audit chain; a missing or unreadable one refuses the write
        (appending to it would hide that the chain is broken)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='audit_head'").fetchone()
        head, why = _parse_head(row[0] if row else None, missing=row is None)
        if head is None:
            raise RegistryError(f"{self.path}: {why}: the audit chain is broken (modeldeck audit --verify); "
                                f"nothing was written")
        return head


# ---------------------------------------------------------------------------------------------
# module helpers


def _open(path: Path, *, create: bool, readonly: bool) -> sqlite3.Connection:
    name = str(path)
    if path.is_dir():
        raise RegistryError(f"{name}: is a folder, not a registry file")
    exists = path.exists()
    if not exists:
        if readonly or not create:
            raise RegistryError(f"{name}: no registry here (register a model first, or pass --registry)")
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RegistryError(f"{name}: cannot create its folder: {e.strerror or e}") from None
    elif not os.access(path, os.R_OK):
        raise RegistryError(f"{name}: permission denied (cannot read the registry)")
    elif not readonly and not os.access(path, os.W_OK):
        raise RegistryError(f"{name}: permission denied (cannot write the registry; try --read-only)")
    # No peeking at the header with open(): closing any descriptor of the file drops the
    # POSIX locks SQLite holds on it through this process's other connections (a known
    # SQLite pitfall that loses commits). _prepare() reads the header through SQLite instead.
    uri = f"file:{_quote_uri(path)}?mode={'ro' if readonly else 'rwc'}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as e:
        raise RegistryError(f"{name}: cannot open the registry: {_sqlite_reason(e)}") from None
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _quote_uri(path: Path) -> str:
    from urllib.parse import quote

    return quote(str(path.absolute()))


def _sqlite_reason(e: BaseException) -> str:
    msg = str(e)
    if "file is not a database" in msg or "file is encrypted" in msg:
        return "not an SQLite database"
    if "unable to open" in msg:
        return "cannot open the file (missing folder or permission denied)"
    if "readonly" in msg:
        return "the file or its folder is read-only"
    if "disk I/O" in msg:
        return "disk I/O error"
    return msg


NAME_LIMIT = 128  # characters of a model, environment or tag name


def name_problem(value: Any, what: str = "name") -> str | None:
    """Why ``value`` cannot be a model, environment or tag name (None: it can): names are one
    line of printable characters, at most NAME_LIMIT long, without surrounding spaces. The
    value is quoted with its control characters escaped."""
    if not isinstance(value, str) or not value.strip():
        return f"{what} must not be empty"
    shown = repr(value if len(value) <= 60 else value[:60] + "…")
    bad = next((ch for ch in value if not ch.isprintable()), None)
    if bad is not None:
        return (f"{what} {shown} holds a control or invisible character ({visible(bad)}): names are one line "
                f"of printable characters")
    if value != value.strip():
        return f"{what} {shown} has leading or trailing spaces"
    if len(value) > NAME_LIMIT:
        return f"{what} is {len(value)} characters long; at most {NAME_LIMIT} are allowed"
    return None


def _check_name(value: str, what: str) -> None:
    why = name_problem(value, what)
    if why:
        raise RegistryError(why)


# The columns of the rows an audit entry vouches for (a column added later is not covered until
# it is listed here, and listing it changes the hash of rows written before: add a new key then).
_ROW_COLUMNS = {
    "versions": ("model", "version", "artifact", "created_at", "created_by", "dataset_path", "dataset_sha256",
                 "reference_path", "code_version", "params", "metrics", "tags", "approval", "approval_reason",
                 "approval_by", "approval_at", "job_id", "run_id", "datasets"),
    "alias_history": ("id", "model", "environment", "from_version", "to_version", "action", "actor", "at", "reason"),
}
_ROW_ACTIONS = frozenset({"register", "approve", "reject", "tag", "promote", "rollback", "unset", "external"})


def _row_hash(table: str, values: Sequence[Any]) -> str:
    """SHA-256 of one versions / alias_history row as stored (its columns in _ROW_COLUMNS order)."""
    return hashlib.sha256(json.dumps([table, list(values)], separators=(",", ":"), default=str,
                                     ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def _row_of(after: str | None) -> dict[str, Any] | None:
    """The ``_row`` an audit entry's ``after`` carries (None when it has none or it is garbage)."""
    if not after or '"_row"' not in after:
        return None
    d = _loads(after)
    ref = d.get("_row") if isinstance(d, dict) else None
    if not (isinstance(ref, dict) and ref.get("table") in _ROW_COLUMNS and isinstance(ref.get("sha256"), str)):
        return None
    key = ref.get("key")
    if ref["table"] == "versions":
        if not (isinstance(key, list) and len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], int)):
            return None
        key = (key[0], key[1])
    elif not isinstance(key, int):
        return None
    return {"table": ref["table"], "key": key, "sha256": ref["sha256"]}


def _without_row(after: str | None) -> Any:
    d = _loads(after)
    if isinstance(d, dict) and "_row" in d:
        d = {k: v for k, v in d.items() if k != "_row"}
    return d


def _parse_head(text: str | None, *, missing: bool) -> tuple[dict[str, Any] | None, str]:
    """The stored audit head ``{"id": N, "hash": HEX}``, or None and why it is unusable."""
    if missing:
        return None, "the stored head of the audit chain is missing"
    head = _loads(text)
    if (not isinstance(head, dict) or isinstance(head.get("id"), bool) or not isinstance(head.get("id"), int)
            or head["id"] < 0 or not isinstance(head.get("hash"), str) or not _HEX64.match(head["hash"])):
        shown = "null" if text is None else repr(str(text)[:40])
        return None, f"the stored head of the audit chain is unreadable ({shown})"
    return head, ""


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _check_metrics(metrics: Mapping[str, Any]) -> None:
    if not isinstance(metrics, Mapping):
        raise RegistryError(f"metrics must be a JSON object, not {type(metrics).__name__}")
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RegistryError(f"metric {k!r} must be a number, not {v!r}")
        if v != v or v in (float("inf"), float("-inf")):
            raise RegistryError(f"metric {k!r} must be a finite number, not {v!r}")


def _approvers(c: sqlite3.Connection, model: str, version: int) -> list[tuple[str, str]]:
    """Distinct approvers since the last rejection, first approval first."""
    last_reject = c.execute("SELECT max(id) FROM approvals WHERE model=? AND version=? AND decision='reject'",
                            (model, version)).fetchone()[0] or 0
    out: dict[str, str] = {}
    for actor, at in c.execute("SELECT actor, at FROM approvals WHERE model=? AND version=? AND decision='approve' "
                               "AND id > ? ORDER BY id", (model, version, last_reject)):
        out.setdefault(actor, at)
    return list(out.items())


def _abs_if_local(p: str) -> str:
    if "://" in p:
        return p
    return str(Path(p).expanduser().resolve())


def _like_prefix(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _version(r: sqlite3.Row) -> Version:
    return Version(model=r["model"], version=r["version"], artifact=r["artifact"],
                   created_at=r["created_at"], created_by=r["created_by"], dataset_path=r["dataset_path"],
                   dataset_sha256=r["dataset_sha256"], reference_path=r["reference_path"],
                   code_version=r["code_version"], params=_loads(r["params"], {}),
                   metrics=_loads(r["metrics"], {}), tags=_loads(r["tags"], {}), approval=r["approval"],
                   approval_reason=r["approval_reason"], approval_by=r["approval_by"],
                   approval_at=r["approval_at"], job_id=r["job_id"],
                   run_id=r["run_id"] if "run_id" in r.keys() else None,  # noqa: SIM118 (Row iterates values)
                   datasets=tuple(_loads(r["datasets"], []) or ()) if "datasets" in r.keys() else ())  # noqa: SIM118


def _policy(r: sqlite3.Row) -> PolicyRecord:
    return PolicyRecord(model=r["model"], version=r["version"], rules=_loads(r["rules"], {}), text=r["text"] or "",
                        at=r["at"], actor=r["actor"] or "", reason=r["reason"] or "")


def _change(r: sqlite3.Row) -> AliasChange:
    return AliasChange(id=r["id"], model=r["model"], environment=r["environment"],
                       from_version=r["from_version"], to_version=r["to_version"], action=r["action"],
                       actor=r["actor"], at=r["at"], reason=r["reason"] or "")


def _rollout(r: sqlite3.Row) -> Rollout:
    d = {k: r[k] for k in r.keys()}  # noqa: SIM118 (Row iterates values)
    d["forced"] = bool(d["forced"])
    d["verify"] = bool(d["verify"]) if d["verify"] is not None else True
    d["bake_seconds"] = float(d["bake_seconds"] or 0.0)
    d["message"] = d["message"] or ""
    d["details"] = _loads(d["details"], {}) or {}
    return Rollout(**d)


def _job(r: sqlite3.Row) -> Job:
    return Job(**{k: r[k] for k in r.keys()})  # noqa: SIM118 (Row iterates values)
