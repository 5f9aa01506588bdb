"""MLflow's Model Registry as the registry of record, with modeldeck's ledger on top.

With ``[mlflow]`` in the config, models, versions, lineage and aliases are MLflow's, read and
written over its REST API (``/api/2.0/mlflow/...``) with httpx; the local registry file stays
the **ledger**: alias history, approvals with reasons and actors, the hash-chained audit log,
evaluations, policies, jobs and snapshots. ``registry.open_registry(settings)`` gives the one or the other
:class:`~modeldeck.core.registry.Registry`; callers do not change.

Mapping: MLflow version N is modeldeck version N; the artifact is the version's ``source``;
lineage comes from its run (``runs/get``): params, metrics (the latest value of each), dataset
inputs (name, digest, context) and the ``mlflow.source.git.commit`` tag as the code version;
MLflow version tags are the version's tags (modeldeck's own, under ``tag_prefix``, carry what
``modeldeck register`` recorded and the approval). An environment maps to an MLflow alias
(``[mlflow] aliases``; by default the same name).

The ledger keeps a copy of each version it has seen (the ``versions`` row: lineage fetched once,
the approval state, the evaluation data) so reading a model costs one version search and one
model read, not a run read per version; approvals and history refer to those rows. Aliases
are never cached: MLflow is asked every time, and a difference with the ledger's last known
alias is a move made outside modeldeck, recorded as action ``external`` by actor ``unknown``
(:meth:`MlflowRegistry.sync_aliases`; the poller and the report call it every interval).

Nothing here logs or raises a header value: errors name the server by its URL (credentials
in it dropped) and say what went wrong in one line (:class:`MlflowError`, exit status 2).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modeldeck.core.config import RESERVED_ALIAS, MlflowSettings
from modeldeck.core.errors import ConflictError, NotFoundError, RegistryError
from modeldeck.core.registry import AliasChange, Model, Registry, Version, _dumps, _loads, format_time, utcnow
from modeldeck.core.textfmt import one_line

if TYPE_CHECKING:
    import httpx

API = "/api/2.0/mlflow/"
PAGE_MODELS = 1000  # registered-models/search refuses more
PAGE_VERSIONS = 10_000
TAG_VALUE_LIMIT = 5000  # MLflow's limit on a tag value (characters)
EXTERNAL_ACTOR = "unknown"
LEDGER_RETRIES = (0.2, 0.5, 1.0)  # seconds between tries of a ledger write after MLflow changed


class MlflowError(RegistryError):
    """MLflow cannot be used for this: down, slow, refusing, or answering nonsense."""


class MlflowNotFound(MlflowError, NotFoundError):
    """MLflow says the model, version or run does not exist."""


class LedgerCritical(RegistryError):
    """MLflow changed but the ledger could not record it (after retries): CRITICAL."""


# ---------------------------------------------------------------------------------------------
# values as MLflow has them


def _ms_iso(ms: Any) -> str:
    try:
        return format_time(datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc))
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _tags(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in items or []:
        if isinstance(t, Mapping) and "key" in t:
            out[str(t["key"])] = str(t.get("value", ""))
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class MlVersion:
    name: str
    version: int
    source: str
    run_id: str | None
    tags: Mapping[str, str]
    created_at: str
    user_id: str
    status: str
    description: str = ""
    aliases: tuple[str, ...] = ()

    @classmethod
    def parse(cls, d: Mapping[str, Any]) -> MlVersion:
        n = _int(d.get("version"))
        if n is None:
            raise MlflowError(f"MLflow sent a model version without a number: {one_line(d, 120)}")
        return cls(name=str(d.get("name", "")), version=n, source=str(d.get("source") or ""),
                   run_id=str(d["run_id"]) if d.get("run_id") else None, tags=_tags(d.get("tags")),
                   created_at=_ms_iso(d.get("creation_timestamp")), user_id=str(d.get("user_id") or ""),
                   status=str(d.get("status") or ""), description=str(d.get("description") or ""),
                   aliases=tuple(str(a) for a in d.get("aliases") or ()))


@dataclass(frozen=True)
class MlModel:
    name: str
    created_at: str
    description: str
    aliases: Mapping[str, int]  # MLflow alias -> version
    latest_version: int | None
    user_id: str = ""

    @classmethod
    def parse(cls, d: Mapping[str, Any]) -> MlModel:
        aliases: dict[str, int] = {}
        for a in d.get("aliases") or ():
            if isinstance(a, Mapping) and _int(a.get("version")) is not None:
                aliases[str(a.get("alias"))] = int(a["version"])
        latest = [_int(v.get("version")) for v in d.get("latest_versions") or () if isinstance(v, Mapping)]
        known = [n for n in latest if n is not None]
        return cls(name=str(d.get("name", "")), created_at=_ms_iso(d.get("creation_timestamp")),
                   description=str(d.get("description") or ""), aliases=aliases,
                   latest_version=max(known) if known else None, user_id=str(d.get("user_id") or ""))


@dataclass(frozen=True)
class RunLineage:
    run_id: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    datasets: tuple[Mapping[str, str], ...] = ()  # name, digest, context, source
    code_version: str | None = None
    status: str = ""
    user_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, d: Mapping[str, Any]) -> RunLineage:
        run = d.get("run") or {}
        info, data, inputs = run.get("info") or {}, run.get("data") or {}, run.get("inputs") or {}
        metrics: dict[str, tuple[int, int, float]] = {}
        for m in data.get("metrics") or ():
            try:
                key, value = str(m["key"]), float(m["value"])
            except (KeyError, TypeError, ValueError):
                continue
            if value != value or value in (float("inf"), float("-inf")):
                continue
            rank = (_int(m.get("step")) or 0, _int(m.get("timestamp")) or 0)
            if key not in metrics or rank >= metrics[key][:2]:
                metrics[key] = (*rank, value)
        datasets = []
        for di in inputs.get("dataset_inputs") or ():
            ds = di.get("dataset") or {}
            context = _tags(di.get("tags")).get("mlflow.data.context", "")
            source = str(ds.get("source") or "")
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                parsed = json.loads(source)
                if isinstance(parsed, Mapping):
                    source = str(parsed.get("uri") or parsed.get("path") or parsed.get("url") or source)
            datasets.append({"name": str(ds.get("name") or ""), "digest": str(ds.get("digest") or ""),
                             "context": context, "source": source})
        tags = _tags(data.get("tags"))
        return cls(run_id=str(info.get("run_id") or info.get("run_uuid") or ""),
                   params={str(p.get("key")): str(p.get("value", "")) for p in data.get("params") or ()
                           if isinstance(p, Mapping)},
                   metrics={k: v[2] for k, v in metrics.items()}, datasets=tuple(datasets),
                   code_version=tags.get("mlflow.source.git.commit") or None,
                   status=str(info.get("status") or ""), user_id=str(info.get("user_id") or ""), tags=tags)


# ---------------------------------------------------------------------------------------------
# the REST client


def display_url(url: str) -> str:
    return one_line(url, 120)  # one_line drops user:password@


class Client:
    """MLflow's REST API over one httpx client: timeouts on every call, answers bounded in
    size, errors as one line naming the server (never a header)."""

    def __init__(self, settings: MlflowSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        import httpx

        self.settings = settings
        self.where = f"MLflow at {display_url(settings.url)}"
        headers = settings.resolved_headers()  # ConfigError naming the variable when one is unset
        headers.setdefault("User-Agent", "modeldeck")
        self._http = httpx.Client(base_url=settings.url.rstrip("/") + API, headers=headers,
                                  timeout=httpx.Timeout(settings.timeout), follow_redirects=False,
                                  limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
                                  transport=transport)
        self.calls = 0  # requests sent (benchmarks count them)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------
    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        from modeldeck.core.http11 import describe_error

        limit = self.settings.max_body_bytes
        self.calls += 1
        try:
            with self._http.stream(method, path, params=params, json=body) as r:
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise MlflowError(f"{self.where}: {path} answered more than {limit} bytes; refused "
                                          f"([mlflow] max_body_bytes)")
                    chunks.append(chunk)
                status, content = r.status_code, b"".join(chunks)
        except httpx.TimeoutException:
            raise MlflowError(f"{self.where} did not answer {path} within {self.settings.timeout:g} s "
                              f"([mlflow] timeout)") from None
        except httpx.HTTPError as e:
            raise MlflowError(f"{self.where} cannot be reached: {describe_error(e)}") from None
        return self._answer(path, status, content)

    def _answer(self, path: str, status: int, content: bytes) -> dict[str, Any]:
        try:
            data = json.loads(content) if content.strip() else {}
        except ValueError:
            data = None
        message = ""
        code = ""
        if isinstance(data, Mapping):
            message = one_line(data.get("message", ""), 300)
            code = str(data.get("error_code", ""))
        if status in (401, 403):
            word = "unauthorized" if status == 401 else "forbidden"
            raise MlflowError(f"{self.where} refused modeldeck (HTTP {status} {word}): check the credentials "
                              f"in [mlflow] headers")
        if status == 404 and code == "RESOURCE_DOES_NOT_EXIST":
            raise MlflowNotFound(f"{self.where}: {message or 'not found'}")
        if status >= 400:
            detail = message or ("no JSON error" if data is None else "no message")
            kind = "failed" if status >= 500 else "refused the request"
            raise MlflowError(f"{self.where} {kind} (HTTP {status}{' ' + code if code else ''}): {detail}")
        if not isinstance(data, dict):
            raise MlflowError(f"{self.where}: {path} answered with something that is not a JSON object "
                              f"(is [mlflow] url the tracking server?)")
        return data

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, body=body)

    # -- models and versions ---------------------------------------------------------------------
    def search_models(self) -> list[MlModel]:
        out: list[MlModel] = []
        token = None
        for _ in range(10_000):
            d = self._get("registered-models/search", max_results=PAGE_MODELS, page_token=token)
            out += [MlModel.parse(m) for m in d.get("registered_models") or () if isinstance(m, Mapping)]
            token = d.get("next_page_token")
            if not token:
                break
        return out

    def get_model(self, name: str) -> MlModel:
        d = self._get("registered-models/get", name=name)
        return MlModel.parse(d.get("registered_model") or {})

    def search_versions(self, name: str | None = None) -> list[MlVersion]:
        """Every version of one model (``name``) or of every model (None), in any order."""
        flt = None
        if name is not None:
            if "'" in name and '"' in name:
                raise MlflowError(f"model name {one_line(name, 60)!r} has both quote characters: MLflow's "
                                  f"search cannot name it")
            flt = f"name=\"{name}\"" if "'" in name else f"name='{name}'"
        out: list[MlVersion] = []
        token = None
        for _ in range(10_000):
            d = self._get("model-versions/search", filter=flt, max_results=PAGE_VERSIONS, page_token=token)
            out += [MlVersion.parse(v) for v in d.get("model_versions") or () if isinstance(v, Mapping)]
            token = d.get("next_page_token")
            if not token:
                break
        return out

    def get_version(self, name: str, version: int) -> MlVersion:
        d = self._get("model-versions/get", name=name, version=str(int(version)))
        return MlVersion.parse(d.get("model_version") or {})

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at; None when the model has no such alias."""
        try:
            d = self._get("registered-models/alias", name=name, alias=alias)
        except MlflowNotFound:
            raise
        except MlflowError as e:
            # MLflow answers an unknown alias with 400 INVALID_PARAMETER_VALUE "... alias X not found"
            if "INVALID_PARAMETER_VALUE" in str(e) and "not found" in str(e):
                return None
            raise
        return _int((d.get("model_version") or {}).get("version"))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._post("registered-models/alias", {"name": name, "alias": alias, "version": str(int(version))})

    def delete_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", body={"name": name, "alias": alias})

    def create_model(self, name: str, description: str = "") -> MlModel:
        body: dict[str, Any] = {"name": name}
        if description:
            body["description"] = description
        return MlModel.parse(self._post("registered-models/create", body).get("registered_model") or {})

    def create_version(self, name: str, source: str, *, run_id: str | None = None,
                       tags: Mapping[str, str] | None = None, description: str = "") -> MlVersion:
        body: dict[str, Any] = {"name": name, "source": source}
        if run_id:
            body["run_id"] = run_id
        if tags:
            body["tags"] = [{"key": k, "value": v[:TAG_VALUE_LIMIT]} for k, v in tags.items()]
        if description:
            body["description"] = description
        return MlVersion.parse(self._post("model-versions/create", body).get("model_version") or {})

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._post("model-versions/set-tag", {"name": name, "version": str(int(version)), "key": key,
                                             "value": value[:TAG_VALUE_LIMIT]})

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self.call("DELETE", "model-versions/delete-tag", body={"name": name, "version": str(int(version)), "key": key})

    def get_run(self, run_id: str) -> RunLineage:
        return RunLineage.parse(self._get("runs/get", run_id=run_id))

    # -- runs (what ``register --artifact LOCAL_FILE`` and the demo log) --------------------------
    def experiment_id(self, name: str) -> str:
        try:
            d = self._get("experiments/get-by-name", experiment_name=name)
            return str((d.get("experiment") or {}).get("experiment_id"))
        except MlflowNotFound:
            return str(self._post("experiments/create", {"name": name}).get("experiment_id"))

    def log_run(self, experiment: str, *, name: str, params: Mapping[str, Any], metrics: Mapping[str, float],
                datasets: Sequence[Mapping[str, str]] = (), tags: Mapping[str, str] | None = None
                ) -> tuple[str, str, str]:
        """A finished run with its params, metrics and dataset inputs: (run_id, experiment_id,
        artifact_uri)."""
        eid = self.experiment_id(experiment)
        now = int(time.time() * 1000)
        d = self._post("runs/create", {"experiment_id": eid, "run_name": name, "start_time": now,
                                       "tags": [{"key": k, "value": v[:TAG_VALUE_LIMIT]} for k, v in (tags or {}).items()]})
        info = (d.get("run") or {}).get("info") or {}
        rid, uri = str(info.get("run_id") or ""), str(info.get("artifact_uri") or "")
        if not rid:
            raise MlflowError(f"{self.where}: runs/create answered no run id")
        batch_params = [{"key": str(k), "value": str(v)[:6000]} for k, v in params.items()]
        batch_metrics = [{"key": str(k), "value": float(v), "timestamp": now, "step": 0} for k, v in metrics.items()]
        for i in range(0, max(len(batch_params), len(batch_metrics), 1), 100):
            self._post("runs/log-batch", {"run_id": rid, "params": batch_params[i:i + 100],
                                          "metrics": batch_metrics[i:i + 100]})
        if datasets:
            self._post("runs/log-inputs", {"run_id": rid, "datasets": [
                {"tags": [{"key": "mlflow.data.context", "value": ds.get("context", "")}],
                 "dataset": {"name": ds.get("name", ""), "digest": ds.get("digest", ""), "source_type": "local",
                             "source": json.dumps({"uri": ds.get("source", "")})}} for ds in datasets]})
        self._post("runs/update", {"run_id": rid, "status": "FINISHED", "end_time": now})
        return rid, eid, uri

    def store_artifact(self, artifact_uri: str, local: str, subdir: str = "model") -> str:
        """Put a local file (or folder) into a run's artifacts; return its place there, the
        version's ``source``. A run whose artifacts are a folder on this machine gets a copy; one
        behind the tracking server's artifact proxy (``mlflow-artifacts:``) an upload."""
        import shutil
        from pathlib import Path
        from urllib.parse import quote, urlsplit

        src = Path(local).expanduser()
        if not src.exists():
            raise RegistryError(f"{local}: no such artifact file")
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        base = src.parent if src.is_file() else src
        if artifact_uri.startswith("file:") or artifact_uri.startswith("/"):
            root = Path(urlsplit(artifact_uri).path if artifact_uri.startswith("file:") else artifact_uri) / subdir
            try:
                for f in files:
                    dst = root / f.relative_to(base)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, dst)
            except OSError as e:
                raise MlflowError(f"{self.where}: cannot copy {local} into the run's artifacts {root}: "
                                  f"{e.strerror or e}") from None
            return str(root / src.name) if src.is_file() else str(root)
        if artifact_uri.startswith("mlflow-artifacts:"):
            path = artifact_uri.split(":", 1)[1].lstrip("/")
            for f in files:
                rel = f"{path}/{subdir}/{f.relative_to(base).as_posix()}"
                url = self.settings.url.rstrip("/") + "/api/2.0/mlflow-artifacts/artifacts/" + quote(rel)
                with open(f, "rb") as fh:
                    self.calls += 1
                    try:
                        r = self._http.put(url, content=fh.read())
                    except Exception as e:
                        from modeldeck.core.http11 import describe_error

                        raise MlflowError(f"{self.where}: uploading {f.name} failed: {describe_error(e)}") from None
                self._answer("mlflow-artifacts", r.status_code, r.content)
            return f"{artifact_uri.rstrip('/')}/{subdir}" + (f"/{src.name}" if src.is_file() else "")
        raise MlflowError(f"{self.where}: the run's artifacts live at {one_line(artifact_uri, 80)}, where modeldeck "
                          f"cannot put {local}: upload it yourself and pass --artifact URI (or --run-id)")


