"""Training the demo's model versions (once: cached in ``core.paths.cache_dir()`` keyed by a
hash of the data, the pipeline code, the params and the library versions) and seeding a
registry with them: versions with lineage, approvals, and aliases with some history.

The training code is ``sample_data/pipeline/train.py`` itself (loaded as a module), so a
seeded version and a version the example pipeline registers are built the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from modeldeck.core import paths
from modeldeck.core.demo.datasets import sample_data_dir, train_script
from modeldeck.core.errors import ModeldeckError, RegistryError
from modeldeck.core.registry import Registry

log = logging.getLogger("modeldeck.demo")

_train_lock = threading.Lock()
_train_module: ModuleType | None = None


class DemoError(ModeldeckError):
    """The demo fleet could not start (missing sample data, training failed, ...)."""


def train_module() -> ModuleType:
    """``sample_data/pipeline/train.py`` as a module (imported once)."""
    global _train_module
    with _train_lock:
        if _train_module is None:
            path = train_script()
            if not path.is_file():
                raise DemoError(f"{path}: the demo's training pipeline is missing (the demo needs the "
                                f"sample_data folder of a modeldeck checkout; $MODELDECK_SAMPLE_DATA)")
            spec = importlib.util.spec_from_file_location("modeldeck_demo_train", path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            try:
                spec.loader.exec_module(mod)
            except ImportError as e:
                sys.modules.pop(spec.name, None)
                raise DemoError(f"the demo needs scikit-learn and pandas (pip install 'modeldeck[demo]'): {e}") \
                    from None
            _train_module = mod
        return _train_module


@dataclass(frozen=True)
class SeedVersion:
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = "nightly training run"


# The versions each demo model starts with (version n = index n-1).
SEED_VERSIONS: dict[str, list[SeedVersion]] = {
    "churn": [
        SeedVersion("logreg", {"C": 0.01}, "baseline: logistic regression"),
        SeedVersion("gbm", {"n_estimators": 60, "max_depth": 2, "learning_rate": 0.1}, "first boosted model"),
        SeedVersion("gbm", {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}, "deeper trees"),
    ],
    "fraud": [
        SeedVersion("logreg", {"C": 1.0}, "baseline: logistic regression"),
        SeedVersion("gbm", {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}, "boosted trees"),
    ],
    "demand": [
        SeedVersion("ridge", {"alpha": 1.0}, "baseline: ridge regression"),
        SeedVersion("gbm", {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}, "boosted trees"),
        SeedVersion("gbm", {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.1}, "deeper trees"),
    ],
}

# What happened to them: (action, version or environment, environment, reason, actor).
SEED_HISTORY: dict[str, list[tuple[str, ...]]] = {
    "churn": [
        ("approve", "1", "offline evaluation passed", "alice"),
        ("promote", "1", "production", "first release", "bob"),
        ("approve", "2", "better recall at the same auc", "alice"),
        ("promote", "2", "staging", "canary in staging", "bob"),
        ("promote", "2", "production", "staging looked good for a week", "bob"),
        ("approve", "3", "higher auc on the holdout", "alice"),
        ("promote", "3", "staging", "candidate for next release", "bob"),
        ("promote", "3", "production", "release 3", "bob"),
        ("rollback", "-", "production", "p95 latency doubled after release 3", "carol"),
    ],
    "fraud": [
        ("approve", "1", "offline evaluation passed", "alice"),
        ("promote", "1", "production", "first release", "bob"),
        ("approve", "2", "better auc and precision", "alice"),
        ("promote", "2", "production", "release 2", "bob"),
    ],
    "demand": [
        ("approve", "1", "offline evaluation passed", "alice"),
        ("promote", "1", "production", "first release", "bob"),
        ("approve", "2", "rmse halved on the holdout", "alice"),
        ("promote", "2", "production", "release 2", "bob"),
    ],
}


def _library_versions() -> str:
    import numpy
    import sklearn

    return f"py{sys.version_info[0]}.{sys.version_info[1]}-np{numpy.__version__}-skl{sklearn.__version__}"


def cache_key(model: str, sv: SeedVersion) -> str:
    """SHA-256 over what the trained artifact depends on: data, pipeline code, params, libraries."""
    h = hashlib.sha256()
    data = sample_data_dir() / model
    for f in (train_script(), data / "train.csv", data / "reference.csv"):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(json.dumps({"model": model, "algorithm": sv.algorithm, "params": sv.params}, sort_keys=True).encode())
    h.update(_library_versions().encode())
    return h.hexdigest()


def trained(model: str, sv: SeedVersion) -> Path:
    """The cached run folder for one seed version, training it on first use."""
    key = cache_key(model, sv)
    folder = paths.cache_dir() / "demo" / f"{model}-{key[:16]}"
    if (folder / "model.pkl").is_file() and (folder / "reference.csv").is_file():
        return folder
    tr = train_module()
    data = sample_data_dir() / model
    try:
        result = tr.train_model(model, tr.read_table(data / "train.csv"), tr.read_table(data / "reference.csv"),
                                algorithm=sv.algorithm, params=sv.params)
    except tr.PipelineError as e:
        raise DemoError(f"training the demo model {model}: {e}") from None
    result.params["source"] = "sample"
    tr.save_run(result, folder)
    log.info("trained %s (%s) into %s in %.2f s", model, sv.algorithm, folder, result.timings["fit_seconds"])
    return folder


def seed_registry(registry_path: Path, models: list[str] | None = None, *, mlflow: Any = None) -> list[str]:
    """Register the demo models that the registry does not have yet, with their history.
    Artifacts are copied beside the registry (``artifacts/MODEL/seed-KEY/``) so the registry
    stays usable when the cache is cleaned. Returns the models seeded. With ``mlflow`` (the
    ``[mlflow]`` settings) the versions are MLflow's: each a run with its params, metrics,
    training and evaluation datasets and git commit, the artifact in the run's artifacts."""
    wanted = list(models or SEED_VERSIONS)
    art_root = registry_path.resolve().parent / "artifacts"
    seeded = []
    if mlflow is not None:
        from modeldeck.core.mlflow import MlflowRegistry

        opened: Registry = MlflowRegistry(registry_path, mlflow)
    else:
        opened = Registry(registry_path)
    with opened as reg:
        todo = [m for m in wanted if not reg.has_model(m)]
        if not todo:
            return []
        tr = train_module()
        code_version = tr.code_version()
        jobs = [(m, sv) for m in todo for sv in SEED_VERSIONS[m]]
        workers = max(1, min(2, os.cpu_count() or 1, len(jobs)))
        with ThreadPoolExecutor(workers, thread_name_prefix="demo-train") as pool:  # fits release the GIL
            folders = iter(list(pool.map(lambda j: trained(*j), jobs)))
        for model in todo:
            dataset = sample_data_dir() / model / "train.csv"
            for sv in SEED_VERSIONS[model]:
                src = next(folders)
                dst = art_root / model / f"seed-{src.name.rsplit('-', 1)[-1]}"
                if not (dst / "model.pkl").is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(dst.name + ".tmp")
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.copytree(src, tmp)
                    shutil.rmtree(dst, ignore_errors=True)
                    tmp.rename(dst)
                metrics = json.loads((dst / "metrics.json").read_text())
                params = json.loads((dst / "params.json").read_text())
                # measured on the sample holdout (train.py's default): every seed version on the same data
                reg.register(model, str(dst / "model.pkl"), dataset=str(dataset), reference=str(dst / "reference.csv"),
                             code_version=code_version, params=params, metrics=metrics, actor="ci-pipeline",
                             reason=sv.reason, description=_DESCRIPTIONS.get(model),
                             eval_dataset=str(sample_data_dir() / model / "reference.csv"))
            for step in SEED_HISTORY.get(model, []):
                action, what, *rest = step
                if action == "approve":
                    reason, actor = rest
                    reg.approve(model, int(what), reason, actor=actor)
                elif action == "promote":
                    env, reason, actor = rest
                    reg.promote(model, int(what), env, reason, actor=actor)
                elif action == "rollback":
                    env, reason, actor = rest
                    reg.rollback(model, env, reason, actor=actor)
            seeded.append(model)
    return seeded


