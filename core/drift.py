"""Drift statistics: Evidently-compatible per-column tests on a cached reference profile.

Public API (what the poller, the report and the TUI call):

    load_profile(reference, *, cache_dir=None, use_cache=True, timeout=...) -> ReferenceProfile
        ``reference`` is a path (CSV, Parquet, JSONL, SageMaker capture JSONL), a glob, an http(s)
        URL or a pandas DataFrame.  The profile is cached on disk under
        ``core.paths.cache_dir() / "profiles"`` keyed by the SHA-256 of the data.
    build_profile(frame, *, source="<frame>", sha256=None) -> ReferenceProfile     (no disk cache)
    compare(profile, window, *, categorical=None, columns=None, current_name="current",
            drift_share=0.5, workers=None) -> DriftResult
    compare_frames(reference, current, **same keywords) -> DriftResult
    result_to_json(result) -> dict         the JSON of ``modeldeck drift --format json``
    render_text(result) -> str             the terminal table of ``modeldeck drift``
    compare_files(reference, current, *, categorical=None, columns=None) -> DriftResult
        ``modeldeck drift REFERENCE CURRENT``'s comparison (the command line prints it)

Windows come from ``core.capture.read_window(source, last_n, timeout=...)``.

Per column (Evidently 0.7 ``DataDriftPreset`` defaults, reproduced exactly when the current window has
at least 500 values in the column):

* the column kind is inferred from the *current* window's dtype as Evidently infers it (float ->
  numerical; int -> categorical with at most 10 unique values, else numerical; bool, category and
  strings -> categorical; strings with more unique values than half the count are free text;
  object columns that are not strings, unsigned and nullable integer dtypes, datetimes -> not
  compared); ``categorical=[...]`` forces columns to categorical;
* NaN and +-inf are dropped; unique values are counted on reference and current together;
* reference of at most 1,000 values: numerical with more than 5 unique values -> ``ks`` (p-value,
  drift when p <= 0.05); otherwise ``chisquare`` (drift when p < 0.05), or ``z`` (two-proportion
  Z-test, drift when p < 0.05) with 2 or fewer unique values;
* reference above 1,000 values: numerical with more than 5 unique values -> ``wasserstein``
  (Wasserstein-1 distance divided by max(std of reference, 0.001), drift when >= 0.1); otherwise
  ``jensenshannon`` (natural log, drift when >= 0.1);
* dataset drift when the share of drifted columns is >= 0.5.

Beside that: ``psi`` over 10 reference-quantile bins (categories for text columns), the missing
shares, the unseen-category share, a ``constant`` status when the reference has no spread, and a
sample-size guard: fewer than 30 current values -> ``low_sample`` (not judged); fewer than 500 ->
a p-value test instead of a distance: ``ks`` where Evidently would use ``ks`` or ``wasserstein``,
otherwise ``chisquare`` as a two-sample test (reference vs current counts) whose p-value comes from
2,000 seeded permutations, because Evidently's chi-square (reference proportions taken as exact,
asymptotic p-value) raises false alarms with sparse categories and small references; drift when
p < 0.05.  A column that cannot be
compared gets status ``error`` (or ``skipped`` for kinds Evidently does not compare either); the
others are still computed.  ``n_columns`` counts the judged columns (status ok, drift, constant).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from modeldeck.core.errors import InputError
from modeldeck.core.textfmt import finite, one_line

__all__ = [
    "ColumnDrift",
    "ColumnProfile",
    "DriftResult",
    "ReferenceProfile",
    "build_profile",
    "compare",
    "compare_files",
    "compare_frames",
    "infer_kind",
    "load_profile",
    "psi_level",
    "render_text",
    "result_to_json",
    "window_drift",
]

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
TEXT = "text"
UNKNOWN = "unknown"

KS, CHISQUARE, Z, WASSERSTEIN, JENSENSHANNON = "ks", "chisquare", "z", "wasserstein", "jensenshannon"
METHODS = (KS, CHISQUARE, Z, WASSERSTEIN, JENSENSHANNON)
THRESHOLDS = {KS: 0.05, CHISQUARE: 0.05, Z: 0.05, WASSERSTEIN: 0.1, JENSENSHANNON: 0.1}

SMALL_REFERENCE = 1000  # Evidently: reference of at most this many values -> p-value tests
FEW_UNIQUE = 5  # Evidently: at most this many unique values -> chi-square / Jensen-Shannon
INT_CATEGORICAL_LIMIT = 10  # Evidently: int column with at most this many unique values is categorical
MIN_SAMPLE = 30  # fewer current values: low_sample, not judged
DISTANCE_MIN_SAMPLE = 500  # fewer current values: p-value test instead of a distance
DATASET_DRIFT_SHARE = 0.5
PSI_BINS = 10
PSI_FLOOR = 1e-4
PSI_WARN = 0.1
PSI_ALERT = 0.25
MISSING_JUMP = 0.1  # current missing share above the reference's by this much is a finding
KS_EXACT_MAX_N = 10000  # scipy ks_2samp(mode="auto") is exact up to this sample size
PERMUTATION_DRAWS = 2000  # small windows: permutation draws behind the chi-square p-value
PERMUTATION_MAX_CATEGORIES = 1000  # beyond this, the rarest categories are pooled for the permutations

STATUS_OK, STATUS_DRIFT, STATUS_CONSTANT = "ok", "drift", "constant"
STATUS_LOW_SAMPLE, STATUS_ERROR, STATUS_SKIPPED = "low_sample", "error", "skipped"
JUDGED = (STATUS_OK, STATUS_DRIFT, STATUS_CONSTANT)

PROFILE_VERSION = 1
_MAGIC = b"MDPROF1\n"


# --------------------------------------------------------------------------- profiles


@dataclass
class ColumnProfile:
    """What a reference column contributes to every comparison, computed once.

    ``family`` is ``numeric`` (values kept sorted as float64: KS and Wasserstein are exact from them),
    ``categorical`` (category counts) or ``unsupported`` (datetimes, lists: never compared).
    """

    name: str
    dtype: str
    family: str
    n_rows: int
    n_missing: int
    values: np.ndarray | None = None  # numeric: sorted finite values (float64)
    std: float | None = None  # numeric: population std of the finite values (np.std, as Evidently)
    n_unique: int = 0
    edges: np.ndarray | None = None  # numeric: PSI interior bin edges (reference deciles, merged)
    categories: list | None = None  # categorical: the keys
    counts: np.ndarray | None = None  # categorical: count per key
    is_bool: bool = False
    _value_counts: pd.Series | None = field(default=None, repr=False, compare=False)

    @property
    def n_values(self) -> int:
        return self.n_rows - self.n_missing

    def value_counts(self) -> pd.Series:
        """Counts per distinct value (numeric: from the sorted values, computed once)."""
        if self._value_counts is None:
            if self.family == "numeric":
                uniques, counts = _unique_sorted(self.values)
                self._value_counts = pd.Series(counts, index=pd.Index(uniques, dtype="float64"))
            else:
                self._value_counts = pd.Series(
                    np.asarray(self.counts, dtype=np.int64), index=_key_index(self.categories or [])
                )
        return self._value_counts


@dataclass
class ReferenceProfile:
    """A model version's reference data, reduced to what drift needs; see ``load_profile``."""

    columns: dict[str, ColumnProfile]
    sha256: str
    source: str
    n_rows: int

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)


