"""Loading and running the demo's model artifacts (pickles written by
``sample_data/pipeline/train.py``), and the version fault knob.

A version misbehaves on purpose when its params or tags hold ``demo_fault``:

- ``errors``: about half of its inferences answer HTTP 500 (for the automatic-rollback test);
- ``slow``: about a quarter of its inferences take 0.6-1.0 s (p95 latency over 500 ms);
- ``unready``: the server reports the model not ready (health 400), as a model that failed
  to load would.
"""

from __future__ import annotations

import math
import pickle
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ARTIFACT_FORMAT = "modeldeck-demo-sklearn/1"  # train.py's ARTIFACT_FORMAT
FAULTS = ("errors", "slow", "unready")


class ArtifactError(Exception):
    pass


class RequestError(ValueError):
    """A malformed inference request (HTTP 400)."""


@dataclass(frozen=True)
class LoadedVersion:
    model: str
    version: str
    artifact_path: str
    artifact: Mapping[str, Any] = field(repr=False)
    fault: str | None = None

    @property
    def features(self) -> list[str]:
        return list(self.artifact["features"])

    @property
    def categorical(self) -> set[str]:
        return set(self.artifact["categorical"])

    @property
    def task(self) -> str:
        return str(self.artifact["task"])

    def input_metadata(self) -> list[dict[str, Any]]:
        cats = self.categorical
        return [{"name": f, "datatype": "BYTES" if f in cats else "FP64", "shape": [-1]} for f in self.features]

    def output_metadata(self) -> list[dict[str, Any]]:
        out = [{"name": "prediction", "datatype": "INT64" if self.task == "classification" else "FP64",
                "shape": [-1]}]
        if self.task == "classification":
            out.append({"name": "probability", "datatype": "FP64", "shape": [-1]})
        return out


def fault_of(params: Mapping[str, Any] | None, tags: Mapping[str, Any] | None) -> str | None:
    for source in (tags or {}, params or {}):
        value = source.get("demo_fault")
        if value is not None and str(value).strip().lower() in FAULTS:
            return str(value).strip().lower()
    return None


_cache: OrderedDict[tuple[str, float], Mapping[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()


def artifact_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri).expanduser()


def load_artifact(uri: str) -> Mapping[str, Any]:
    """Unpickle an artifact (a few are kept in memory, keyed by path and mtime)."""
    path = artifact_path(uri)
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError as e:
        raise ArtifactError(f"{path}: {e.strerror or e}") from None
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        with open(path, "rb") as f:
            art = pickle.load(f)
    except Exception as e:  # unpickling can raise anything
        raise ArtifactError(f"{path}: cannot load: {e}") from None
    if not isinstance(art, dict) or art.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: not a demo artifact (format {ARTIFACT_FORMAT})")
    with _cache_lock:
        _cache[key] = art
        while len(_cache) > 16:
            _cache.popitem(last=False)
    return art


def load_version(model: str, version: int | str, artifact: str, params: Mapping[str, Any] | None = None,
                 tags: Mapping[str, Any] | None = None) -> LoadedVersion:
    return LoadedVersion(model=model, version=str(version), artifact_path=artifact,
                         artifact=load_artifact(artifact), fault=fault_of(params, tags))


# ---------------------------------------------------------------------------------------------
# inference


def columns_from_request(body: Any, loaded: LoadedVersion) -> tuple[np.ndarray, int]:
    """An OIP v2 inference request -> the feature matrix (object array in the artifact's
    feature order) and its row count. Accepts one tensor per column (the pandas codec's
    shape) or one 2-D tensor holding the columns in feature order."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("'inputs' must be a non-empty list of tensors")
    features = loaded.features
    cats = loaded.categorical
    by_name: dict[str, list[Any]] = {}
    for t in inputs:
        if not isinstance(t, dict) or "name" not in t or "data" not in t:
            raise RequestError("each input needs 'name' and 'data'")
        by_name[str(t["name"])] = _flatten(t["data"])
    if len(inputs) == 1 and not set(by_name) & set(features):
        t = inputs[0]
        shape = t.get("shape") or []
        data = by_name[str(t["name"])]
        k = len(features)
        if len(shape) != 2 or shape[1] != k or len(data) != shape[0] * k:
            raise RequestError(f"one input tensor must have shape [n, {k}] (features: {', '.join(features)})")
        n = int(shape[0])
        by_name = {f: data[i::k] for i, f in enumerate(features)}
    missing = [f for f in features if f not in by_name]
    if missing:
        raise RequestError(f"missing input(s): {', '.join(missing)}")
    lengths = {len(by_name[f]) for f in features}
    if len(lengths) != 1:
        raise RequestError("inputs have different lengths")
    n = lengths.pop()
    if n == 0 or n > 10_000:
        raise RequestError("between 1 and 10000 rows per request")
    x = np.empty((n, len(features)), dtype=object)
    for j, f in enumerate(features):
        col = by_name[f]
        if f in cats:
            x[:, j] = ["" if v is None else (v.decode() if isinstance(v, bytes) else str(v)) for v in col]
        else:
            try:
                x[:, j] = [math.nan if v is None else float(v) for v in col]
            except (TypeError, ValueError):
                raise RequestError(f"input {f!r} must hold numbers") from None
    return x, n


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        if data and isinstance(data[0], list):
            return [v for row in data for v in (row if isinstance(row, list) else [row])]
        return data
    return [data]


def predict(loaded: LoadedVersion, x: np.ndarray) -> list[dict[str, Any]]:
    """Run the model; the OIP v2 ``outputs`` list."""
    est = loaded.artifact["estimator"]
    n = x.shape[0]
    if loaded.task == "classification":
        proba = est.predict_proba(x)
        classes = est.classes_
        if proba.shape[1] == 2:
            p = proba[:, 1]
            pred = classes[(p >= 0.5).astype(int)]
        else:
            p = proba.max(axis=1)
            pred = classes[proba.argmax(axis=1)]
        if np.issubdtype(classes.dtype, np.number):
            first = {"name": "prediction", "shape": [n], "datatype": "INT64", "data": [int(v) for v in pred]}
        else:
            first = {"name": "prediction", "shape": [n], "datatype": "BYTES", "data": [str(v) for v in pred]}
        return [first,
                {"name": "probability", "shape": [n], "datatype": "FP64",
                 "data": [round(float(v), 6) for v in p]}]
    pred = est.predict(x)
    return [{"name": "prediction", "shape": [n], "datatype": "FP64", "data": [round(float(v), 4) for v in pred]}]


def request_body(columns: Mapping[str, Sequence[Any]], categorical: Sequence[str] | set[str],
                 request_id: str | None = None) -> dict[str, Any]:
    """Rows (as columns) -> an OIP v2 request, one tensor per column (MLServer's pandas codec)."""
    inputs = []
    for name, values in columns.items():
        vals = list(values)
        if name in categorical:
            inputs.append({"name": name, "shape": [len(vals)], "datatype": "BYTES", "data": [str(v) for v in vals]})
        else:
            isint = all(isinstance(v, (int, np.integer)) for v in vals)
            inputs.append({"name": name, "shape": [len(vals)], "datatype": "INT64" if isint else "FP64",
                           "data": [int(v) if isint else float(v) for v in vals]})
    body: dict[str, Any] = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    if request_id:
        body["id"] = request_id
    return body