# ---------------------------------------------------------------------------------------------
# the registry: MLflow of record, the ledger on top


def _or_ledger(fn: Any) -> Any:
    """A read that falls back to the ledger's own copy while ``offline`` is set (MLflow down:
    the report and the TUI then show what the ledger last knew, saying so)."""
    import functools

    base = getattr(Registry, fn.__name__)

    @functools.wraps(fn)
    def read(self: MlflowRegistry, *a: Any, **kw: Any) -> Any:
        if self.offline:
            return base(self, *a, **kw)
        return fn(self, *a, **kw)

    return read


class MlflowRegistry(Registry):
    """A :class:`Registry` whose models, versions, lineage and aliases are MLflow's. The same
    methods, the same errors; MLflow faults raise :class:`MlflowError` (one line, exit 2)."""

    def __init__(self, path: Any, settings: MlflowSettings, *, create: bool = True, readonly: bool = False,
                 client: Client | None = None) -> None:
        super().__init__(path, create=create, readonly=readonly)
        self.ml = settings
        try:
            self.client = client or Client(settings)
        except BaseException:
            super().close()
            raise
        self._runs: dict[str, RunLineage] = {}  # read-only registries keep lineage here instead
        self._moved: tuple[str, str, int | None, int | None] | None = None
        self._ledger_only: bool = False
        self.offline = False  # True: reads answer from the ledger's copy (MLflow could not be used)

    def close(self) -> None:
        self.client.close()
        super().close()

    @property
    def where(self) -> str:
        return self.client.where

    # -- names ---------------------------------------------------------------------------------------
    def _check_wanted(self, model: str) -> None:
        if not self.ml.wants(model):
            listed = ", ".join(self.ml.models or ())
            raise NotFoundError(f"{model!r} is not one of the [mlflow] models ({one_line(listed, 120)})")

    def _not_found(self, model: str, e: MlflowNotFound | None = None) -> NotFoundError:
        return MlflowNotFound(f"no model named {model!r} in {self.where}" + (" (deleted there?)" if
                                                                              self._ledger_has(model) else ""))

    def _ledger_has(self, model: str) -> bool:
        return super().has_model(model)

    def alias_name(self, environment: str) -> str:
        alias = self.ml.alias_for(environment)
        if RESERVED_ALIAS.match(alias):
            raise RegistryError(f"environment {environment!r} would be MLflow alias {alias!r}, a name MLflow "
                                f"reserves (latest, v<digits>): map it in [mlflow] aliases")
        return alias

    def _envs(self, aliases: Mapping[str, int]) -> dict[str, int]:
        return {self.ml.environment_for(a): v for a, v in sorted(aliases.items())}

    # -- models ----------------------------------------------------------------------------------------
    @_or_ledger
    def models(self) -> list[Model]:
        found = [m for m in self.client.search_models() if self.ml.wants(m.name)]
        counts: dict[str, int] = {}
        latest: dict[str, int] = {}
        for v in self.client.search_versions(None):
            counts[v.name] = counts.get(v.name, 0) + 1
            latest[v.name] = max(latest.get(v.name, 0), v.version)
        ledger = {r["name"]: r for r in self._read("SELECT name, created_by FROM models")}
        self._record_external({m.name: m.aliases for m in found})
        return [Model(name=m.name, created_at=m.created_at, created_by=ledger[m.name]["created_by"]
                      if m.name in ledger else (m.user_id or "mlflow"), description=m.description,
                      latest_version=latest.get(m.name, m.latest_version), n_versions=counts.get(m.name, 0),
                      aliases=self._envs(m.aliases)) for m in sorted(found, key=lambda m: m.name)]

    def _ml_model(self, name: str) -> MlModel:
        self._check_wanted(name)
        try:
            return self.client.get_model(name)
        except MlflowNotFound:
            raise self._not_found(name) from None

    @_or_ledger
    def model(self, name: str) -> Model:
        m = self._ml_model(name)
        versions = self.client.search_versions(name)
        row = self._read("SELECT created_by FROM models WHERE name=?", (name,))
        self._record_external({name: m.aliases})
        return Model(name=m.name, created_at=m.created_at, created_by=row[0][0] if row else (m.user_id or "mlflow"),
                     description=m.description, latest_version=max((v.version for v in versions), default=None),
                     n_versions=len(versions), aliases=self._envs(m.aliases))

    @_or_ledger
    def has_model(self, name: str) -> bool:
        if not self.ml.wants(name):
            return False
        try:
            self.client.get_model(name)
        except MlflowNotFound:
            return False
        return True

    @_or_ledger
    def _unknown_model(self, name: str) -> str:
        return str(self._not_found(name))

    # -- versions --------------------------------------------------------------------------------------
    @_or_ledger
    def versions(self, model: str) -> list[Version]:
        self._check_wanted(model)
        mvs = self.client.search_versions(model)
        if not mvs:
            self._ml_model(model)  # unknown model -> NotFoundError naming it
            return []
        rows = self._ledger_rows(model)
        self._mirror(model, [mv for mv in mvs if mv.version not in rows], rows)
        return [self._merge(mv, rows.get(mv.version)) for mv in sorted(mvs, key=lambda v: v.version)]

    @_or_ledger
    def version(self, model: str, version: int) -> Version:
        self._check_wanted(model)
        try:
            mv = self.client.get_version(model, int(version))
        except MlflowNotFound:
            if not self.has_model(model):
                raise self._not_found(model) from None
            raise MlflowNotFound(f"model {model} has no version {version} in {self.where}") from None
        rows = self._ledger_rows(model, [mv.version])
        if mv.version not in rows:
            self._mirror(model, [mv], rows)
        return self._merge(mv, rows.get(mv.version))

    @_or_ledger
    def _no_version(self, model: str, version: int) -> str:
        return f"model {model} has no version {version} in {self.where}"

    def _ledger_rows(self, model: str, only: Sequence[int] | None = None) -> dict[int, Any]:
        sql = "SELECT * FROM versions WHERE model=?"
        params: list[Any] = [model]
        if only is not None:
            sql += f" AND version IN ({', '.join('?' * len(only))})"
            params += [int(n) for n in only]
        return {r["version"]: r for r in self._read(sql, params)}

    def _lineage(self, run_id: str | None) -> RunLineage | None:
        if not run_id:
            return None
        hit = self._runs.get(run_id)
        if hit is None:
            try:
                hit = self.client.get_run(run_id)
            except MlflowNotFound:
                hit = RunLineage(run_id=run_id, status="DELETED")
            self._runs[run_id] = hit
        return hit

    def _mirror(self, model: str, mvs: Sequence[MlVersion], rows: dict[int, Any]) -> None:
        """Keep the ledger's copy of versions it has not seen (lineage read once from their
        runs), so approvals, evaluations and history can refer to them. Read-only: lineage stays
        in memory instead. Not audited: MLflow registered them, modeldeck only looked."""
        if not mvs:
            return
        lineages = {mv.version: self._lineage(mv.run_id) for mv in mvs}
        if self.readonly:
            return
        p = self.ml.tag_prefix
        at = utcnow()
        with self._write() as c:
            if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
                c.execute("INSERT INTO models(name, created_at, created_by, description) VALUES (?,?,?,?)",
                          (model, at, "mlflow", ""))
            for mv in mvs:
                if c.execute("SELECT 1 FROM versions WHERE model=? AND version=?", (model, mv.version)).fetchone():
                    continue
                lin = lineages[mv.version]
                row = {"model": model, "version": mv.version, "artifact": mv.source or "-",
                       "created_at": mv.created_at or at,
                       "created_by": mv.tags.get(p + "registered_by") or mv.user_id or (lin.user_id if lin else "")
                       or "mlflow",
                       "dataset_path": _training(lin, "source"), "dataset_sha256": mv.tags.get(p + "dataset_sha256"),
                       "reference_path": mv.tags.get(p + "reference"),
                       "code_version": mv.tags.get(p + "code_version") or (lin.code_version if lin else None),
                       "params": _dumps(dict(lin.params) if lin else {}),
                       "metrics": _dumps(dict(lin.metrics) if lin else {}), "tags": "{}", "approval": "pending",
                       "run_id": mv.run_id, "datasets": _dumps(list(lin.datasets) if lin else [])}
                c.execute(f"INSERT INTO versions({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          list(row.values()))
                if lin and lin.metrics:
                    self._insert_evaluations(model, mv.version, lin.metrics, None, None, None, "register",
                                             row["created_at"], row["created_by"])
        rows.update(self._ledger_rows(model, [mv.version for mv in mvs]))

    def _merge(self, mv: MlVersion, row: Any) -> Version:
        """A modeldeck Version: MLflow's version and tags, the lineage, the ledger's approval."""
        p = self.ml.tag_prefix
        tags = {k: v for k, v in mv.tags.items() if not k.startswith(p)}
        if row is not None:
            return Version(model=mv.name, version=mv.version, artifact=mv.source or row["artifact"],
                           created_at=mv.created_at or row["created_at"], created_by=row["created_by"],
                           dataset_path=row["dataset_path"], dataset_sha256=row["dataset_sha256"],
                           reference_path=row["reference_path"], code_version=row["code_version"],
                           params=_loads(row["params"], {}), metrics=_loads(row["metrics"], {}), tags=tags,
                           approval=row["approval"], approval_reason=row["approval_reason"],
                           approval_by=row["approval_by"], approval_at=row["approval_at"], job_id=row["job_id"],
                           run_id=mv.run_id, datasets=tuple(_loads(row["datasets"], []) or ()))
        lin = self._lineage(mv.run_id)
        return Version(model=mv.name, version=mv.version, artifact=mv.source, created_at=mv.created_at,
                       created_by=mv.tags.get(p + "registered_by") or mv.user_id or "mlflow",
                       dataset_path=_training(lin, "source"), dataset_sha256=mv.tags.get(p + "dataset_sha256"),
                       reference_path=mv.tags.get(p + "reference"),
                       code_version=mv.tags.get(p + "code_version") or (lin.code_version if lin else None),
                       params=dict(lin.params) if lin else {}, metrics=dict(lin.metrics) if lin else {}, tags=tags,
                       run_id=mv.run_id, datasets=tuple(lin.datasets) if lin else ())

    # -- writes: MLflow first, then the ledger ------------------------------------------------------
    def register(self, model: str, artifact: str | None = None, *, run_id: str | None = None,
                 params: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
                 code_version: str | None = None, **kw: Any) -> Version:
        """Create MLflow version N of ``model`` (the registered model on first use) from
        ``artifact`` (its ``source``) and/or ``run_id`` (default source ``runs:/RUN/model``),
        then the ledger's version N. A run's params, metrics and git commit are the lineage
        (what is given here wins); the rest modeldeck records goes on the version as tags under
        ``tag_prefix`` too, so another modeldeck reading this MLflow sees it."""
        self._check_wanted(model)
        if self.readonly:
            raise RegistryError(f"{self.path}: opened read-only")
        lin = None
        if run_id:
            try:
                lin = self.client.get_run(run_id)
            except MlflowNotFound:
                raise MlflowNotFound(f"no run {one_line(run_id, 40)!r} in {self.where} (--run-id)") from None
            params = {**lin.params, **(params or {})}
            metrics = {**lin.metrics, **(metrics or {})}
            code_version = code_version or lin.code_version
        if artifact and not run_id and _is_local(artifact):
            # MLflow takes a local file only inside a run's artifacts: log a run with the lineage
            run_id, artifact = self._run_for(model, artifact, params, metrics, code_version, kw)
            lin = self.client.get_run(run_id)
            params = {**lin.params, **(params or {})}
            metrics = {**lin.metrics, **(metrics or {})}
        if not artifact and run_id:
            artifact = f"runs:/{run_id}/model"
        if not artifact or not str(artifact).strip():
            raise RegistryError("give --artifact URI (the version's source) or --run-id RUN (the MLflow run it "
                                "comes from; source runs:/RUN/model), or both")
        self._pending_run = lin
        try:
            return super().register(model, artifact or "", run_id=run_id, params=params or None,
                                    metrics=metrics or None, code_version=code_version, **kw)
        finally:
            self._pending_run = None

    _pending_run: RunLineage | None = None

    def _run_for(self, model: str, artifact: str, params: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None,
                 code_version: str | None, kw: Mapping[str, Any]) -> tuple[str, str]:
        """A run in experiment ``modeldeck`` holding a local artifact and its lineage (the
        dataset inputs are the training and evaluation data, by SHA-256), for
        ``register --artifact LOCAL_FILE``: (run_id, the artifact's place in the run)."""
        from urllib.parse import urlsplit

        from modeldeck.core.registry import current_actor, sha256_file

        if artifact.startswith("file:"):
            artifact = urlsplit(artifact).path
        datasets = []
        for key, context in (("dataset", "training"), ("eval_dataset", "evaluation")):
            path = kw.get(key)
            if path and "://" not in str(path):
                digest = (kw.get("dataset_sha256") if key == "dataset" else None) or sha256_file(path)
                datasets.append({"name": str(path).rsplit("/", 1)[-1], "digest": digest[:16], "context": context,
                                 "source": str(path)})
        tags = {"mlflow.runName": f"{model} (modeldeck register)", "mlflow.user": kw.get("actor") or current_actor()}
        if code_version:
            tags["mlflow.source.git.commit"] = str(code_version)
        numbers = {k: v for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}
        rid, _eid, uri = self.client.log_run("modeldeck", name=tags["mlflow.runName"], params=params or {},
                                             metrics=numbers, datasets=datasets, tags=tags)
        return rid, self.client.store_artifact(uri, artifact)

    def _register_row(self, model: str, n: int | None, row: dict[str, Any], **kw: Any) -> Version:
        if n is not None:  # a retry, or a caller that numbered it
            return super()._register_row(model, n, row, **kw)
        p = self.ml.tag_prefix
        actor = kw["actor"]
        tags = dict(kw["tags"])
        for key, value in (("registered_by", actor), ("dataset_sha256", row.get("dataset_sha256")),
                           ("dataset", row.get("dataset_path")), ("code_version", row.get("code_version")),
                           ("reference", row.get("reference_path")), ("job_id", row.get("job_id"))):
            if value is not None:
                tags[p + key] = str(value)
        try:
            self.client.get_model(model)
        except MlflowNotFound:
            self.client.create_model(model, kw.get("description") or "")
        mv = self.client.create_version(model, row["artifact"], run_id=row.get("run_id"), tags=tags,
                                        description=kw.get("reason") or "")
        lin = self._pending_run
        row = {**row, "artifact": mv.source or row["artifact"],
               "datasets": _dumps(list(lin.datasets) if lin else []),
               "dataset_path": row.get("dataset_path") or _training(lin, "source"),
               "created_at": mv.created_at or row["created_at"]}
        return retry_ledger(lambda: super(MlflowRegistry, self)._register_row(model, mv.version, row, **kw),
                            f"{self.where} has {model} version {mv.version} (just created)")

    def _ensure_version(self, model: str, version: int) -> Version:
        """The version from MLflow, with the ledger's row for it (made when missing)."""
        return self.version(model, version)

    def _set_approval(self, model: str, version: int, state: str, reason: str, actor: str | None,
                      force: bool = False) -> Version:
        self._ensure_version(model, version)
        return super()._set_approval(model, version, state, reason, actor, force)

    def _apply_approval(self, model: str, version: int, state: str, reason: str, actor: str,
                        deciders: list[str]) -> None:
        """The decision as MLflow version tags: ``approval``, ``approval_reason`` and
        ``approved_by`` (``rejected_by`` for a rejection) under ``tag_prefix``. Raising here
        (MLflow refused) writes nothing to the ledger."""
        p = self.ml.tag_prefix
        who = ", ".join(deciders)
        self.client.set_version_tag(model, version, p + "approval", state)
        self.client.set_version_tag(model, version, p + "approval_reason", reason)
        if state == "approved":
            self.client.set_version_tag(model, version, p + "approved_by", who)
            with contextlib.suppress(MlflowNotFound):
                self.client.delete_version_tag(model, version, p + "rejected_by")
        else:
            self.client.set_version_tag(model, version, p + "rejected_by", who)
            with contextlib.suppress(MlflowNotFound):
                self.client.delete_version_tag(model, version, p + "approved_by")

    def tag(self, model: str, version: int, key: str, value: str | None, actor: str | None = None,
            reason: str = "") -> Version:
        if key.startswith(self.ml.tag_prefix):
            raise RegistryError(f"tag {one_line(key, 60)!r}: names under {self.ml.tag_prefix!r} are modeldeck's own "
                                f"([mlflow] tag_prefix)")
        v = self._ensure_version(model, version)
        if not self.readonly:  # the ledger's copy of the tags is MLflow's, so the audit shows the real before
            with self._write() as c:
                c.execute("UPDATE versions SET tags=? WHERE model=? AND version=?",
                          (_dumps(dict(v.tags)), model, int(version)))
        return super().tag(model, version, key, value, actor, reason)

    def _apply_tag(self, model: str, version: int, key: str, value: str | None) -> None:
        if value is None:
            with contextlib.suppress(MlflowNotFound):
                self.client.delete_version_tag(model, version, key)
        else:
            self.client.set_version_tag(model, version, key, value)

    def record_evaluation(self, model: str, version: int, metrics: Mapping[str, Any], **kw: Any) -> Any:
        self._ensure_version(model, version)
        return super().record_evaluation(model, version, metrics, **kw)

    def create_job(self, model: str, **kw: Any) -> Any:
        self._ensure_model_row(model)
        return super().create_job(model, **kw)

    def set_policy(self, model: str, rules: Mapping[str, Any], reason: str, **kw: Any) -> Any:
        self._ensure_model_row(model)
        return super().set_policy(model, rules, reason, **kw)

    def _ensure_model_row(self, model: str) -> None:
        if self._ledger_has(model):
            return
        m = self._ml_model(model)
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO models(name, created_at, created_by, description) VALUES (?,?,?,?)",
                      (model, m.created_at or utcnow(), m.user_id or "mlflow", m.description))

    # -- alias moves: read, check, set, read back; then the ledger -----------------------------------
    def _move(self, model: str, version: int | None, environment: str, reason: str, action: str,
              expect: int | str | None, actor: str | None, force: bool, details: Mapping[str, Any] | None,
              undo: bool = False, rollout_id: int | None = None) -> AliasChange:
        """Promote / rollback (the seam every release goes through, rollouts too: move an alias
        with a check of what it held). Outside moves are recorded first, so the ledger's
        "current" is MLflow's; then, in the ledger's write transaction, :meth:`_apply_move`
        moves the MLflow alias; the ledger's rows follow. MLflow refusing writes nothing."""
        self._prepare_move(model, environment)
        if version is not None:
            self._ensure_version(model, int(version))
        else:
            self.versions(model)  # a rollback's target comes from the history: every version has a row
        return self._guarded(model, environment, lambda: super(MlflowRegistry, self)._move(
            model, version, environment, reason, action, expect, actor, force, details, undo, rollout_id))

    def unset_alias(self, model: str, environment: str, reason: str, *, expect: int | str | None = "current",
                    actor: str | None = None, details: Mapping[str, Any] | None = None) -> AliasChange:
        self._prepare_move(model, environment)
        return self._guarded(model, environment, lambda: super(MlflowRegistry, self).unset_alias(
            model, environment, reason, expect=expect, actor=actor, details=details))

    def _prepare_move(self, model: str, environment: str) -> None:
        if self.offline:
            raise MlflowError(f"{self.where} could not be used: nothing moves while it cannot be read")
        if self.readonly:
            raise RegistryError(f"{self.path}: opened read-only")
        self._check_wanted(model)
        self.alias_name(environment)  # a reserved alias name: refused before anything is read
        self.sync_aliases([model])

    def _guarded(self, model: str, environment: str, write: Any) -> AliasChange:
        """Run a ledger move; when it fails after MLflow's alias moved, retry the ledger's side
        (MLflow is only checked, not moved again), then raise LedgerCritical."""
        self._moved = None
        try:
            return write()  # type: ignore[no-any-return]
        except BaseException:
            moved = self._moved
            if moved is None:
                raise
            _m, _e, _before, target = moved
            alias = self.ml.alias_for(environment)
            now = "removed" if target is None else f"points at version {target}"
            self._ledger_only = True
            try:
                return retry_ledger(write, f"{self.where}: alias {alias!r} of {model} {now} (moved by modeldeck)")  # type: ignore[no-any-return]
            except LedgerCritical as e:
                raise LedgerCritical(f"{e}; the next poll records it as a move made outside modeldeck") from None
            finally:
                self._ledger_only = False
        finally:
            self._moved = None

    def _apply_move(self, model: str, environment: str, current: int | None, target: int | None) -> None:
        """In the ledger's write transaction: read the MLflow alias, check it still holds what
        the ledger does (MLflow has no compare-and-set: between this read and the set below
        another writer can still move it, which the read-back then shows), set or remove it,
        read it back."""
        alias = self.alias_name(environment)
        now = self.client.alias_version(model, alias)
        if self._ledger_only:  # a retry of the ledger's side: MLflow must still hold what modeldeck set
            if now != target:
                raise ConflictError(f"alias {alias!r} of {model} moved again in MLflow (now {_v(now)})")
            return
        if now != current:
            raise ConflictError(f"{environment} of {model} is {_v(now)} in {self.where} (alias {alias!r}), not "
                                f"{_v(current)}: it moved outside modeldeck just now; nothing was changed; look again "
                                f"and retry")
        try:
            if target is None:
                self.client.delete_alias(model, alias)
            else:
                self.client.set_alias(model, alias, target)
        except MlflowError as e:
            # the request may have been applied (a timeout): only a read-back tells
            try:
                back = self.client.alias_version(model, alias)
            except MlflowError:
                raise MlflowError(f"{e}; MLflow may or may not have moved alias {alias!r}; the ledger records "
                                  f"nothing, and the next poll records what MLflow holds") from None
            if back != target:
                raise
        self._moved = (model, environment, current, target)
        back = self.client.alias_version(model, alias)
        if back != target:
            self._moved = None  # not modeldeck's move any more: the next poll records what MLflow holds
            raise ConflictError(f"alias {alias!r} of {model} read back as {_v(back)} right after modeldeck set it to "
                                f"{_v(target)}: another writer moved it at the same moment; the ledger records "
                                f"nothing; look again")

    # -- aliases ---------------------------------------------------------------------------------------
    @_or_ledger
    def aliases(self, model: str) -> dict[str, int]:
        m = self._ml_model(model)
        self._record_external({model: m.aliases})
        return self._envs(m.aliases)

    @_or_ledger
    def alias(self, model: str, environment: str) -> int | None:
        self._check_wanted(model)
        try:
            return self.client.alias_version(model, self.alias_name(environment))
        except MlflowNotFound:
            raise self._not_found(model) from None

    @_or_ledger
    def all_aliases(self) -> dict[tuple[str, str], int]:
        """Every (model, environment) -> version, from one paged model search; moves made
        outside modeldeck since the last look are recorded in the ledger (when writable)."""
        found = {m.name: m.aliases for m in self.client.search_models() if self.ml.wants(m.name)}
        self._record_external(found)
        return {(name, env): v for name, aliases in found.items() for env, v in self._envs(aliases).items()}

    @_or_ledger
    def environments(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (model, env), _v in sorted(self.all_aliases().items()):
            out.setdefault(env, []).append(model)
        return out

    def sync_aliases(self, models: Iterable[str] | None = None) -> list[AliasChange]:
        """Read the aliases of ``models`` (None: every model) from MLflow and record in the
        ledger each move made outside modeldeck (action ``external``, actor ``unknown``)."""
        if models is None:
            found = {m.name: m.aliases for m in self.client.search_models() if self.ml.wants(m.name)}
        else:
            found = {name: self._ml_model(name).aliases for name in models}
        return self._record_external(found)

    @_or_ledger
    def history(self, model: str, environment: str | None = None, *, limit: int | None = None) -> list[AliasChange]:
        if not self.readonly:
            self.sync_aliases([model])
        elif not self.has_model(model):
            raise self._not_found(model)
        return super()._history_rows(model, environment, limit)

    def _record_external(self, found: Mapping[str, Mapping[str, int]]) -> list[AliasChange]:
        """Compare MLflow's aliases (model -> {alias: version}) with the ledger's; record each
        difference, confirmed by asking MLflow again under the ledger's write lock (a move by
        modeldeck holds that lock from MLflow's change to the ledger's, so it is never taken for
        an outside one)."""
        if self.readonly or not found:
            return []
        ledger: dict[tuple[str, str], int] = {}
        for r in self._read("SELECT model, environment, version FROM aliases"):
            if r[0] in found:
                ledger[(r[0], r[1])] = r[2]
        seen = {(name, env): v for name, aliases in found.items() for env, v in self._envs(aliases).items()}
        diffs = sorted(k for k in set(ledger) | set(seen) if ledger.get(k) != seen.get(k))
        if not diffs:
            return []
        out: list[AliasChange] = []
        at = utcnow()
        with self._write() as c:
            for model, env in diffs:
                row = c.execute("SELECT version FROM aliases WHERE model=? AND environment=?", (model, env)).fetchone()
                before = row[0] if row else None
                try:
                    now = self.client.alias_version(model, self.ml.alias_for(env))
                except MlflowNotFound:
                    continue  # the model was deleted meanwhile: a fault, not a move
                if now == before:
                    continue
                if now is not None and not c.execute("SELECT 1 FROM versions WHERE model=? AND version=?",
                                                     (model, now)).fetchone():
                    self._mirror_in(c, model, now)
                reason = ("found in MLflow when modeldeck first looked" if before is None and not
                          c.execute("SELECT 1 FROM alias_history WHERE model=? AND environment=?", (model, env)).fetchone()
                          else "moved outside modeldeck (found in MLflow)")
                change = self._write_alias(c, model, env, before, now, "external", EXTERNAL_ACTOR, at, reason,
                                           {"mlflow_alias": self.ml.alias_for(env), "detected_at": at})
                out.append(change)
        return out

    def _mirror_in(self, c: Any, model: str, version: int) -> None:
        """Inside a write transaction: a ledger row for a version an alias points at."""
        if not c.execute("SELECT 1 FROM models WHERE name=?", (model,)).fetchone():
            c.execute("INSERT INTO models(name, created_at, created_by, description) VALUES (?,?,?,?)",
                      (model, utcnow(), "mlflow", ""))
        try:
            mv = self.client.get_version(model, version)
        except MlflowNotFound:
            mv = MlVersion(model, version, "-", None, {}, utcnow(), "", "")
        c.execute("INSERT OR IGNORE INTO versions(model, version, artifact, created_at, created_by, approval, run_id) "
                  "VALUES (?,?,?,?,?,?,?)", (model, version, mv.source or "-", mv.created_at or utcnow(),
                                             mv.user_id or "mlflow", "pending", mv.run_id))


def _is_local(artifact: str) -> bool:
    """A path on this machine (no URI scheme, or file:)."""
    a = str(artifact)
    return a.startswith("file:") or ("://" not in a and ":/" not in a[:20])


def _v(version: int | None) -> str:
    return "unset" if version is None else f"version {version}"


def _training(lin: RunLineage | None, key: str) -> str | None:
    if lin is None:
        return None
    for d in lin.datasets:
        if d.get("context") in ("training", "train"):
            return d.get(key) or None
    return lin.datasets[0].get(key) or None if lin.datasets else None


@contextlib.contextmanager
def _noop() -> Iterator[None]:
    yield


def retry_ledger(write: Any, describe: str) -> Any:
    """Run ``write`` (a ledger write after MLflow already changed) until it succeeds, a few
    times; then raise LedgerCritical saying what MLflow holds and the ledger does not."""
    last: BaseException | None = None
    for pause in (0.0, *LEDGER_RETRIES):
        if pause:
            time.sleep(pause)
        try:
            return write()
        except (RegistryError, OSError, sqlite3.Error) as e:
            last = e
    raise LedgerCritical(f"CRITICAL: {describe}, but the ledger could not record it after "
                         f"{len(LEDGER_RETRIES) + 1} tries ({one_line(last, 200)})")