def _unique_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = values.size
    if n == 0:
        return values[:0], np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    counts = np.diff(np.append(starts, n))
    return values[starts], counts


def _key_index(keys: Sequence) -> pd.Index:
    return pd.Index(list(keys), dtype=object)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating, bool, np.bool_)) and not isinstance(x, complex)


def _numeric_from_object(series: pd.Series) -> np.ndarray | None:
    """An object column holding only numbers (and missing values) as float64, else None."""
    non_null = series.dropna()
    if non_null.empty:
        return None
    if not all(_is_number(x) for x in non_null.array):
        return None
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _numeric_values(series: pd.Series) -> np.ndarray | None:
    """The column as float64 (missing -> NaN) when it is numeric, bool or numbers in objects."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if pd.api.types.is_numeric_dtype(cats.dtype) and not pd.api.types.is_complex_dtype(cats.dtype):
            return np.asarray(series.astype("float64"), dtype=np.float64)
        return None
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype.kind == "O" and not isinstance(dtype, pd.StringDtype):
        return _numeric_from_object(series)
    return None


def _profile_column(name: str, series: pd.Series) -> ColumnProfile:
    n_rows = len(series)
    dtype = str(series.dtype)
    if pd.api.types.is_datetime64_any_dtype(series.dtype) or pd.api.types.is_timedelta64_dtype(series.dtype):
        return ColumnProfile(name, dtype, "unsupported", n_rows, int(series.isna().sum()))
    values = _numeric_values(series)
    if values is not None:
        finite = np.isfinite(values)
        kept = values if finite.all() else values[finite]
        std = _evidently_std(series, finite, kept) if kept.size else None
        ordered = np.sort(kept)
        n_unique = int(_unique_sorted(ordered)[0].size)
        edges = _psi_edges(ordered)
        return ColumnProfile(
            name, dtype, "numeric", n_rows, int(n_rows - kept.size), values=ordered, std=std,
            n_unique=n_unique, edges=edges, is_bool=pd.api.types.is_bool_dtype(series.dtype),
        )
    try:
        counts = _category_counts(series)
    except TypeError:  # unhashable values (lists, dicts): nothing to compare
        return ColumnProfile(name, dtype, "unsupported", n_rows, int(series.isna().sum()))
    n_missing = int(n_rows - counts.sum())
    return ColumnProfile(
        name, dtype, "categorical", n_rows, n_missing, n_unique=int(counts.size),
        categories=list(counts.index), counts=counts.to_numpy(dtype=np.int64),
    )


def _evidently_std(series: pd.Series, finite: np.ndarray, kept: np.ndarray) -> float:
    """``np.std(reference_column)`` as Evidently computes it: pandas' std (ddof 0) in the column's dtype."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiub":
        column = series if finite.all() else series[finite]
        with np.errstate(all="ignore"):
            return float(np.std(column.reset_index(drop=True)))
    return float(np.std(pd.Series(kept)))


def _category_counts(series: pd.Series) -> pd.Series:
    """Count per category, NaN dropped; numbers (and bools) become float keys, the rest objects."""
    values = _numeric_values(series)
    if values is not None:
        values = values[np.isfinite(values)]
        uniques, counts = _unique_sorted(np.sort(values))
        return pd.Series(counts, index=pd.Index(uniques, dtype="float64"))
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    vc = series.value_counts(dropna=True, sort=False)
    vc = vc[vc > 0]
    keys = [k.item() if isinstance(k, np.generic) else k for k in vc.index]
    return pd.Series(vc.to_numpy(dtype=np.int64), index=pd.Index(keys, dtype=object))


def _psi_edges(ordered: np.ndarray) -> np.ndarray:
    if ordered.size == 0:
        return np.zeros(0)
    q = np.quantile(ordered, np.arange(1, PSI_BINS) / PSI_BINS)
    return np.unique(q)


