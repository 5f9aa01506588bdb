"""A model's release policy: the rules every promote and rollback applies, stored in the
registry (versioned and audited), so they do not depend on which config, if any, is loaded.

A policy file is TOML with the rule keys a config's ``[models.X]`` has (every field of
:class:`~modeldeck.core.config.ModelConfig` made with ``config.rule``: ``gates``,
``eval_data``, ``verify_timeout``, ``bake_seconds``, ...) and ``[environments.NAME]`` tables
(the fields of :class:`~modeldeck.core.config.EnvironmentRules`: ``approvals``,
``approver_is_not_promoter``)::

    gates = [{ metric = "auc", min_absolute_change = -0.01 }]
    bake_seconds = 120
    [environments.production]
    approvals = 2
    approver_is_not_promoter = true

What applies (:func:`effective`): the registry's policy (a key it leaves out is the default),
made stricter by the loaded config's ``[models.X]`` where it says so: a higher ``approvals``,
a longer bake, a tighter gate, an extra gate. A config value looser than the policy is a
:class:`PolicyError` naming both; without a policy in the registry the config's rules apply
as they are (``modeldeck policy MODEL --from-config`` imports them).

The rules are read from the dataclass fields' metadata (``stricter``, ``kind``), so a new rule
key is one field in ``core/config.py``: reading, storing, merging and checking follow.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from modeldeck.core.config import (
    ConfigError,
    EnvironmentRules,
    GateConfig,
    ModelConfig,
    _Reader,
    rule_fields,
)
from modeldeck.core.registry import PolicyRecord

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

NOT_RULES = {"retrain": "a hook", "deploy": "a hook", "evaluate": "a hook", "retrain_cooldown": "a retraining setting"}
GATE_BOUNDS = ("threshold", "min_absolute_change", "min_relative_change")


class PolicyError(ConfigError):
    """A policy file that cannot be read, or a config that would loosen the registry's policy."""


def model_rules() -> dict[str, Any]:
    return rule_fields(ModelConfig)


def environment_rules() -> dict[str, Any]:
    return rule_fields(EnvironmentRules)


# ---------------------------------------------------------------------------------------------
# reading and writing policy rules


def parse_rules(data: Mapping[str, Any], source: str = "policy") -> dict[str, Any]:
    """Check a policy table (a parsed TOML file, or a stored policy) and return its rules as
    stored: JSON values, only the keys given. Errors name ``source`` and the key."""
    r = _Reader(source, Path.cwd())
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: a policy must be a table of rules")
    for key in data:
        if key in NOT_RULES:
            raise PolicyError(f"{source}: {key}: {NOT_RULES[key]}, not a release rule: it belongs in the config "
                              f"of the box that runs it ([models.X] {key})")
    try:
        r.check_keys(data, set(model_rules()), "")
        values = r.rules(data, "")
    except ConfigError as e:
        raise PolicyError(str(e)) from None
    return rules_to_json(values)


def parse_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """A policy TOML file -> (rules, the file's text)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{p}: policy file not found") from None
    except IsADirectoryError:
        raise PolicyError(f"{p}: is a folder, not a policy file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{p}: not UTF-8 text") from None
    except OSError as e:
        raise PolicyError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{p}: invalid TOML: {e}") from None
    rules = parse_rules(data, str(p))
    if not rules:
        raise PolicyError(f"{p}: no rules in it (rule keys: {', '.join(sorted(model_rules()))})")
    return rules, text


def rules_to_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """Rule values (as ``_Reader.rules`` returns them) -> the stored JSON form."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "gates":
            out[key] = [_gate_json(g) for g in value]
        elif key == "environments":
            out[key] = {env: {k: getattr(er, k) for k in sorted(er.explicit)} for env, er in value.items()}
        else:
            out[key] = value
    return out


def _gate_json(g: GateConfig) -> dict[str, Any]:
    d: dict[str, Any] = {"metric": g.metric}
    for k in GATE_BOUNDS:
        if getattr(g, k) is not None:
            d[k] = getattr(g, k)
    d["greater_is_better"] = g.greater_is_better
    return d


def config_rules(mc: ModelConfig) -> dict[str, Any]:
    """The rules a config's ``[models.X]`` writes (for ``--from-config``), as stored."""
    return rules_to_json({k: getattr(mc, k) for k in model_rules() if k in mc.explicit})


