"""TOML config -> typed, immutable settings. Every error names the file and the key.

Relative paths resolve against the config file's folder. ``${VAR}`` in header values and
secrets expands from the environment when used (``expand``), never at load time, so the
expanded values never sit in a settings object that might be logged or stored.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modeldeck.core import paths
from modeldeck.core.errors import ConfigError
from modeldeck.core.textfmt import one_line, visible

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_CONFIG = "MODELDECK_CONFIG"
ENV_REGISTRY = "MODELDECK_REGISTRY"  # set for pipelines started by modeldeck; --registry wins
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, where: str = "") -> str:
    """Expand ``${VAR}`` from the environment. A missing variable is a ConfigError that
    names the variable and the key, never the value."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set" if where
                              else f"environment variable {name} is not set")
        return os.environ[name]

    return _VAR.sub(sub, value)


# RFC 9110 field names are tokens; values may hold visible characters, spaces and tabs only. CR, LF
# and NUL would let a value (or a variable expanded into it) end the header and smuggle another
# one, or a second request, onto the connection.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_URL = re.compile(r"[\x00-\x20\x7f]")


def header_problem(name: str, value: str) -> str | None:
    """Why a header cannot be sent (None: it can): a name that is not an HTTP token, or a value
    holding CR, LF, NUL or another control character. Never quotes the value."""
    if not _TOKEN.match(name):
        return f"{name!r} is not a valid HTTP header name"
    m = _BAD_VALUE.search(value)
    if m:
        return f"the value holds a control character ({visible(m.group())}); CR, LF and NUL are refused"
    return None


def check_header(name: str, value: str, where: str) -> str:
    """``value`` when it can be sent as header ``name``, else a ConfigError naming ``where``."""
    why = header_problem(name, value)
    if why:
        raise ConfigError(f"{where}: {why}" if where else why)
    return value


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable http(s) URL (None: it is): spaces or control characters
    (CR/LF would split the request line), no host, or a port that is not a number."""
    m = _BAD_URL.search(url)
    if m:
        return f"must not contain spaces or control characters ({visible(m.group())})"
    if not re.match(r"^https?://[^/\s?#]+", url, re.I):
        return "must be an http:// or https:// URL"
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if not u.hostname:
        return "has no host name"
    return None


def mentions_variables(value: str) -> bool:
    return bool(_VAR.search(value))


# ---------------------------------------------------------------------------------------------
# settings values


@dataclass(frozen=True)
class PollSettings:
    interval: float = 2.0  # seconds between polls of one endpoint
    timeout: float = 1.0  # per request
    metrics_interval: float = 0.0  # 0 -> same as interval
    drift_every: int = 5  # compare the live window every N polls
    drift_window: int = 1000  # the last N captured records form the live window
    history: int = 300  # snapshots kept in memory per endpoint (sparklines, trends)
    store_interval: float = 30.0  # seconds between snapshot writes to the registry (0: never)
    retention_hours: float = 168.0  # stored snapshots older than this are pruned
    max_body_bytes: int = 1 << 20  # health and metadata answers larger than this are cut off
    max_metrics_bytes: int = 8 << 20
    max_capture_bytes: int = 256 << 20  # a capture, labels or reference file (local or URL) read whole
    max_backoff: float = 30.0  # an endpoint that stays down is retried at most this far apart
    quality_every: int = 15  # measure quality (endpoints with capture and labels) every N polls (0: never)
    quality_scan: int = 5000  # the newest N captured records are joined with the labels

    @property
    def effective_metrics_interval(self) -> float:
        return self.metrics_interval or self.interval


@dataclass(frozen=True)
class Thresholds:
    error_ratio_warn: float = 0.05
    error_ratio_crit: float = 0.20
    p95_ms_warn: float = 500.0
    p95_ms_crit: float = 2000.0
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    missing_jump: float = 0.10  # missing share in current minus reference
    drift_share: float = 0.5  # share of drifted columns that makes dataset drift


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str | None = None  # may hold ${VAR}; signs the body with HMAC-SHA256
    headers: Mapping[str, str] = field(default_factory=dict)  # values may hold ${VAR}
    status_url: str | None = None  # retrain: polled until the run ends ({run_id} templated)
    poll_interval: float = 5.0
    timeout: float = 10.0


@dataclass(frozen=True)
class HookConfig:
    command: tuple[str, ...] | None = None  # argv, templated, never through a shell
    webhook: WebhookConfig | None = None
    timeout: float = 600.0


@dataclass(frozen=True)
class GateConfig:
    """Champion/challenger metric gate, as MLflow's MetricThreshold."""

    metric: str
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None
    greater_is_better: bool = True