_DESCRIPTIONS = {
    "churn": "Which subscribers will cancel next month (demo)",
    "fraud": "Card transactions that look fraudulent (demo)",
    "demand": "Daily units sold per store (demo)",
}


def register_candidate(registry: Registry, model: str, environment: str = "production", *,
                       fault: str | None = None, reason: str = "", actor: str = "ci-pipeline") -> int:
    """A candidate like the version ``environment`` holds (its artifact, reference data and
    metrics on the same holdout, so the release gates compare them on one dataset), optionally
    misbehaving while served (``fault``: the ``demo_fault`` tag, ``errors`` or ``slow``).
    Returns the new version's number. For tests and benchmarks of rollouts on the demo fleet."""
    held = registry.alias(model, environment)
    if held is None:
        raise RegistryError(f"{environment} of {model} holds no version to copy")
    v = registry.version(model, held)
    known = [e for e in registry.evaluations(model, held) if e.dataset_sha256]
    sha = known[-1].dataset_sha256 if known else None
    metrics = {e.metric: e.value for e in known if e.dataset_sha256 == sha} if sha else dict(v.metrics)
    rows = next((e.dataset_rows for e in known if e.dataset_sha256 == sha), None)
    tags = {k: val for k, val in v.tags.items() if k != "demo_fault"}
    if fault:
        tags["demo_fault"] = fault
    new = registry.register(model, v.artifact, dataset_sha256=v.dataset_sha256, reference=v.reference_path,
                            code_version=v.code_version, params={k: val for k, val in v.params.items()
                                                                 if k != "demo_fault"},
                            metrics=metrics or None, tags=tags, actor=actor,
                            reason=reason or f"a copy of version {held}" + (f" with demo_fault={fault}" if fault else ""),
                            eval_sha256=sha if metrics else None, eval_rows=rows if metrics and sha else None)
    return new.version