def build_profile(frame: pd.DataFrame, *, source: str = "<frame>", sha256: str | None = None,
                  workers: int | None = None) -> ReferenceProfile:
    """Profile a reference DataFrame (sort each numeric column once, count each categorical one)."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"reference {source}: expected a table, got {type(frame).__name__}")
    if frame.shape[1] == 0:
        raise InputError(f"reference {source}: no columns")
    if frame.shape[0] == 0:
        raise InputError(f"reference {source}: no rows")
    _check_unique_columns(frame, source)
    names = [str(c) for c in frame.columns]
    series = [frame.iloc[:, i] for i in range(frame.shape[1])]
    cols = _map(lambda a: _profile_column(*a), list(zip(names, series)), workers)
    return ReferenceProfile(dict(zip(names, cols)), sha256 or "", source, int(frame.shape[0]))


def _check_unique_columns(frame: pd.DataFrame, source: str) -> None:
    seen: set[str] = set()
    for c in frame.columns:
        name = str(c)
        if name in seen:
            raise InputError(f"{source}: column '{name}' appears twice")
        seen.add(name)


def _frame_digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in frame.columns]).encode())
    h.update(json.dumps([str(t) for t in frame.dtypes]).encode())
    try:
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except TypeError:  # unhashable cells: fall back to their text
        h.update(frame.astype(str).to_csv(index=False).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- profile cache

_digest_memo: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def _file_sha256(paths: Sequence[Path]) -> str:
    """SHA-256 of a file's bytes (of the files' digests, in order, for several); memoized by stat."""
    digests = []
    for p in paths:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        with _memo_lock:
            known = _digest_memo.get(key)
        if known is None:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
            known = h.hexdigest()
            with _memo_lock:
                if len(_digest_memo) > 4096:
                    _digest_memo.clear()
                _digest_memo[key] = known
        digests.append(known)
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def default_profile_dir() -> Path:
    from modeldeck.core.paths import cache_dir

    return cache_dir() / "profiles"


def _cache_file(cache_dir: Path, sha: str) -> Path:
    return cache_dir / f"{sha}.v{PROFILE_VERSION}.mdprof"


def _encode_key(k: Any) -> list:
    if isinstance(k, bool | np.bool_):
        return ["b", bool(k)]
    if isinstance(k, int | np.integer):
        return ["i", int(k)]
    if isinstance(k, float | np.floating):
        return ["f", float(k)]
    if isinstance(k, str):
        return ["s", k]
    raise TypeError(f"cannot store category {k!r}")


def _decode_key(pair: list) -> Any:
    tag, value = pair
    return {"b": bool, "i": int, "f": float, "s": str}[tag](value)


def save_profile(profile: ReferenceProfile, path: Path) -> None:
    """Write the profile atomically (temp file in the same folder, then rename)."""
    arrays: list[tuple[str, np.ndarray]] = []
    cols = []
    for name, c in profile.columns.items():
        meta: dict[str, Any] = {
            "name": name, "dtype": c.dtype, "family": c.family, "n_rows": c.n_rows,
            "n_missing": c.n_missing, "n_unique": c.n_unique, "std": c.std, "is_bool": c.is_bool,
        }
        if c.family == "numeric":
            meta["values"] = len(arrays)
            arrays.append((name, np.ascontiguousarray(c.values, dtype="<f8")))
            meta["edges"] = [float(e) for e in c.edges]
        elif c.family == "categorical":
            meta["categories"] = [_encode_key(k) for k in c.categories]
            meta["counts"] = [int(n) for n in c.counts]
        cols.append(meta)
    offset = 0
    entries = []
    for _, a in arrays:
        entries.append({"offset": offset, "length": int(a.size), "crc32": zlib.crc32(a.data)})
        offset += a.nbytes
    header = json.dumps({
        "version": PROFILE_VERSION, "sha256": profile.sha256, "source": profile.source,
        "n_rows": profile.n_rows, "columns": cols, "arrays": entries, "data_size": offset,
    }, allow_nan=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mdprof", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for _, a in arrays:
                f.write(a.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_profile(path: Path, sha: str | None = None) -> ReferenceProfile:
    """Read a profile file; raises ValueError (or OSError) when it is corrupt or of another version."""
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("bad magic")
        (hlen,) = struct.unpack("<Q", f.read(8))
        if hlen > 1 << 31:
            raise ValueError("bad header length")
        raw = f.read(hlen)
        if len(raw) != hlen:
            raise ValueError("truncated header")
        header = json.loads(raw)
        if header.get("version") != PROFILE_VERSION or (sha is not None and header.get("sha256") != sha):
            raise ValueError("other version or data")
        data = np.fromfile(f, dtype="<f8", count=-1)
    if data.nbytes != header["data_size"]:
        raise ValueError("truncated data")
    arrays = []
    for e in header["arrays"]:
        start = e["offset"] // 8
        a = data[start:start + e["length"]]
        if a.size != e["length"] or zlib.crc32(a.data) != e["crc32"]:
            raise ValueError("checksum mismatch")
        arrays.append(a)
    columns = {}
    for m in header["columns"]:
        c = ColumnProfile(m["name"], m["dtype"], m["family"], int(m["n_rows"]), int(m["n_missing"]),
                          std=m["std"], n_unique=int(m["n_unique"]), is_bool=bool(m["is_bool"]))
        if c.family == "numeric":
            c.values = arrays[m["values"]]
            c.edges = np.asarray(m["edges"], dtype=np.float64)
        elif c.family == "categorical":
            c.categories = [_decode_key(k) for k in m["categories"]]
            c.counts = np.asarray(m["counts"], dtype=np.int64)
        columns[c.name] = c
    return ReferenceProfile(columns, header["sha256"], header["source"], int(header["n_rows"]))


def load_profile(reference: str | os.PathLike | pd.DataFrame, *, cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True, timeout: float | None = None,
                 workers: int | None = None, max_bytes: int | None = None) -> ReferenceProfile:
    """The ``ReferenceProfile`` of reference data, read from the disk cache when it is there.

    The cache key is the SHA-256 of the data (file bytes; the frame's hash for a DataFrame); a
    corrupt cache file is ignored and rewritten.
    """
    from modeldeck.core import capture

    folder = Path(cache_dir) if cache_dir is not None else default_profile_dir()
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if max_bytes is not None:
        kwargs["max_bytes"] = max_bytes
    frame: pd.DataFrame | None = None
    if isinstance(reference, pd.DataFrame):
        frame, source = reference, "<frame>"
        sha = _frame_digest(frame)
    else:
        source = str(reference)
        if capture.is_url(source):
            data, ctype = capture.fetch_bytes(source, **kwargs)
            sha = hashlib.sha256(data).hexdigest()
            if use_cache:
                cached = _try_cache(folder, sha)
                if cached is not None:
                    return cached
            frame = capture.parse_bytes(data, source, content_type=ctype)
        else:
            paths = capture.expand_source(source)
            cap = max_bytes if max_bytes is not None else capture.DEFAULT_MAX_BYTES
            total = sum(capture.check_regular(p).st_size for p in paths)
            if total > cap:  # refused before hashing it, as reading it would be
                raise InputError(f"cannot read reference {source}: {total} bytes is over the {cap}-byte cap "
                                 f"([poll] max_capture_bytes, --max-bytes)")
            try:
                sha = _file_sha256(paths)
            except OSError as e:
                raise InputError(f"cannot read reference {source}: {e.strerror or e}") from None
    if use_cache:
        cached = _try_cache(folder, sha)
        if cached is not None:
            return cached
    if frame is None:
        frame = capture.read_table(source, **kwargs)
    profile = build_profile(frame, source=source, sha256=sha, workers=workers)
    if use_cache:
        try:
            save_profile(profile, _cache_file(folder, sha))
        except (OSError, TypeError, ValueError):
            pass  # a cache we cannot write is only slower, never wrong
    return profile


def _try_cache(folder: Path, sha: str) -> ReferenceProfile | None:
    path = _cache_file(folder, sha)
    try:
        return read_profile(path, sha)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error, json.JSONDecodeError):
        try:
            path.unlink()
        except OSError:
            pass
        return None


# --------------------------------------------------------------------------- kinds


def infer_kind(series: pd.Series) -> str:
    """Evidently 0.7's ``infer_column_type`` (evidently/core/datasets.py) on one column."""
    name = series.dtype.name
    if name.startswith("float"):
        return NUMERICAL
    if name.startswith("int"):
        return CATEGORICAL if series.nunique() <= INT_CATEGORICAL_LIMIT else NUMERICAL
    if name in ("string", "str"):
        return TEXT if series.nunique() > series.count() * 0.5 else CATEGORICAL
    if name == "object":
        non_null = series.dropna()
        if non_null.count() == 0:
            return UNKNOWN
        first, last = non_null.iloc[0], non_null.iloc[-1]
        if isinstance(first, str) and isinstance(last, str):
            return TEXT if series.nunique() > series.count() * 0.5 else CATEGORICAL
        return UNKNOWN
    if name in ("bool", "category"):
        return CATEGORICAL
    return UNKNOWN


# --------------------------------------------------------------------------- results


@dataclass
class ColumnDrift:
    column: str
    kind: str | None
    method: str | None
    score: float | None
    threshold: float | None
    drifted: bool
    statistic: float | None
    p_value: float | None
    psi: float | None
    status: str
    n_reference: int
    n_current: int
    missing_share_reference: float | None
    missing_share_current: float | None
    unseen_share: float | None
    message: str
    # For a screen: bin labels and the reference / current share in each (the PSI bins of a
    # numeric column; the largest categories plus "other" of a categorical one).
    histogram: dict | None = None

    @property
    def judged(self) -> bool:
        return self.status in JUDGED

    @property
    def psi_level(self) -> str | None:
        return psi_level(self.psi)

    @property
    def missing_jump(self) -> bool:
        a, b = self.missing_share_reference, self.missing_share_current
        return a is not None and b is not None and b - a >= MISSING_JUMP


@dataclass
class DriftResult:
    dataset_drift: bool
    drift_share: float
    n_columns: int
    n_drifted: int
    columns: list[ColumnDrift]
    reference: str = ""
    current: str = ""
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict:
        return result_to_json(self)


def psi_level(psi: float | None) -> str | None:
    """``alert`` at PSI >= 0.25, ``warn`` at >= 0.1, else ``ok`` (None without a PSI)."""
    if psi is None or not math.isfinite(psi):
        return None
    return "alert" if psi >= PSI_ALERT else "warn" if psi >= PSI_WARN else "ok"


# --------------------------------------------------------------------------- statistics


def _merged(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two sorted runs merged (stable argsort: linear on two runs) and, at each position, how many
    reference elements are at or before it."""
    allv = np.concatenate((ref, cur))
    order = np.argsort(allv, kind="stable")
    merged = allv[order]
    del allv
    c1 = np.cumsum(order < ref.size)
    return merged, c1


def _ks_statistic(ref: np.ndarray, cur: np.ndarray) -> float:
    """KS D exactly as ``scipy.stats.ks_2samp`` computes it (same counts, same divisions), from sorted arrays."""
    n1, n2 = ref.size, cur.size
    merged, c1 = _merged(ref, cur)
    n = n1 + n2
    ends = np.empty(n, dtype=bool)  # last element of each run of equal values: the ECDFs' steps
    np.not_equal(merged[1:], merged[:-1], out=ends[:-1])
    ends[-1] = True
    del merged
    e = np.flatnonzero(ends)
    del ends
    c1e = c1[e]
    del c1
    cdiff = c1e / n1 - (e + 1 - c1e) / n2
    max_s = float(cdiff.max())
    min_s = float(np.clip(-cdiff.min(), 0, 1))
    return min_s if min_s > max_s else max_s


def _wasserstein_plan(n1: int, n2: int, block: int = 1 << 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The segments of the Wasserstein integral for sample sizes n1 and n2 (see ``_wasserstein``).

    W1 is the integral over t in (0, 1] of |Q_ref(t) - Q_cur(t)|; the quantile functions step at
    i / n1 and j / n2.  On the common scale n1 * n2 those steps are i * n2 and j * n1, and where each
    lands in their merged order is known in closed form, so no sort is needed.  Returns, per segment
    between consecutive steps, the reference index, the current index and the length (in units of
    1 / (n1 n2)); it depends on the sizes only, so columns of equal sizes share it.  Built in blocks of
    about ``block`` steps so the temporaries stay in cache.
    """
    index = np.int32 if n1 + n2 < 2**31 - 1 and max(n1, n2) < 2**31 - 1 else np.int64
    m_all = n1 + n2
    ref_idx = np.empty(m_all, dtype=index)
    cur_idx = np.empty(m_all, dtype=index)
    lengths = np.empty(m_all, dtype=index)
    per = max(1, (block * n1) // (n1 + n2))  # reference steps per block
    out = 0
    for a in range(0, n1, per):
        b = min(n1, a + per)
        j0, j1 = (a * n2) // n1, (b * n2) // n1  # current steps in (a n2, b n2]: j0 < j <= j1
        m_ref = b - a
        m = m_ref + j1 - j0
        i = np.arange(a + 1, b + 1, dtype=np.int64)
        pos = np.arange(m_ref, dtype=np.int64)  # ref steps before + cur steps strictly below (ties: ref first)
        pos += (i * n2 + n1 - 1) // n1 - 1 - j0
        is_ref = np.zeros(m, dtype=bool)
        is_ref[pos] = True
        steps = np.empty(m, dtype=np.int64)
        steps[pos] = i * n2
        steps[~is_ref] = np.arange(j0 + 1, j1 + 1, dtype=np.int64) * n1
        lengths[out:out + m] = np.diff(steps, prepend=a * n2)
        before = np.cumsum(is_ref)  # ref steps strictly before each segment's end: the ref quantile index
        before -= is_ref
        other = np.arange(m, dtype=np.int64)
        other -= before  # cur steps strictly before: the cur quantile index
        before += a
        other += j0
        np.minimum(before, n1 - 1, out=before)  # only zero-length segments at t = 1 reach past the end
        np.minimum(other, n2 - 1, out=other)
        ref_idx[out:out + m] = before
        cur_idx[out:out + m] = other
        out += m
    return ref_idx[:out], cur_idx[:out], lengths[:out]


def _wasserstein(ref: np.ndarray, cur: np.ndarray, plans: _Plans | None = None, block: int = 1 << 16) -> float:
    """``scipy.stats.wasserstein_distance(ref, cur)`` from sorted arrays, without merging them:
    the sum over the plan's segments of length x |ref[i] - cur[j]| (see ``_wasserstein_plan``)."""
    n1, n2 = ref.size, cur.size
    ref_idx, cur_idx, lengths = plans.get(n1, n2) if plans is not None else _wasserstein_plan(n1, n2, block)
    total = 0.0
    for s in range(0, ref_idx.size, block):
        e = s + block
        gap = ref[ref_idx[s:e]]
        gap -= cur[cur_idx[s:e]]
        np.abs(gap, out=gap)
        total += float(np.dot(gap, lengths[s:e].astype(np.float64)))
    return total / (float(n1) * float(n2))


class _Plans:
    """Wasserstein plans shared by the columns of one comparison (same sizes, same plan)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:  # one thread builds a plan, the other waits for it rather than duplicating it
            plan = self._plans.get((n1, n2))
            if plan is None:
                if len(self._plans) >= 4:
                    self._plans.pop(next(iter(self._plans)))
                plan = self._plans[(n1, n2)] = _wasserstein_plan(n1, n2)
            return plan


def _merged_ks_w(ref: np.ndarray, cur: np.ndarray, need_w: bool) -> tuple[float, float | None]:
    return _ks_statistic(ref, cur), (_wasserstein(ref, cur) if need_w else None)


def _ks(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(D, p-value) as ``scipy.stats.ks_2samp(ref, cur)`` (mode auto) gives them, from sorted arrays.

    Up to 10,000 values a side scipy's exact path is called as is; above, D comes from the merged
    sorted arrays and the p-value from scipy's asymptotic formula (kstwo.sf(D, round(n1 n2 / (n1 + n2)))).
    """
    n1, n2 = ref.size, cur.size
    if max(n1, n2) <= KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(ref, cur)
        return float(res.statistic), float(res.pvalue)
    d = _ks_statistic(ref, cur)
    m, k = sorted([float(n1), float(n2)], reverse=True)
    en = m * k / (m + k)
    prob = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))
    return d, prob


def _chisquare(keys: pd.Index, ref_counts: np.ndarray, cur_counts: np.ndarray, n_ref: int, n_cur: int
               ) -> tuple[float, float]:
    """Evidently's chi-square: expected = reference counts scaled by n_current / n_reference."""
    k_norm = n_cur / n_ref
    f_exp = [float(r) * k_norm for r in ref_counts]
    f_obs = [int(c) for c in cur_counts]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.chisquare(f_obs, f_exp)
    return float(res.statistic), float(res.pvalue)


def _chisquare_permutation(ref_counts: np.ndarray, cur_counts: np.ndarray, draws: int = PERMUTATION_DRAWS
                           ) -> tuple[float, float]:
    """Two-sample chi-square (reference vs current, a 2 x k table) with a permutation p-value.

    The current counts are redrawn ``draws`` times from the pooled counts (multivariate
    hypergeometric: the permutation distribution given both margins), so the p-value holds with
    sparse or unseen categories and counts the reference's own noise, which Evidently's chi-square
    (reference proportions taken as exact) does not.  The generator is seeded from the table, so the
    same data always gives the same p-value.  p = (1 + #{simulated >= observed}) / (draws + 1).
    """
    r = np.asarray(ref_counts, dtype=np.int64)
    c = np.asarray(cur_counts, dtype=np.int64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    if r.size > PERMUTATION_MAX_CATEGORIES:  # pool the rarest: still a valid test, on a coarser table
        big = np.argsort(-(r + c), kind="stable")
        head, tail = big[: PERMUTATION_MAX_CATEGORIES - 1], big[PERMUTATION_MAX_CATEGORIES - 1:]
        r = np.append(r[head], r[tail].sum())
        c = np.append(c[head], c[tail].sum())
    order = np.lexsort((c, r))  # a canonical column order: the result cannot depend on key order
    r, c = r[order], c[order]
    if r.size < 2:
        return 0.0, 1.0
    total = r + c
    n_all, n_cur, n_ref = int(total.sum()), int(c.sum()), int(r.sum())
    exp_c = total * (n_cur / n_all)
    exp_r = total * (n_ref / n_all)

    def statistic(cc: np.ndarray) -> np.ndarray:
        rr = total - cc
        return ((cc - exp_c) ** 2 / exp_c).sum(axis=-1) + ((rr - exp_r) ** 2 / exp_r).sum(axis=-1)

    observed = float(statistic(c))
    seed = zlib.crc32(r.tobytes(), zlib.crc32(c.tobytes()))
    sims = np.random.default_rng(seed).multivariate_hypergeometric(total, n_cur, size=draws)
    hits = int(np.count_nonzero(statistic(sims) >= observed * (1 - 1e-12)))
    return observed, (1 + hits) / (draws + 1)


def _ztest(keys: pd.Index, ref_counts: np.ndarray, cur_counts: np.ndarray, n_ref: int, n_cur: int
           ) -> tuple[float | None, float]:
    """Evidently's two-proportion Z-test (two-sided, 2 * (1 - Phi(|z|)))."""
    ref_present = [k for k, c in zip(keys, ref_counts) if c > 0]
    cur_present = [k for k, c in zip(keys, cur_counts) if c > 0]
    if len(ref_present) == 1 and len(cur_present) == 1 and ref_present[0] == cur_present[0]:
        return None, 1.0
    try:
        first = sorted(keys)[0]
    except TypeError:
        first = sorted(keys, key=str)[0]
    i = list(keys).index(first)
    n1, n2 = n_ref, n_cur
    p1 = float(n1 - int(ref_counts[i])) / n1
    p2 = float(n2 - int(cur_counts[i])) / n2
    big_p = float(p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(all="ignore"):
        z = (p1 - p2) / np.sqrt(big_p * (1 - big_p) * (1.0 / n1 + 1.0 / n2))
        p = 2 * (1 - stats.norm.cdf(np.abs(z)))
    return float(z), float(p)


def _jensenshannon(ref_counts: np.ndarray, cur_counts: np.ndarray, n_ref: int, n_cur: int) -> float:
    ref_pct = np.array([r / n_ref for r in ref_counts])
    cur_pct = np.array([c / n_cur for c in cur_counts])
    return float(distance.jensenshannon(ref_pct, cur_pct, None))


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    r = np.maximum(ref_counts / max(ref_counts.sum(), 1), PSI_FLOOR)
    c = np.maximum(cur_counts / max(cur_counts.sum(), 1), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e0), [e0, e1), ..., [e_last, inf) of a sorted array."""
    cuts = np.searchsorted(ordered, edges, side="left")
    return np.diff(np.concatenate(([0], cuts, [ordered.size])))


def _aligned(ref_vc: pd.Series, cur_vc: pd.Series) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Union of reference and current keys with both counts (0 where a key is absent)."""
    if ref_vc.index.dtype == cur_vc.index.dtype and ref_vc.index.dtype != object:
        keys = ref_vc.index.union(cur_vc.index)
        return (keys, ref_vc.reindex(keys, fill_value=0).to_numpy(np.int64),
                cur_vc.reindex(keys, fill_value=0).to_numpy(np.int64))
    # Python equality across types (1 == 1.0 == True), as Evidently's dict merge does
    counts: dict[Any, list[int]] = {}
    for k, n in zip(_py_keys(ref_vc.index), ref_vc.to_numpy()):
        counts.setdefault(k, [0, 0])[0] += int(n)
    for k, n in zip(_py_keys(cur_vc.index), cur_vc.to_numpy()):
        counts.setdefault(k, [0, 0])[1] += int(n)
    keys = pd.Index(list(counts), dtype=object)
    pairs = np.array(list(counts.values()), dtype=np.int64).reshape(-1, 2)
    return keys, pairs[:, 0], pairs[:, 1]


def _py_keys(index: pd.Index) -> list:
    return [k.item() if isinstance(k, np.generic) else k for k in index]


# --------------------------------------------------------------------------- one column


@dataclass
class _Current:
    """One current column reduced to what the tests need."""

    n_rows: int
    n_missing: int
    values: np.ndarray | None = None  # sorted finite float64 (numeric data)
    counts: pd.Series | None = None  # counts per key (categorical comparisons)


def _column_error(name: str, message: str, ref: ColumnProfile | None, n_cur_rows: int = 0,
                  n_cur_missing: int = 0, status: str = STATUS_ERROR, kind: str | None = None) -> ColumnDrift:
    return ColumnDrift(
        column=name, kind=kind, method=None, score=None, threshold=None, drifted=False, statistic=None,
        p_value=None, psi=None, status=status,
        n_reference=ref.n_values if ref else 0, n_current=n_cur_rows - n_cur_missing,
        missing_share_reference=(ref.n_missing / ref.n_rows) if ref and ref.n_rows else None,
        missing_share_current=(n_cur_missing / n_cur_rows) if n_cur_rows else None,
        unseen_share=None, message=message,
    )


def _choose_method(kind: str, n_ref: int, n_values: int) -> str:
    """Evidently's ``_get_default_stattest``."""
    if n_ref <= SMALL_REFERENCE:
        if kind == NUMERICAL and n_values > FEW_UNIQUE:
            return KS
        return CHISQUARE if n_values > 2 else Z
    if kind == NUMERICAL and n_values > FEW_UNIQUE:
        return WASSERSTEIN
    return JENSENSHANNON


def _compare_column(name: str, ref: ColumnProfile, series: pd.Series, forced_categorical: bool,
                    ref_label: str, cur_label: str, plans: _Plans | None = None) -> ColumnDrift:
    try:
        # numpy's floating-point warnings (values so large a statistic overflows) become this
        # column's error in words, never a RuntimeWarning with a source line on stderr
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            return _compare_column_inner(name, ref, series, forced_categorical, ref_label, cur_label, plans)
    except FloatingPointError as e:
        return _column_error(name, f"column '{one_line(name, 60)}': values too large or too extreme to compare "
                             f"({e})", ref, len(series), int(series.isna().sum()))
    except InputError as e:
        return _column_error(name, str(e), ref, len(series), int(series.isna().sum()))
    except (ValueError, TypeError, ArithmeticError, MemoryError) as e:  # one bad column, not the run
        return _column_error(name, f"column '{name}': cannot compare: {e}", ref, len(series),
                             int(series.isna().sum()))


def _compare_column_inner(name: str, ref: ColumnProfile, series: pd.Series, forced_categorical: bool,
                          ref_label: str, cur_label: str, plans: _Plans | None = None) -> ColumnDrift:
    n_rows = len(series)
    notes: list[str] = []
    if ref.family == "unsupported":
        return _column_error(name, f"column '{name}' in {ref_label}: {ref.dtype} values are not compared",
                             ref, n_rows, int(series.isna().sum()), status=STATUS_SKIPPED)
    n_missing = int(series.isna().sum())
    if n_missing == n_rows:
        return _column_error(name, f"column '{name}' in {cur_label} has no values (all missing)", ref,
                             n_rows, n_missing)
    kind = CATEGORICAL if forced_categorical else infer_kind(series)
    cur_numeric = None if pd.api.types.is_datetime64_any_dtype(series.dtype) else _numeric_values(series)
    if ref.family == "numeric" and cur_numeric is None and not forced_categorical:
        bad = _first_non_number(series)
        if bad is not None and not isinstance(bad, (list, tuple, dict)):
            return _column_error(
                name, f"column '{name}' in {cur_label}: non-numeric value {_short(bad)} in a column that is "
                f"numeric in {ref_label}", ref, n_rows, n_missing)
    if kind == UNKNOWN:
        return _column_error(
            name, f"column '{name}' in {cur_label}: dtype {series.dtype} is not compared "
            "(as Evidently; list it in --categorical to compare it by value)",
            ref, n_rows, n_missing, status=STATUS_SKIPPED)
    if kind == TEXT:
        ref_is_text = ref.family == "categorical" and ref.n_unique > 0.5 * ref.n_values
        if ref_is_text or ref.family != "categorical":
            return _column_error(
                name, f"column '{name}' in {cur_label}: free text (more than half the values unique) "
                "is not compared", ref, n_rows, n_missing, status=STATUS_SKIPPED)
        kind = CATEGORICAL
        notes.append("treated as categorical (few categories in the reference)")
    if kind == NUMERICAL and ref.family != "numeric":
        return _column_error(name, f"column '{name}': numbers in {cur_label} but text in {ref_label}", ref,
                             n_rows, n_missing)
    if ref.family == "categorical" and cur_numeric is not None and not forced_categorical:
        notes.append(f"text in {ref_label}, numbers in {cur_label}")

    # current values
    if cur_numeric is not None and not (forced_categorical and ref.family == "categorical"):
        is_finite = np.isfinite(cur_numeric)
        kept = cur_numeric if is_finite.all() else cur_numeric[is_finite]
        cur = _Current(n_rows, int(n_rows - kept.size), values=np.sort(kept))
    else:
        vc = _category_counts(series)
        cur = _Current(n_rows, int(n_rows - vc.sum()), counts=vc)
    n_cur = n_rows - cur.n_missing
    n_ref = ref.n_values
    miss_ref = ref.n_missing / ref.n_rows if ref.n_rows else None
    miss_cur = cur.n_missing / n_rows if n_rows else None

    if n_ref == 0:
        return _column_error(name, f"column '{name}' in {ref_label} has no values (all missing)", ref,
                             n_rows, cur.n_missing, kind=kind)
    if n_cur == 0:
        return _column_error(name, f"column '{name}' in {cur_label} has no values (all missing)", ref,
                             n_rows, cur.n_missing, kind=kind)

    use_values = kind == NUMERICAL  # KS / Wasserstein on sorted values; else counts per key
    numeric_both = ref.family == "numeric" and cur.values is not None

    # unique values over reference and current together
    cur_vc: pd.Series | None = None
    if cur.values is not None:
        if ref.family == "numeric" and ref.n_unique > FEW_UNIQUE and use_values:
            n_values = FEW_UNIQUE + 1  # already more than 5 in the reference alone
        else:
            u, c = _unique_sorted(cur.values)
            cur_vc = pd.Series(c, index=pd.Index(u, dtype="float64"))
            n_values = None
    else:
        cur_vc = cur.counts
        n_values = None
    keys = ref_cnt = cur_cnt = None
    if n_values is None:
        keys, ref_cnt, cur_cnt = _aligned(ref.value_counts(), cur_vc)
        n_values = len(keys)

    evidently_method = _choose_method(kind, n_ref, n_values)
    method = evidently_method
    permutation = n_cur < DISTANCE_MIN_SAMPLE and method in (CHISQUARE, Z, JENSENSHANNON)
    if permutation:  # small window: a p-value test that holds there (see _chisquare_permutation)
        method = CHISQUARE
    elif n_cur < DISTANCE_MIN_SAMPLE and method == WASSERSTEIN:
        method = KS
    if n_cur >= MIN_SAMPLE and permutation:
        notes.append(f"{n_cur} current values (< {DISTANCE_MIN_SAMPLE}): two-sample chi-square with a "
                     "permutation p-value" + (f" instead of {evidently_method}" if evidently_method != method else ""))
    elif n_cur >= MIN_SAMPLE and method != evidently_method:
        notes.append(f"{n_cur} current values (< {DISTANCE_MIN_SAMPLE}): {method} instead of {evidently_method}")

    statistic = p_value = score = None
    if method == KS:
        statistic, p_value = _ks(ref.values, cur.values)
        score = p_value
    elif method == WASSERSTEIN:
        statistic = _wasserstein(ref.values, cur.values, plans)
        score = statistic / max(float(ref.std), 0.001)
    else:
        if keys is None:
            keys, ref_cnt, cur_cnt = _aligned(ref.value_counts(), cur_vc)
        if permutation:
            statistic, p_value = _chisquare_permutation(ref_cnt, cur_cnt)
            score = p_value
        elif method == CHISQUARE:
            statistic, p_value = _chisquare(keys, ref_cnt, cur_cnt, n_ref, n_cur)
            score = p_value
        elif method == Z:
            statistic, p_value = _ztest(keys, ref_cnt, cur_cnt, n_ref, n_cur)
            score = p_value
        else:
            score = statistic = _jensenshannon(ref_cnt, cur_cnt, n_ref, n_cur)
    threshold = THRESHOLDS[method]
    if method == KS:
        drifted = score <= threshold
    elif method in (CHISQUARE, Z):
        drifted = score < threshold
    else:
        drifted = score >= threshold
    drifted = bool(drifted)

    # psi and unseen categories
    unseen = None
    # Quantile bins need more distinct values than bins: a 0/1 column's deciles are all 0 and
    # would put everything in one bin (PSI 0 whatever happens). Few values: one bin per value.
    if numeric_both and ref.edges is not None and ref.n_unique > PSI_BINS:
        ref_bins, cur_bins = _bin_counts(ref.values, ref.edges), _bin_counts(cur.values, ref.edges)
        psi = _psi(ref_bins, cur_bins)
        histogram = _safe_histogram(_numeric_histogram, ref.edges, ref_bins, cur_bins)
    else:
        if keys is None:
            if cur_vc is None:  # a numeric column with 6-10 distinct reference values
                u, c = _unique_sorted(cur.values)
                cur_vc = pd.Series(c, index=pd.Index(u, dtype="float64"))
            keys, ref_cnt, cur_cnt = _aligned(ref.value_counts(), cur_vc)
        psi = _psi(np.append(ref_cnt[ref_cnt > 0], 0), np.append(cur_cnt[ref_cnt > 0], cur_cnt[ref_cnt == 0].sum()))
        histogram = _safe_histogram(_category_histogram, keys, ref_cnt, cur_cnt)
    if kind == CATEGORICAL:
        if keys is None:
            keys, ref_cnt, cur_cnt = _aligned(ref.value_counts(), cur_vc)
        unseen = float(cur_cnt[ref_cnt == 0].sum() / n_cur)

    status = STATUS_DRIFT if drifted else STATUS_OK
    if ref.n_unique <= 1:
        status = STATUS_CONSTANT
        only = ref.value_counts().index[0] if ref.n_unique == 1 else None
        notes.insert(0, f"reference has no spread (every value is {_fmt_key(only)})")
    if n_cur < MIN_SAMPLE:
        status = STATUS_LOW_SAMPLE
        drifted = False
        notes.insert(0, f"only {n_cur} current values (< {MIN_SAMPLE}): not judged")
    if miss_ref is not None and miss_cur is not None and miss_cur - miss_ref >= MISSING_JUMP:
        notes.append(f"missing values jumped from {miss_ref:.1%} to {miss_cur:.1%}")
    level = psi_level(psi)
    if level in ("warn", "alert") and n_cur >= MIN_SAMPLE:
        notes.append(f"psi {psi:.3f} ({level})")
    if unseen:
        notes.append(f"{unseen:.1%} of current values in categories unseen in the reference")
    return ColumnDrift(
        column=name, kind=kind, method=method, score=finite(score), threshold=threshold, drifted=drifted,
        statistic=finite(statistic), p_value=finite(p_value), psi=finite(psi), status=status,
        n_reference=n_ref, n_current=n_cur, missing_share_reference=miss_ref, missing_share_current=miss_cur,
        unseen_share=unseen, message="; ".join(notes), histogram=histogram,
    )


def _first_non_number(series: pd.Series) -> Any:
    for x in series.dropna().array:
        if not _is_number(x):
            return x
    return None


def _short(x: Any, limit: int = 40) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt_key(k: Any) -> str:
    if isinstance(k, float) and k.is_integer():
        return str(int(k))
    return str(k)


def _edge(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e5 else f"{x:.2e}"


def _safe_histogram(fn: Any, *args: Any) -> dict | None:
    """A histogram is for display only: whatever it trips on must not decide the column."""
    try:
        return fn(*args)
    except (TypeError, ValueError, IndexError):
        return None


def _numeric_histogram(edges: np.ndarray, ref_bins: np.ndarray, cur_bins: np.ndarray) -> dict:
    """The PSI bins as labels and shares: < e0, e0–e1, ..., ≥ e_last."""
    labels = [f"< {_edge(edges[0])}"] if len(edges) else ["all"]
    labels += [f"{_edge(a)}–{_edge(b)}" for a, b in itertools.pairwise(edges)]
    if len(edges):
        labels.append(f"≥ {_edge(edges[-1])}")
    return {"labels": labels, "reference": _shares(ref_bins), "current": _shares(cur_bins)}


def _category_histogram(keys: pd.Index, ref_cnt: np.ndarray, cur_cnt: np.ndarray, top: int = 8) -> dict:
    """The ``top`` largest categories (reference and current together), the rest as "other"."""
    total = ref_cnt / max(ref_cnt.sum(), 1) + cur_cnt / max(cur_cnt.sum(), 1)
    order = np.argsort(-total, kind="stable")
    keep, rest = order[:top], order[top:]
    if pd.api.types.is_numeric_dtype(keys.dtype):
        keep = np.sort(keep)  # numbers read best in their own order (keys are sorted)
    labels = [_fmt_key(k) for k in keys[keep]]
    ref, cur = list(ref_cnt[keep]), list(cur_cnt[keep])
    if len(rest):
        labels.append(f"other ({len(rest)})")
        ref.append(ref_cnt[rest].sum())
        cur.append(cur_cnt[rest].sum())
    return {"labels": labels, "reference": _shares(np.asarray(ref)), "current": _shares(np.asarray(cur))}


def _shares(counts: np.ndarray) -> list[float]:
    total = float(np.sum(counts))
    return [round(float(c) / total, 6) if total else 0.0 for c in counts]


# --------------------------------------------------------------------------- whole comparison


def _map(fn, items: list, workers: int | None) -> list:
    n = workers if workers is not None else min(2, os.cpu_count() or 1)
    if n <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, items))


def _split_names(value: Iterable[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    names = [v.strip() for v in value if v and v.strip()]
    return names


def _align_positional(profile: ReferenceProfile, window: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Headerless capture inputs (``_c0``, ``_c1``...) take the reference's names, in order."""
    positional = [c for c in window.attrs.get("positional_columns", []) if c in window.columns]
    if not positional or any(c in profile.columns for c in positional):
        return window
    free = [c for c in profile.columns if c not in window.columns]
    if not free:
        return window
    mapping = dict(zip(positional, free))
    if len(positional) != len(free):
        notes.append(f"{len(positional)} unnamed input columns matched by position to the first "
                     f"{min(len(positional), len(free))} of {len(free)} reference columns")
    return window.rename(columns=mapping)


def compare(profile: ReferenceProfile, window: pd.DataFrame, *, categorical: Iterable[str] | str | None = None,
            columns: Iterable[str] | str | None = None, current_name: str = "current",
            drift_share: float = DATASET_DRIFT_SHARE, workers: int | None = None) -> DriftResult:
    """Compare a current window with a reference profile, column by column.

    Raises ``InputError`` for whole-input problems (no shared columns, an empty window, unknown names
    in ``columns`` / ``categorical``); a column that cannot be compared gets status ``error``.
    """
    ref_label = profile.source
    if not isinstance(window, pd.DataFrame):
        raise InputError(f"{current_name}: expected a table, got {type(window).__name__}")
    if window.shape[0] == 0:
        raise InputError(f"{current_name}: the current window is empty (no rows)")
    _check_unique_columns(window, current_name)
    notes: list[str] = []
    window = _align_positional(profile, window, notes)
    window_names = [str(c) for c in window.columns]
    if window_names != list(window.columns):
        window = window.set_axis(window_names, axis=1)
    shared = [c for c in window_names if c in profile.columns]
    wanted = _split_names(columns)
    forced = set(_split_names(categorical) or [])
    if wanted is not None:
        for c in wanted:
            if c not in window.columns:
                raise InputError(f"column '{c}' is not in {current_name} (columns: {_list(window_names)})")
            if c not in profile.columns:
                raise InputError(f"column '{c}' is not in {ref_label} (columns: {_list(profile.columns)})")
        shared = list(dict.fromkeys(wanted))
    for c in forced:
        if c not in window.columns and c not in profile.columns:
            raise InputError(f"--categorical column '{c}' is in neither {ref_label} nor {current_name}")
    if not shared:
        raise InputError(
            f"no shared columns between {ref_label} ({_list(profile.columns)}) and {current_name} "
            f"({_list(window_names)})")
    only_cur = [c for c in window_names if c not in profile.columns]
    if only_cur and wanted is None:
        notes.append(f"only in {current_name}, not compared: {_list(only_cur)}")

    plans = _Plans()

    def one(name: str) -> ColumnDrift:
        return _compare_column(name, profile.columns[name], window[name], name in forced, ref_label,
                               current_name, plans)

    results = _map(one, shared, workers)
    judged = [r for r in results if r.judged]
    n_drifted = sum(1 for r in judged if r.drifted)
    share = n_drifted / len(judged) if judged else 0.0
    return DriftResult(
        dataset_drift=bool(judged) and share >= drift_share, drift_share=share, n_columns=len(judged),
        n_drifted=n_drifted, columns=results, reference=ref_label, current=current_name, notes=notes,
    )


def compare_frames(reference: pd.DataFrame, current: pd.DataFrame, **kwargs: Any) -> DriftResult:
    """``compare(build_profile(reference), current, ...)``."""
    return compare(build_profile(reference, source=kwargs.pop("reference_name", "reference"),
                                 workers=kwargs.get("workers")), current, **kwargs)


def _list(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(one_line(n, 60) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# --------------------------------------------------------------------------- output

JSON_COLUMN_KEYS = (
    "column", "kind", "method", "score", "threshold", "drifted", "statistic", "p_value", "psi", "status",
    "n_reference", "n_current", "missing_share_reference", "missing_share_current", "unseen_share",
    "message",
)


def result_to_json(result: DriftResult, *, histograms: bool = False) -> dict:
    """The JSON of ``modeldeck drift --format json`` (also embedded per endpoint in ``--report``).
    ``histograms`` adds each column's ``histogram`` (labels, reference and current shares) for
    screens that draw the distributions; the command's JSON does not carry it."""
    def column(c: ColumnDrift) -> dict:
        d = {k: _json_value(getattr(c, k)) for k in JSON_COLUMN_KEYS}
        if histograms:
            d["histogram"] = c.histogram
        return d

    return {
        "dataset_drift": bool(result.dataset_drift),
        "drift_share": float(result.drift_share),
        "n_columns": int(result.n_columns),
        "n_drifted": int(result.n_drifted),
        "columns": [column(c) for c in result.columns],
    }


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def render_text(result: DriftResult) -> str:
    """A table a person reads in a terminal, then the verdict."""
    head = ["column", "kind", "method", "score", "thresh", "drift", "psi", "missing ref>cur", "unseen",
            "n cur", "status"]
    rows = []
    for c in result.columns:
        psi = _num(c.psi, 3)
        if c.psi_level in ("warn", "alert"):
            psi += "!" if c.psi_level == "warn" else "!!"
        rows.append([
            one_line(c.column, 80), c.kind or "-", c.method or "-", _num(c.score), _num(c.threshold, 2),
            "DRIFT" if c.drifted else "no", psi,
            f"{_share(c.missing_share_reference)}>{_share(c.missing_share_current)}",
            _share(c.unseen_share), str(c.n_current), c.status,
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    notes = [(c.column, c.message) for c in result.columns if c.message]
    if notes:
        lines.append("")
        lines.extend(f"{one_line(name, 80)}: {one_line(msg, 400)}" for name, msg in notes)
    for n in result.notes:
        lines.append(one_line(n, 400))
    lines.append("")
    verdict = "DATASET DRIFT" if result.dataset_drift else "no dataset drift"
    lines.append(
        f"{verdict}: {result.n_drifted} of {result.n_columns} judged columns drifted "
        f"(share {result.drift_share:.2f}, dataset drift at >= {DATASET_DRIFT_SHARE}); "
        f"psi warn >= {PSI_WARN}, alert >= {PSI_ALERT} (! / !!)")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the live-window job


_PROFILES: dict[tuple[str, int, int], ReferenceProfile] = {}
_PROFILES_LOCK = threading.Lock()
PROFILES_KEPT = 32


def cached_profile(reference: str, *, timeout: float | None = None, max_bytes: int | None = None) -> ReferenceProfile:
    """:func:`load_profile` with an in-process cache for local files (keyed on the path, its
    size and mtime: a reference changed in place is read again), so a poller comparing every
    few seconds hashes a reference once, not every time. URLs go to :func:`load_profile`."""
    from modeldeck.core import capture

    key = None
    if not capture.is_url(reference):
        try:
            st = os.stat(reference)
            key = (os.path.abspath(reference), st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
    if key is not None:
        with _PROFILES_LOCK:
            hit = _PROFILES.get(key)
        if hit is not None:
            return hit
    profile = load_profile(reference, timeout=timeout, max_bytes=max_bytes)
    if key is not None:
        with _PROFILES_LOCK:
            _PROFILES[key] = profile
            while len(_PROFILES) > PROFILES_KEPT:
                _PROFILES.pop(next(iter(_PROFILES)))
    return profile


def window_drift(version: str | None, reference: str | None, capture_source: str, last_n: int, *,
                 drift_share: float = DATASET_DRIFT_SHARE, timeout: float | None = None, histograms: bool = False,
                 current_name: str = "current", computed_at: Callable[[], float] = time.time,
                 max_bytes: int | None = None) -> Any:
    """The drift check of one endpoint, used by the poller, the report and (through the
    poller) the bake: the newest ``last_n`` records of ``capture_source`` compared with the
    reference profile of ``version`` (its registered ``reference`` data), summarised by
    :func:`modeldeck.core.judge.summarize_drift` (only judged columns count). Returns a
    :class:`~modeldeck.core.snapshot.DriftSummary`; a problem with the inputs (no version, no
    reference data, an unreadable or empty window, no shared columns) is its ``error``, in
    words. ``histograms`` keeps each column's distribution for the model screen."""
    from modeldeck.core import capture, judge
    from modeldeck.core.snapshot import DriftSummary

    def problem(text: str) -> Any:
        return DriftSummary(error=text, computed_at=computed_at(), version=version)

    if version is None:
        return problem("the served version is unknown, so is its reference data")
    try:
        int(version)
    except ValueError:
        return problem(f"served version {one_line(version, 24)} is not a registry version")
    if not reference:
        return problem(f"version {version} has no reference data (register it with --reference)")
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if max_bytes is not None:
        kwargs["max_bytes"] = max_bytes
    try:
        profile = cached_profile(reference, timeout=timeout, max_bytes=max_bytes)
        window = capture.read_window(capture_source, last_n, **kwargs)
        result = compare(profile, window, drift_share=drift_share, current_name=current_name)
    except InputError as e:
        return problem(str(e))
    data = result_to_json(result, histograms=histograms)
    return judge.summarize_drift(data, version=version, computed_at=computed_at(), rows=len(window))


def compare_files(reference: str, current: str, *, categorical: list[str] | None = None,
                  columns: list[str] | None = None, max_bytes: int | None = None) -> DriftResult:
    """``modeldeck drift REFERENCE CURRENT``: the whole ``current`` data (any format
    ``core.capture`` reads) against ``reference``'s profile. ``InputError`` on bad input; the
    command line renders the result (``render_text`` / ``result_to_json``)."""
    from modeldeck.core import capture

    cap = capture.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    profile = load_profile(reference, max_bytes=cap)
    window = capture.read_window(current, None, max_bytes=cap)
    result = compare(profile, window, categorical=categorical, columns=columns, current_name=str(current))
    errors = [c for c in result.columns if c.status == STATUS_ERROR]
    if not result.n_columns and errors:  # nothing could be compared: the input is bad, not "no drift"
        more = f" (and {len(errors) - 1} more columns)" if len(errors) > 1 else ""
        raise InputError(f"nothing could be compared: {errors[0].message}{more}")
    return result