# Release rules: the keys a [models.X] table and a registry policy share. Each is a dataclass
# field made with rule(); its metadata says how to read it and which way is stricter, so the
# policy code (core/policy.py) reads, merges and checks every rule key without a list of its own:
# a new rule is one more field here (and its use where it applies).
#   stricter: "higher" (a larger number is stricter), "lower", "true" (true is stricter),
#             "same" (a config may set it only where the policy leaves it unset, or to the same
#             value), "gates" and "environments" (merged by core/policy.py)
#   kind:     "seconds" / "number" (>= 0), "count" (a whole number >= 0), "flag", "text"
RULE_KINDS = ("seconds", "number", "count", "flag", "text")


def rule(default: Any, stricter: str, kind: str, help: str,
         check: Callable[[Any], str | None] | None = None) -> Any:
    """A release-rule field (see above). ``check(value)`` returns why a value is refused (None:
    fine), for limits the kind does not say (a share below 1, a ratio of at least 1)."""
    meta = {"rule": stricter, "kind": kind, "help": help, "check": check}
    if isinstance(default, (dict, tuple)) and not default:
        factory = type(default)
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def rule_fields(cls: type) -> dict[str, Any]:
    """The rule fields of a dataclass (ModelConfig, EnvironmentRules): name -> dataclass field."""
    return {f.name: f for f in fields(cls) if "rule" in f.metadata}


@dataclass(frozen=True)
class EnvironmentRules:
    """Rules for one environment (``[models.X.environments.NAME]``, or ``[environments.NAME]``
    in a policy file)."""

    approvals: int = rule(0, "higher", "count", "distinct approvers a promotion needs (production: at least 1)")
    approver_is_not_promoter: bool = rule(False, "true", "flag",
                                          "the promoter's own approval does not count (four eyes)")
    explicit: frozenset[str] = frozenset()  # the keys written (the rest are defaults)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    retrain: HookConfig | None = None
    deploy: HookConfig | None = None
    evaluate: HookConfig | None = None  # argv printing a JSON object of metrics on its last line
    gates: tuple[GateConfig, ...] = rule((), "gates", "gates", "champion/challenger metric gates")
    eval_data: str | None = rule(None, "same", "text", "data both versions are evaluated on when they share "
                                 "none: a path, a glob, or 'recent' (the newest labelled rows)")
    eval_rows: int = rule(1000, "higher", "count", "rows of 'recent' evaluation data")
    verify_timeout: float = rule(60.0, "lower", "seconds", "endpoints must serve the new version within this")
    bake_seconds: float = rule(60.0, "higher", "seconds", "then watched this long before the release counts as done")
    bake_max_seconds: float = rule(0.0, "higher", "seconds", "with too little traffic to judge, the bake extends up to "
                                   "this, then ends unverified (0: three times bake_seconds)")
    bake_min_requests: int = rule(30, "higher", "count", "requests of the new version the bake needs to judge it")
    bake_error_margin: float = rule(0.02, "lower", "number", "the new error ratio may exceed the old version's "
                                    "baseline by this much (more fails when significant at 0.01)",
                                    check=lambda v: None if v < 1 else "must be below 1 (a share of requests)")
    p95_ratio: float = rule(2.0, "lower", "number", "the new p95 latency may be at most this many times the old "
                            "version's baseline", check=lambda v: None if v >= 1 else "must be at least 1")
    environments: Mapping[str, EnvironmentRules] = rule({}, "environments", "environments",
                                                        "per-environment rules ([environments.NAME])")
    # Model quality from delayed ground truth (core/quality.py); a policy may carry them too.
    problem_type: str | None = rule(None, "same", "text", "classification or regression (default: classification)",
                                    check=lambda v: None if v in ("classification", "regression") else
                                    f"must be \"classification\" or \"regression\", not {v!r}")
    prediction_column: str | None = rule(None, "same", "text", "the captured output holding the prediction "
                                         "(default: prediction)")
    probability_column: str | None = rule(None, "same", "text", "the captured output holding the probability of "
                                          "the positive label (default: probability)")
    positive_label: str | None = rule(None, "same", "text", "the positive class (default: 1)")
    quality_window: int = rule(1000, "same", "count", "the newest labelled rows quality is measured on",
                               check=lambda v: None if v >= 1 else "must be at least 1")
    quality_min_rows: int = rule(200, "lower", "count", "fewer labelled rows than this: not enough labels, "
                                 "no verdict", check=lambda v: None if v >= 1 else "must be at least 1")
    quality_drop: float = rule(0.05, "lower", "number", "live quality this far (absolute) below the registered "
                               "metric, its interval too, is a warning; twice that is critical")
    retrain_cooldown: float = 6 * 3600.0  # --retrain-on-drift starts at most one job per this
    explicit: frozenset[str] = frozenset()  # the rule keys written in the config (the rest are defaults)

    def environment(self, name: str) -> EnvironmentRules:
        return self.environments.get(name) or EnvironmentRules()


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    model: str
    url: str
    environment: str = "production"
    served_model: str = ""
    metrics_url: str = ""
    capture: str | None = None
    labels: str | None = None  # ground truth for the captured requests (core.capture.read_labels)
    label_id_column: str | None = None  # plain label (and capture) files: the id column to join on
    label_column: str = "label"  # plain label files: the label column
    headers: Mapping[str, str] = field(default_factory=dict)  # values may hold ${VAR}
    metrics_profile: str | None = None  # mlserver, triton, torchserve, bentoml, kserve, demo; None: detect
    thresholds: Thresholds = field(default_factory=Thresholds)
    metrics: str = "scrape"  # "scrape": read metrics_url; "prometheus": PromQL through [prometheus]
    selector: str = ""  # label matchers added to every PromQL query ('{namespace="prod"}'), normalised
    discovered: str | None = None  # the [[discover]] block this endpoint came from (its name)

    @property
    def via_prometheus(self) -> bool:
        return self.metrics == "prometheus"

    def resolved_headers(self) -> dict[str, str]:
        """The headers with ``${VAR}`` expanded now; a value that holds CR, LF or NUL after
        expansion is a ConfigError (naming the header and never the value)."""
        out = {}
        for k, v in self.headers.items():
            where = f"endpoint {self.name}: header {k}"
            out[k] = check_header(k, expand(v, where), where)
        return out


RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.I)  # MLflow refuses these alias names


@dataclass(frozen=True)
class MlflowSettings:
    """``[mlflow]``: MLflow's Model Registry as the registry of record (models, versions,
    lineage, aliases); the local registry file stays the ledger on top."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # values may hold ${VAR}
    models: tuple[str, ...] | None = None  # None: every registered model
    aliases: Mapping[str, str] = field(default_factory=dict)  # environment -> MLflow alias
    tag_prefix: str = "modeldeck."
    timeout: float = 5.0  # seconds per request
    max_body_bytes: int = 32 << 20  # an answer larger than this is refused

    def alias_for(self, environment: str) -> str:
        return self.aliases.get(environment, environment)

    def environment_for(self, alias: str) -> str:
        for env, a in self.aliases.items():
            if a == alias:
                return env
        return alias

    def resolved_headers(self) -> dict[str, str]:
        return {k: check_header(k, expand(v, f"[mlflow] headers.{k}"), f"[mlflow] headers.{k}")
                for k, v in self.headers.items()}

    def wants(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True)
class PrometheusConfig:
    """``[prometheus]``: the Prometheus (or Thanos, Mimir, VictoriaMetrics) HTTP API that
    endpoints with ``metrics = "prometheus"`` and ``[[discover]]`` blocks are read from."""

    url: str  # base URL; a path prefix is kept (Mimir: https://mimir/prometheus)
    headers: Mapping[str, str] = field(default_factory=dict)  # values may hold ${VAR}
    window: str = "1m"  # the rate window, a PromQL duration
    window_seconds: float = 60.0
    timeout: float = 2.0  # per query, seconds
    max_bytes: int = 32 << 20  # an answer larger than this is refused while streaming
    discover_interval: float = 30.0  # seconds between [[discover]] refreshes
    vanished_after: float = 300.0  # a discovered endpoint no longer reported shows DOWN this long, then goes

    def resolved_headers(self) -> dict[str, str]:
        """As :meth:`EndpointConfig.resolved_headers` (errors name the header, never the value)."""
        out = {}
        for k, v in self.headers.items():
            where = f"header {k}"
            out[k] = check_header(k, expand(v, where), where)
        return out


@dataclass(frozen=True)
class DiscoverConfig:
    """``[[discover]]``: endpoints made from the label sets of Prometheus series."""

    name: str  # the block's name in messages ("discover[0]" unless given)
    profile: str  # the metrics profile whose request counter is looked for
    selector: str = ""  # normalised label matchers
    group_by: tuple[str, ...] = ()  # one endpoint per distinct value set of these labels
    name_template: str = "{model}"  # "{model}-{namespace}": labels by name
    model_label: str | None = None  # the registry model name is this label's value ...
    model: str | None = None  # ... or this fixed name
    environment_label: str | None = None
    environment: str = "production"
    served_model_label: str | None = None  # the model's name on the server (default: the profile's model label)
    url_template: str | None = None  # OIP base URL for health and metadata ("http://{instance}")
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class Settings:
    path: Path | None
    registry: Path
    poll: PollSettings = field(default_factory=PollSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    endpoints: tuple[EndpointConfig, ...] = ()
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    read_only: bool = False
    report_sample: float = 5.0
    mlflow: MlflowSettings | None = None  # [mlflow]: MLflow is the registry of record
    prometheus: PrometheusConfig | None = None
    discover: tuple[DiscoverConfig, ...] = ()
    # set by core.promql.resolve_discovered: what [[discover]] found is in ``endpoints`` already
    discovery_resolved: bool = False
    discover_errors: Mapping[str, str] = field(default_factory=dict)  # block name -> why its discovery failed

    def model(self, name: str) -> ModelConfig:
        return self.models.get(name) or ModelConfig(name=name)

    def endpoints_for(self, model: str, environment: str | None = None) -> list[EndpointConfig]:
        return [e for e in self.endpoints
                if e.model == model and (environment is None or e.environment == environment)]


# ---------------------------------------------------------------------------------------------
# loading


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--config, then $MODELDECK_CONFIG, then ./modeldeck.toml, then the XDG config file."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    local = Path("modeldeck.toml")
    if local.is_file():
        return local
    xdg = paths.default_config_file()
    if xdg.is_file():
        return xdg
    return None


def load(path: str | os.PathLike[str] | None = None, registry: str | os.PathLike[str] | None = None,
         *, required: bool = False) -> Settings:
    """Load settings. ``registry`` (from --registry, else $MODELDECK_REGISTRY) overrides the
    file's. Without any config file, defaults apply (registry in the XDG data folder) unless
    ``required``."""
    registry = registry or os.environ.get(ENV_REGISTRY) or None
    found = find_config(path)
    if found is None:
        if required:
            raise ConfigError(
                f"no config file: pass --config FILE, set ${ENV_CONFIG}, create ./modeldeck.toml "
                f"or {paths.default_config_file()} (or try: modeldeck --demo)")
        reg = Path(registry).expanduser() if registry else paths.default_registry_file()
        return Settings(path=None, registry=reg)
    settings = parse_file(found)
    if registry:
        settings = replace(settings, registry=Path(registry).expanduser())
    return settings


def parse_file(path: Path) -> Settings:
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a folder, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot read config: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name}: invalid TOML: {e}") from None
    return parse(data, path)


def parse(data: Mapping[str, Any], path: Path | None = None) -> Settings:
    r = _Reader(str(path) if path else "config", path.parent if path else Path.cwd())
    return r.settings(data)


class _Reader:
    def __init__(self, filename: str, base: Path) -> None:
        self.filename = filename
        self.base = base

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.filename}: {key}: {message}")

    def check_keys(self, table: Mapping[str, Any], allowed: set[str] | list[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.fail(f"{where}{'.' if where else ''}{key}", f"unknown key{hint}")

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a table, not {_kind(value)}")
        return value

    def string(self, value: Any, key: str, *, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_kind(value)}")
        if not empty_ok and not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def number(self, value: Any, key: str, *, minimum: float | None = None, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, not {_kind(value)}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, not {value}")
        if positive and not value > 0:
            raise self.fail(key, f"must be greater than 0, not {value}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, not {value}")
        return float(value)

    def integer(self, value: Any, key: str, *, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, not {_kind(value)}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, not {value}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_kind(value)}")
        return value

    def str_map(self, value: Any, key: str) -> dict[str, str]:
        t = self.table(value, key)
        return {str(k): self.string(v, f"{key}.{k}", empty_ok=True) for k, v in t.items()}

    def headers(self, value: Any, key: str) -> dict[str, str]:
        """HTTP headers: token names, values without CR, LF, NUL or other control characters
        (checked again after ``${VAR}`` expansion, when a request is built)."""
        out = self.str_map(value, key)
        for k, v in out.items():
            why = header_problem(k, v)
            if why:
                raise self.fail(f"{key}.{k}", why)
        return out

    def url(self, value: Any, key: str) -> str:
        s = self.string(value, key).strip()
        why = url_problem(s)
        if why:
            raise self.fail(key, f"{why}, not {one_line(s, 120)!r}")
        return s.rstrip("/")

    def path(self, value: Any, key: str) -> Path:
        p = Path(self.string(value, key)).expanduser()
        return p if p.is_absolute() else (self.base / p)

    def source(self, value: Any, key: str) -> str:
        """A file, glob or http(s) URL; a relative path means the config file's folder."""
        c = self.string(value, key)
        if re.match(r"^https?://", c, re.I):
            why = url_problem(c)
            if why:
                raise self.fail(key, why)
            return c
        if "\x00" in c:
            raise self.fail(key, "must not contain NUL")
        if Path(c).expanduser().is_absolute():
            return c
        return str(self.base / c)

    # -- sections --------------------------------------------------------------------------
    def settings(self, data: Mapping[str, Any]) -> Settings:
        self.check_keys(data, {"registry", "read_only", "poll", "thresholds", "endpoints", "models",
                               "report", "mlflow", "prometheus", "discover"}, "")
        registry = (self.path(data["registry"], "registry") if "registry" in data
                    else paths.default_registry_file())
        poll = self.poll(data.get("poll", {}))
        thresholds = self.thresholds(data.get("thresholds", {}), "thresholds", Thresholds())
        prometheus = self.prometheus(data["prometheus"]) if "prometheus" in data else None
        endpoints = self.endpoints(data.get("endpoints", []), thresholds, prometheus)
        discover = self.discover(data.get("discover", []), thresholds, prometheus)
        models = self.models(data.get("models", {}))
        report = self.table(data.get("report", {}), "report")
        self.check_keys(report, {"sample"}, "report")
        sample = self.number(report["sample"], "report.sample", minimum=0) if "sample" in report else 5.0
        read_only = self.boolean(data["read_only"], "read_only") if "read_only" in data else False
        mlflow = self.mlflow(data["mlflow"]) if "mlflow" in data else None
        return Settings(path=None if self.filename == "config" else Path(self.filename),
                        registry=registry, poll=poll, thresholds=thresholds, endpoints=endpoints,
                        models=models, read_only=read_only, report_sample=sample, mlflow=mlflow,
                        prometheus=prometheus, discover=discover)

    def mlflow(self, value: Any) -> MlflowSettings:
        t = self.table(value, "mlflow")
        self.check_keys(t, {f.name for f in fields(MlflowSettings)}, "mlflow")
        if "url" not in t:
            raise self.fail("mlflow", "missing required key 'url' (the MLflow tracking server)")
        kw: dict[str, Any] = {"url": self.url(t["url"], "mlflow.url")}
        if "headers" in t:
            kw["headers"] = self.headers(t["headers"], "mlflow.headers")
        if "models" in t:
            m = t["models"]
            if not isinstance(m, list) or not all(isinstance(x, str) and x.strip() for x in m):
                raise self.fail("mlflow.models", "must be an array of registered model names")
            kw["models"] = tuple(dict.fromkeys(m))
        if "aliases" in t:
            aliases = self.str_map(t["aliases"], "mlflow.aliases")
            seen: dict[str, str] = {}
            for env, alias in aliases.items():
                key = f"mlflow.aliases.{env}"
                if not alias.strip() or alias != alias.strip():
                    raise self.fail(key, f"{alias!r} is not an alias name")
                if RESERVED_ALIAS.match(alias):
                    raise self.fail(key, f"MLflow reserves the alias name {alias!r} (latest, v<digits>)")
                if alias in seen:
                    raise self.fail(key, f"alias {alias!r} is already the alias of environment {seen[alias]!r}")
                seen[alias] = env
            kw["aliases"] = aliases
        if "tag_prefix" in t:
            kw["tag_prefix"] = self.string(t["tag_prefix"], "mlflow.tag_prefix")
        if "timeout" in t:
            kw["timeout"] = self.number(t["timeout"], "mlflow.timeout", positive=True)
        if "max_body_bytes" in t:
            kw["max_body_bytes"] = self.integer(t["max_body_bytes"], "mlflow.max_body_bytes", minimum=1024)
        return MlflowSettings(**kw)

    def poll(self, value: Any) -> PollSettings:
        t = self.table(value, "poll")
        names = {f.name for f in fields(PollSettings)}
        self.check_keys(t, names, "poll")
        kw: dict[str, Any] = {}
        for k, v in t.items():
            key = f"poll.{k}"
            if k in ("drift_every", "drift_window", "history", "max_body_bytes", "max_metrics_bytes",
                     "max_capture_bytes", "quality_scan"):
                kw[k] = self.integer(v, key, minimum=1)
            elif k == "quality_every":
                kw[k] = self.integer(v, key, minimum=0)
            elif k in ("interval", "timeout"):
                kw[k] = self.number(v, key, positive=True)
            else:
                kw[k] = self.number(v, key, minimum=0)
        return PollSettings(**kw)

    def thresholds(self, value: Any, where: str, base: Thresholds) -> Thresholds:
        t = self.table(value, where)
        self.check_keys(t, {f.name for f in fields(Thresholds)}, where)
        kw = {k: self.number(v, f"{where}.{k}", minimum=0) for k, v in t.items()}
        return replace(base, **kw)

    def duration_text(self, value: Any, key: str) -> tuple[str, float]:
        """A PromQL duration ("1m", "90s", "1m30s"): the text and its seconds."""
        s = self.string(value, key).strip()
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
        parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", s)
        if not parts or "".join(n + u for n, u in parts) != s:
            raise self.fail(key, f"must be a PromQL duration such as \"1m\" or \"90s\", not {s!r}")
        seconds = sum(int(n) * units[u] for n, u in parts)
        if seconds <= 0:
            raise self.fail(key, "must be longer than 0")
        return s, seconds

    def selector(self, value: Any, key: str) -> str:
        from modeldeck.core.promql import SelectorError, parse_selector, selector_text

        text = self.string(value, key, empty_ok=True)
        try:
            return selector_text(parse_selector(text))
        except SelectorError as e:
            raise self.fail(key, str(e)) from None

    def prometheus(self, value: Any) -> PrometheusConfig:
        t = self.table(value, "prometheus")
        self.check_keys(t, {"url", "headers", "window", "timeout", "max_bytes", "discover_interval",
                            "vanished_after"}, "prometheus")
        if "url" not in t:
            raise self.fail("prometheus", "missing required key 'url'")
        kw: dict[str, Any] = {"url": self.url(t["url"], "prometheus.url")}
        if "headers" in t:
            kw["headers"] = self.headers(t["headers"], "prometheus.headers")
        if "window" in t:
            kw["window"], kw["window_seconds"] = self.duration_text(t["window"], "prometheus.window")
        for k in ("timeout", "discover_interval"):
            if k in t:
                kw[k] = self.number(t[k], f"prometheus.{k}", positive=True)
        if "vanished_after" in t:
            kw["vanished_after"] = self.number(t["vanished_after"], "prometheus.vanished_after", minimum=0)
        if "max_bytes" in t:
            kw["max_bytes"] = self.integer(t["max_bytes"], "prometheus.max_bytes", minimum=1024)
        return PrometheusConfig(**kw)

    def profile_name(self, value: Any, key: str, *, prometheus: bool) -> str:
        from modeldeck.core.metrics import PROFILES

        name = self.string(value, key).strip().lower()
        if name not in PROFILES:
            raise self.fail(key, f"unknown metrics profile {name!r} (known: {', '.join(PROFILES)})")
        return name

    def endpoints(self, value: Any, thresholds: Thresholds,
                  prometheus: PrometheusConfig | None = None) -> tuple[EndpointConfig, ...]:
        if not isinstance(value, list):
            raise self.fail("endpoints", "must be an array of tables ([[endpoints]])")
        out: list[EndpointConfig] = []
        seen: set[str] = set()
        allowed = {"name", "model", "environment", "url", "served_model", "metrics_url", "capture", "labels",
                   "label_id_column", "label_column", "headers", "metrics_profile", "thresholds", "metrics",
                   "selector"}
        for i, item in enumerate(value):
            where = f"endpoints[{i}]"
            t = self.table(item, where)
            self.check_keys(t, allowed, where)
            metrics = "scrape"
            if "metrics" in t:
                metrics = self.string(t["metrics"], f"{where}.metrics").strip()
                if metrics not in ("scrape", "prometheus"):
                    raise self.fail(f"{where}.metrics", f'must be "scrape" or "prometheus", not {metrics!r}')
            via = metrics == "prometheus"
            for req in ("name", "model") if via else ("name", "model", "url"):
                if req not in t:
                    raise self.fail(where, f"missing required key '{req}'")
            name = self.string(t["name"], f"{where}.name")
            if name in seen:
                raise self.fail(f"{where}.name", f"duplicate endpoint name {name!r}")
            seen.add(name)
            model = self.string(t["model"], f"{where}.model")
            url = self.url(t["url"], f"{where}.url") if "url" in t else ""
            capture = self.source(t["capture"], f"{where}.capture") if "capture" in t else None
            labels = self.source(t["labels"], f"{where}.labels") if "labels" in t else None
            profile = None
            if "metrics_profile" in t:
                profile = self.profile_name(t["metrics_profile"], f"{where}.metrics_profile", prometheus=via)
            selector = self.selector(t["selector"], f"{where}.selector") if "selector" in t else ""
            if via:
                if prometheus is None:
                    raise self.fail(f"{where}.metrics", 'is "prometheus" but the config has no [prometheus] '
                                                        "section (its url)")
                if profile is None and not selector:
                    raise self.fail(where, f'endpoint {name!r}: metrics = "prometheus" needs metrics_profile (one of '
                                           'mlserver, triton, torchserve, bentoml, kserve), or a selector to '
                                           'detect it from')
                if "metrics_url" in t:
                    raise self.fail(f"{where}.metrics_url", 'is not used with metrics = "prometheus" '
                                                            "(the metrics come from PromQL)")
            elif "selector" in t:
                raise self.fail(f"{where}.selector", 'only applies with metrics = "prometheus"')
            out.append(EndpointConfig(
                name=name, model=model, url=url,
                environment=self.string(t.get("environment", "production"), f"{where}.environment"),
                served_model=self.string(t.get("served_model", model), f"{where}.served_model"),
                metrics_url=(self.url(t["metrics_url"], f"{where}.metrics_url") if "metrics_url" in t
                             else (url + "/metrics" if not via else "")),
                capture=capture,
                labels=labels,
                label_id_column=(self.string(t["label_id_column"], f"{where}.label_id_column")
                                 if "label_id_column" in t else None),
                label_column=(self.string(t["label_column"], f"{where}.label_column")
                              if "label_column" in t else "label"),
                headers=self.headers(t.get("headers", {}), f"{where}.headers"),
                metrics_profile=profile,
                thresholds=self.thresholds(t.get("thresholds", {}), f"{where}.thresholds", thresholds),
                metrics=metrics, selector=selector,
            ))
        return tuple(out)

    def discover(self, value: Any, thresholds: Thresholds,
                 prometheus: PrometheusConfig | None) -> tuple[DiscoverConfig, ...]:
        if not isinstance(value, list):
            raise self.fail("discover", "must be an array of tables ([[discover]])")
        if value and prometheus is None:
            raise self.fail("discover", "needs a [prometheus] section (its url) to discover endpoints from")
        allowed = {"name", "profile", "selector", "group_by", "name_template", "model_label", "model",
                   "environment_label", "environment", "served_model_label", "url", "thresholds"}
        out: list[DiscoverConfig] = []
        for i, item in enumerate(value):
            where = f"discover[{i}]"
            t = self.table(item, where)
            self.check_keys(t, allowed, where)
            if "profile" not in t:
                raise self.fail(where, "missing required key 'profile' (mlserver, triton, torchserve, bentoml, "
                                       "kserve)")
            profile = self.profile_name(t["profile"], f"{where}.profile", prometheus=True)
            group_by: tuple[str, ...] = ()
            if "group_by" in t:
                g = t["group_by"]
                if not isinstance(g, list) or not all(isinstance(x, str) and re.fullmatch(
                        r"[a-zA-Z_][a-zA-Z0-9_]*", x) for x in g):
                    raise self.fail(f"{where}.group_by", "must be an array of label names")
                group_by = tuple(dict.fromkeys(g))
            if "model_label" in t and "model" in t:
                raise self.fail(where, "give model_label or model, not both")
            if "environment_label" in t and "environment" in t:
                raise self.fail(where, "give environment_label or environment, not both")
            kw: dict[str, Any] = {}
            for k in ("model_label", "environment_label", "served_model_label"):
                if k in t:
                    v = self.string(t[k], f"{where}.{k}")
                    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", v):
                        raise self.fail(f"{where}.{k}", f"must be a label name, not {v!r}")
                    kw[k] = v
            if "model" in t:
                kw["model"] = self.string(t["model"], f"{where}.model")
            if "environment" in t:
                kw["environment"] = self.string(t["environment"], f"{where}.environment")
            if "model_label" not in kw and "model" not in kw:
                raise self.fail(where, "needs model_label (the label naming the registry model) or model "
                                       "(a fixed name)")
            template = self.string(t.get("name_template", "{model}"), f"{where}.name_template")
            labels_used = set(group_by) | {kw[k] for k in ("model_label", "environment_label",
                                                             "served_model_label") if k in kw}
            for tmpl, key in ((template, "name_template"), (t.get("url"), "url")):
                if tmpl is None:
                    continue
                tmpl = self.string(tmpl, f"{where}.{key}")
                for field_name in re.findall(r"\{([^{}]*)\}", tmpl):
                    if field_name not in labels_used | {"model", "environment"}:
                        raise self.fail(f"{where}.{key}", f"{{{field_name}}} is not a group_by label "
                                                          f"(group_by: {', '.join(group_by) or 'none'})")
            url_template = None
            if "url" in t:
                url_template = self.string(t["url"], f"{where}.url").strip().rstrip("/")
                if not re.match(r"^https?://", url_template):
                    raise self.fail(f"{where}.url", f"must be an http:// or https:// URL template, not "
                                                    f"{url_template!r}")
            out.append(DiscoverConfig(
                name=self.string(t["name"], f"{where}.name") if "name" in t else where,
                profile=profile,
                selector=self.selector(t["selector"], f"{where}.selector") if "selector" in t else "",
                group_by=group_by, name_template=template, url_template=url_template,
                thresholds=self.thresholds(t.get("thresholds", {}), f"{where}.thresholds", thresholds),
                **kw))
        return tuple(out)

    def hook(self, value: Any, where: str, *, retrain: bool) -> HookConfig:
        t = self.table(value, where)
        self.check_keys(t, {"command", "webhook", "timeout"}, where)
        command = None
        if "command" in t:
            c = t["command"]
            if not isinstance(c, list) or not c or not all(isinstance(a, str) for a in c):
                raise self.fail(f"{where}.command",
                                "must be a non-empty array of strings (argv; no shell is used)")
            command = tuple(c)
        webhook = None
        if "webhook" in t:
            w = t["webhook"]
            if isinstance(w, str):
                w = {"url": w}
            wt = self.table(w, f"{where}.webhook")
            allowed = {"url", "secret", "headers", "timeout"}
            if retrain:
                allowed |= {"status_url", "poll_interval"}
            self.check_keys(wt, allowed, f"{where}.webhook")
            if "url" not in wt:
                raise self.fail(f"{where}.webhook", "missing required key 'url'")
            webhook = WebhookConfig(
                url=self.url(wt["url"], f"{where}.webhook.url"),
                secret=self.string(wt["secret"], f"{where}.webhook.secret") if "secret" in wt else None,
                headers=self.headers(wt.get("headers", {}), f"{where}.webhook.headers"),
                status_url=(self.url(wt["status_url"], f"{where}.webhook.status_url")
                            if "status_url" in wt else None),
                poll_interval=(self.number(wt["poll_interval"], f"{where}.webhook.poll_interval",
                                           positive=True) if "poll_interval" in wt else 5.0),
                timeout=(self.number(wt["timeout"], f"{where}.webhook.timeout", positive=True)
                         if "timeout" in wt else 10.0),
            )
        if command is None and webhook is None:
            raise self.fail(where, "needs a 'command' or a 'webhook'")
        timeout = self.number(t["timeout"], f"{where}.timeout", positive=True) if "timeout" in t else 600.0
        return HookConfig(command=command, webhook=webhook, timeout=timeout)

    def gate(self, value: Any, where: str) -> GateConfig:
        t = self.table(value, where)
        self.check_keys(t, {f.name for f in fields(GateConfig)}, where)
        if "metric" not in t:
            raise self.fail(where, "missing required key 'metric'")
        kw: dict[str, Any] = {"metric": self.string(t["metric"], f"{where}.metric")}
        for k in ("threshold", "min_absolute_change", "min_relative_change"):
            if k in t:
                kw[k] = self.number(t[k], f"{where}.{k}")
        if "greater_is_better" in t:
            kw["greater_is_better"] = self.boolean(t["greater_is_better"], f"{where}.greater_is_better")
        if len(kw) == 1 or (len(kw) == 2 and "greater_is_better" in kw):
            raise self.fail(where, "needs at least one of threshold, min_absolute_change, "
                                   "min_relative_change")
        return GateConfig(**kw)

    def rules(self, t: Mapping[str, Any], where: str, cls: type = ModelConfig) -> dict[str, Any]:
        """The rule keys of ``t`` (the fields of ``cls`` made with :func:`rule`), read by their
        metadata; keys that are not rules are left to the caller."""
        out: dict[str, Any] = {}
        for name, f in rule_fields(cls).items():
            if name not in t:
                continue
            key = f"{where}.{name}" if where else name
            kind = f.metadata["kind"]
            v = t[name]
            if kind == "gates":
                if not isinstance(v, list):
                    raise self.fail(key, "must be an array of tables")
                out[name] = tuple(self.gate(g, f"{key}[{i}]") for i, g in enumerate(v))
            elif kind == "environments":
                envs = self.table(v, key)
                rules: dict[str, EnvironmentRules] = {}
                for env, body in envs.items():
                    ew = f"{key}.{env}"
                    if not str(env).strip():
                        raise self.fail(ew, "an environment name must not be empty")
                    et = self.table(body, ew)
                    self.check_keys(et, set(rule_fields(EnvironmentRules)), ew)
                    given = self.rules(et, ew, EnvironmentRules)
                    rules[str(env)] = EnvironmentRules(**given, explicit=frozenset(given))
                out[name] = rules
            elif kind in ("seconds", "number"):
                out[name] = self.number(v, key, minimum=0)
            elif kind == "count":
                out[name] = self.integer(v, key, minimum=0)
            elif kind == "flag":
                out[name] = self.boolean(v, key)
            else:
                out[name] = self.string(v, key)
            check = f.metadata.get("check")
            why = check(out[name]) if check is not None else None
            if why:
                raise self.fail(key, why)
        return out

    def models(self, value: Any) -> dict[str, ModelConfig]:
        t = self.table(value, "models")
        out: dict[str, ModelConfig] = {}
        for name, item in t.items():
            where = f"models.{name}"
            m = self.table(item, where)
            self.check_keys(m, {"retrain", "deploy", "evaluate", "retrain_cooldown", *rule_fields(ModelConfig)}, where)
            rules = self.rules(m, where)
            if "eval_data" in rules and rules["eval_data"] != "recent":
                rules["eval_data"] = self.source(rules["eval_data"], f"{where}.eval_data")
            out[name] = ModelConfig(
                name=name,
                retrain=self.hook(m["retrain"], f"{where}.retrain", retrain=True) if "retrain" in m else None,
                deploy=self.hook(m["deploy"], f"{where}.deploy", retrain=False) if "deploy" in m else None,
                evaluate=self.evaluate_hook(m["evaluate"], f"{where}.evaluate") if "evaluate" in m else None,
                retrain_cooldown=(self.number(m["retrain_cooldown"], f"{where}.retrain_cooldown", minimum=0)
                                  if "retrain_cooldown" in m else 6 * 3600.0),
                explicit=frozenset(rules),
                **rules,
            )
        return out

    def evaluate_hook(self, value: Any, where: str) -> HookConfig:
        """``evaluate = { command = [...] }``: argv only (its last output line is the metrics)."""
        t = self.table(value, where)
        if "webhook" in t:
            raise self.fail(f"{where}.webhook", "an evaluate hook is a command (argv) that prints a JSON object "
                                                "of metrics on its last line; webhooks are not supported")
        if "command" not in t:
            raise self.fail(where, "needs a 'command' (argv)")
        return self.hook(t, where, retrain=False)


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)