def model_config(name: str, rules: Mapping[str, Any], source: str = "policy") -> ModelConfig:
    """A ModelConfig holding a policy's rules (defaults elsewhere; ``explicit`` = its keys)."""
    r = _Reader(source, Path.cwd())
    try:
        values = r.rules(rules, "")
    except ConfigError as e:  # a stored policy written by a newer modeldeck, or edited by hand
        raise PolicyError(f"the registry's policy for {name}: {e}") from None
    return ModelConfig(name=name, explicit=frozenset(values), **values)


def to_toml(rules: Mapping[str, Any]) -> str:
    """The stored rules as a policy file (``modeldeck policy MODEL > policy.toml`` to edit it)."""
    lines: list[str] = []
    for key in sorted(k for k in rules if k not in ("gates", "environments")):
        lines.append(f"{key} = {_toml(rules[key])}")
    if rules.get("gates"):
        order = ("metric", *GATE_BOUNDS, "greater_is_better")
        lines.append("gates = [")
        lines += [f"  {_toml({k: g[k] for k in sorted(g, key=lambda k: (*order, k).index(k))})},"
                  for g in rules["gates"]]
        lines.append("]")
    for env, body in (rules.get("environments") or {}).items():
        lines += ["", f"[environments.{_toml_key(env)}]"]
        lines += [f"{k} = {_toml(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() and key.isascii() else json.dumps(key)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


# ---------------------------------------------------------------------------------------------
# what applies: the registry's policy, made stricter by the config


@dataclass(frozen=True)
class Merged:
    model_config: ModelConfig  # the rules that apply, with the config's hooks
    policy_version: int | None  # None: the registry has no policy; the config's rules apply
    tightened: tuple[str, ...] = ()  # where the config is stricter than the policy, in words
    problems: tuple[str, ...] = ()  # where the config would loosen it (each names both values)


def merge(mc: ModelConfig, record: PolicyRecord | None, config: str | Path | None = None) -> Merged:
    """The policy ``record`` with the config's ``mc`` applied where it is stricter. Never
    raises for a looser config value: it is listed in ``problems`` (see :func:`effective`)."""
    if record is None:
        return Merged(mc, None)
    pol = model_config(mc.name, record.rules)
    where = f"{config}: " if config else "the config: "
    values: dict[str, Any] = {k: getattr(pol, k) for k in model_rules()}
    tightened: list[str] = []
    problems: list[str] = []

    def policy_says(key: str, value: Any, given: bool) -> str:
        return (f"the registry policy's {key} = {_show(value)} (policy version {record.version})" if given else
                f"the registry policy's {key} = {_show(value)} (the default; policy version {record.version} "
                f"does not set it)")

    for key, f in model_rules().items():
        if key not in mc.explicit:
            continue
        cv, pv = getattr(mc, key), getattr(pol, key)
        given = key in pol.explicit
        if key == "eval_data" and isinstance(pv, str) and isinstance(cv, str) and config and \
                same_data_spec(cv, pv, Path(config).parent):
            pv = cv  # the same file, once written relative to the config's folder
        stricter = f.metadata["rule"]
        name = f"models.{mc.name}.{key}"
        if stricter == "gates":
            merged, t, p = _merge_gates(pv, cv, name, record.version)
            values[key] = merged
            tightened += t
            problems += [where + x for x in p]
        elif stricter == "environments":
            merged_envs, t, p = _merge_envs(pv, cv, name, record.version)
            values[key] = merged_envs
            tightened += t
            problems += [where + x for x in p]
        elif cv == pv:
            continue
        elif _is_looser(stricter, cv, pv, given):
            verb = "differs from" if stricter == "same" else "is looser than"
            problems.append(f"{where}{name} = {_show(cv)} {verb} {policy_says(key, pv, given)}; a config may only "
                            f"make the policy stricter")
        else:
            values[key] = cv
            tightened.append(f"{key} = {_show(cv)} (policy: {_show(pv)})")
    explicit = mc.explicit | pol.explicit
    out = replace(mc, explicit=explicit, **values)
    return Merged(out, record.version, tuple(tightened), tuple(problems))


def effective(mc: ModelConfig, record: PolicyRecord | None, config: str | Path | None = None) -> ModelConfig:
    """The rules that apply (see :func:`merge`); a config looser than the policy raises
    PolicyError naming both values (and how many more there are)."""
    m = merge(mc, record, config)
    if m.problems:
        more = f" (and {len(m.problems) - 1} more)" if len(m.problems) > 1 else ""
        raise PolicyError(m.problems[0] + more)
    return m.model_config


def same_data_spec(a: str, b: str, base: Path) -> bool:
    """Two ``eval_data`` values naming the same data (paths relative to ``base``)."""
    if a == b:
        return True
    if "recent" in (a, b) or "://" in a or "://" in b:
        return False
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    pa = pa if pa.is_absolute() else base / pa
    pb = pb if pb.is_absolute() else base / pb
    return pa.resolve() == pb.resolve()


def _is_looser(stricter: str, cv: Any, pv: Any, given: bool) -> bool:
    if stricter in ("higher", "lower") and (cv is None or pv is None):
        return False  # an unset optional rule (its default is derived): nothing to compare
    if stricter == "higher":
        return cv < pv
    if stricter == "lower":
        return cv > pv
    if stricter == "true":
        return bool(pv) and not cv
    if stricter == "same":
        return given and cv != pv
    return False


def _show(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    return _toml(v)


def _merge_gates(pol: tuple[GateConfig, ...], cfg: tuple[GateConfig, ...], name: str,
                 version: int) -> tuple[tuple[GateConfig, ...], list[str], list[str]]:
    """Every gate of both applies (all must pass, so the config can only add strictness); a
    config gate on a policy gate's metric and bound must not be looser than it."""
    out = list(pol)
    tightened, problems = [], []
    for i, c in enumerate(cfg):
        for p in pol:
            if p.metric != c.metric:
                continue
            if p.greater_is_better != c.greater_is_better:
                problems.append(f"{name}[{i}] ({c.metric}, greater_is_better = {_toml(c.greater_is_better)}) "
                                f"contradicts the registry policy's gate on {p.metric} (greater_is_better = "
                                f"{_toml(p.greater_is_better)}, policy version {version})")
                continue
            for k in GATE_BOUNDS:
                cv, pv = getattr(c, k), getattr(p, k)
                if cv is None or pv is None or cv == pv:
                    continue
                higher_stricter = c.greater_is_better or k != "threshold"
                looser = cv < pv if higher_stricter else cv > pv
                if looser:
                    problems.append(f"{name}[{i}].{k} = {_toml(cv)} ({c.metric}) is looser than the registry "
                                    f"policy's {k} = {_toml(pv)} (policy version {version}); a config may only "
                                    f"make the policy stricter")
                else:
                    tightened.append(f"gate {c.metric} {k} = {_toml(cv)} (policy: {_toml(pv)})")
        if c not in out:
            out.append(c)
            if not any(p.metric == c.metric for p in pol):
                tightened.append(f"an extra gate on {c.metric}")
    return tuple(out), tightened, problems


def _merge_envs(pol: Mapping[str, EnvironmentRules], cfg: Mapping[str, EnvironmentRules], name: str,
                version: int) -> tuple[dict[str, EnvironmentRules], list[str], list[str]]:
    out = dict(pol)
    tightened, problems = [], []
    fields_ = environment_rules()
    for env, c in cfg.items():
        p = pol.get(env) or EnvironmentRules()
        changes: dict[str, Any] = {}
        for k in c.explicit:
            cv, pv = getattr(c, k), getattr(p, k)
            if cv == pv:
                continue
            if _is_looser(fields_[k].metadata["rule"], cv, pv, k in p.explicit):
                problems.append(f"{name}.{env}.{k} = {_toml(cv)} is looser than the registry policy's "
                                f"environments.{env}.{k} = {_toml(pv)} (policy version {version}"
                                f"{'' if k in p.explicit else '; the default'}); a config may only make the "
                                f"policy stricter")
            else:
                changes[k] = cv
                tightened.append(f"{env}: {k} = {_toml(cv)} (policy: {_toml(pv)})")
        out[env] = replace(p, explicit=p.explicit | frozenset(changes), **changes)
    return out, tightened, problems


def describe_rules(mc: ModelConfig) -> list[tuple[str, str]]:
    """(key, value in words) for every rule that applies, defaults included (for display)."""
    out = []
    for key in model_rules():
        v = getattr(mc, key)
        if key == "gates":
            out.append((key, "; ".join(gate_words(g) for g in v) or "none"))
        elif key == "environments":
            for env, er in sorted(v.items()):
                words = ", ".join(f"{f.name} = {_toml(getattr(er, f.name))}" for f in fields(EnvironmentRules)
                                  if f.name != "explicit")
                out.append((f"environments.{env}", words))
        else:
            out.append((key, "-" if v is None else _toml(v)))
    return out


def gate_words(g: GateConfig) -> str:
    parts = [f"{k} {_toml(getattr(g, k))}" for k in GATE_BOUNDS if getattr(g, k) is not None]
    return f"{g.metric} ({'higher' if g.greater_is_better else 'lower'} is better): {', '.join(parts)}"
