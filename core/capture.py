"""Readers for reference data and live input windows.

Public API:

    read_window(source, last_n, *, timeout=10.0, max_bytes=DEFAULT_MAX_BYTES) -> pandas.DataFrame
        The last ``last_n`` records (all of them with ``None``) of ``source``.
    read_table(source, *, timeout=10.0, max_bytes=DEFAULT_MAX_BYTES) -> pandas.DataFrame
        All records (reference data).
    expand_source(source) -> list[Path]        files of a path or glob, oldest first
    fetch_bytes(url, *, timeout, max_bytes) -> (bytes, content_type)
    parse_bytes(data, name, *, content_type=None) -> pandas.DataFrame

``source`` is a file, a glob (``captures/churn/**/*.jsonl``: the newest files, by modification time,
are read first until there are ``last_n`` records) or an http(s) URL (read with httpx, at most
``max_bytes``, ``timeout`` seconds).  Formats, by extension or content: CSV (``.csv``, ``.tsv``, also
gzipped), Parquet (``.parquet``, ``.pq``), JSON lines (``.jsonl``, ``.ndjson``, ``.json``: one object per
line, or one JSON array of objects) and SageMaker data-capture JSON lines (records with
``captureData``).

SageMaker capture: ``captureData.endpointInput`` and ``endpointOutput`` are decoded by their
``encoding`` (CSV, JSON, BASE64 -> by ``observedContentType``).  A CSV payload is one row per line with
no header: its input columns are named ``_c0``, ``_c1``... and listed in
``window.attrs["positional_columns"]`` (``core.drift.compare`` gives them the reference's column names
by position).  JSON payloads may be a record, a list of records or of rows, ``{"instances": ...}``,
``{"inputs": ...}``, ``{"features": ...}``, MLflow's ``dataframe_split`` / ``dataframe_records`` or
Open Inference Protocol v2 tensors.  Outputs are columns like the inputs, so prediction drift shows
too: a single unnamed output is ``prediction``, several are ``prediction_0``, ``prediction_1``...,
named outputs (dict keys, OIP tensor names) keep their names.  ``eventMetadata.inferenceTime``
becomes the window's index (``inference_time``): a window is the last records as written (file order;
files by modification time), then put in inference-time order.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import glob
import gzip
import hashlib
import io
import json
import math
import os
import stat
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from modeldeck.core.errors import InputError
from modeldeck.core.textfmt import one_line

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "check_regular",
    "expand_source",
    "fetch_bytes",
    "is_url",
    "parse_bytes",
    "parse_capture_lines",
    "read_labels",
    "read_table",
    "read_window",
    "row_key",
]

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

CSV_EXT = (".csv", ".tsv", ".txt")
PARQUET_EXT = (".parquet", ".pq")
JSON_EXT = (".jsonl", ".ndjson", ".json", ".jsonlines")
OUTPUT = "prediction"
POSITIONAL = "_c"
ID = "_id"  # the join key of a captured row or a label (read_window(ids=True), read_labels)
LABEL = "label"
LABEL_TIME = "_label_time"
VERSION = "_version"  # read_window(ids=True): the model version an OIP answer names (model_version)
INFERENCE_ID = "_inference_id"  # read_window(ids=True): eventMetadata.inferenceId, when eventId is there too


def row_key(event: Any, i: int) -> str | None:
    """The key of row ``i`` of a SageMaker event: its event id for the first row (a request of
    one row, the common case), ``ID#i`` for the others of a batch."""
    if event is None:
        return None
    return str(event) if i == 0 else f"{event}#{i}"


def is_url(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _has_magic(source: str) -> bool:
    return glob.has_magic(source)


def expand_source(source: str | os.PathLike) -> list[Path]:
    """The files a path or glob names, oldest (modification time, then name) first."""
    text = str(source)
    if not text:
        raise InputError("empty data path")
    if _has_magic(text):
        paths = [Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)]
        paths = [p for p in paths if p.is_file()]
        if not paths:
            raise InputError(f"no files match {text}")
        return sorted(paths, key=_age_key)
    path = Path(os.path.expanduser(text))
    if not path.exists():
        raise InputError(f"cannot read {text}: no such file")
    if path.is_dir():
        raise InputError(f"cannot read {text}: it is a directory (use a glob like {text}/*.jsonl)")
    check_regular(path, text)
    return [path]


def check_regular(path: Path, name: str | None = None) -> os.stat_result:
    """``path``'s stat when it is a regular file; a FIFO (reading it would wait for a writer
    forever), a device (``/dev/zero`` never ends) or a socket is refused in words."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise InputError(f"cannot read {name or path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"cannot read {name or path}: not a regular file ({_file_kind(st.st_mode)}); "
                         f"data is read from files, globs or URLs")
    return st


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _too_big(name: str, size: int, max_bytes: int, what: str = "") -> InputError:
    return InputError(f"cannot read {name}: {what}{size} bytes is over the {max_bytes}-byte cap "
                      f"([poll] max_capture_bytes, --max-bytes)")


def _age_key(p: Path) -> tuple[int, str]:
    try:
        return (p.stat().st_mtime_ns, str(p))
    except OSError:
        return (0, str(p))


# --------------------------------------------------------------------------- HTTP


def fetch_bytes(url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
                headers: dict[str, str] | None = None) -> tuple[bytes, str | None]:
    """GET a URL into memory: at most ``max_bytes``, ``timeout`` seconds per network step."""
    import httpx

    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client, client.stream(
                "GET", url, headers=headers) as resp:
            if resp.status_code >= 400:
                raise InputError(f"cannot read {url}: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise InputError(f"cannot read {url}: {int(declared)} bytes is over the {max_bytes}-byte cap")
            chunks = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise InputError(f"cannot read {url}: more than the {max_bytes}-byte cap")
                chunks.append(chunk)
            return b"".join(chunks), resp.headers.get("content-type")
    except httpx.TimeoutException:
        raise InputError(f"cannot read {url}: timed out after {timeout:g} s") from None
    except httpx.HTTPError as e:
        raise InputError(f"cannot read {url}: {type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------- format detection


def _strip_gz(name: str) -> tuple[str, bool]:
    low = name.lower()
    if low.endswith(".gz"):
        return low[:-3], True
    return low, False


def _format_of(name: str, head: bytes, content_type: str | None = None) -> str:
    low, _ = _strip_gz(urlparse(name).path if is_url(name) else name)
    if low.endswith(PARQUET_EXT):
        return "parquet"
    if low.endswith(JSON_EXT):
        return "json"
    if low.endswith(CSV_EXT):
        return "csv"
    ctype = (content_type or "").lower()
    if "parquet" in ctype:
        return "parquet"
    if "json" in ctype:
        return "json"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "csv"


GZIP_ERRORS = (OSError, EOFError, zlib.error)


def _open_bytes(data: bytes, name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """``data``, gunzipped when it is gzip: at most ``max_bytes`` decompressed (a small file
    may inflate to gigabytes)."""
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                out = f.read(max_bytes + 1)
        except GZIP_ERRORS as e:
            raise InputError(f"cannot read {name}: bad gzip data ({_one_line(e)})") from None
        if len(out) > max_bytes:
            raise InputError(f"cannot read {name}: more than {max_bytes} bytes once decompressed "
                             f"([poll] max_capture_bytes, --max-bytes)")
        return out
    return data


# --------------------------------------------------------------------------- parsing


def parse_bytes(data: bytes, name: str, *, content_type: str | None = None, ids: bool = False,
                max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Parse a whole file's bytes (any supported format) into a DataFrame (``ids``: SageMaker
    capture rows carry their event key in an ``_id`` column)."""
    with _bounded(name):
        return _parse_bytes(data, name, content_type, ids, max_bytes)


def _parse_bytes(data: bytes, name: str, content_type: str | None, ids: bool, max_bytes: int) -> pd.DataFrame:
    data = _open_bytes(data, name, max_bytes)
    fmt = _format_of(name, data[:16], content_type)
    if fmt == "parquet":
        return _read_parquet(io.BytesIO(data), name)
    if fmt == "json":
        return _parse_json_text(_decode(data, name), name, ids=ids)
    return _read_csv(io.BytesIO(data), name)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {name}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_csv(src: Any, name: str, sep: str | None = None) -> pd.DataFrame:
    low, _ = _strip_gz(str(name))
    if sep is None:
        sep = "\t" if low.endswith(".tsv") else ","
    try:
        frame = pd.read_csv(src, sep=sep, compression="infer" if isinstance(src, (str, Path)) else None)
    except pd.errors.EmptyDataError:
        raise InputError(f"cannot read {name}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, *GZIP_ERRORS) as e:
        raise InputError(f"cannot read {name}: {_one_line(e)}") from None
    return frame


def _read_parquet(src: Any, name: str, last_n: int | None = None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(src)
        if last_n is None or last_n >= pf.metadata.num_rows:
            table = pf.read()
        else:
            groups: list[int] = []
            rows = 0
            for g in range(pf.num_row_groups - 1, -1, -1):
                groups.insert(0, g)
                rows += pf.metadata.row_group(g).num_rows
                if rows >= last_n:
                    break
            table = pf.read_row_groups(groups)
            table = table.slice(max(0, table.num_rows - last_n))
        return table.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(f"cannot read {name}: not a readable Parquet file ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def _bounded(name: str) -> Iterator[None]:
    """Whole-input failures that are not ours to raise, as one line: JSON (or a payload in it)
    nested deeper than Python's recursion limit, a corrupt compressed stream."""
    try:
        yield
    except RecursionError:
        raise InputError(f"cannot read {name}: nested too deeply (JSON more than about "
                         f"{sys.getrecursionlimit()} levels deep)") from None
    except zlib.error as e:
        raise InputError(f"cannot read {name}: bad compressed data ({_one_line(e)})") from None


def _is_capture(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("captureData"), dict)


def _parse_json_text(text: str, name: str, last_n: int | None = None, ids: bool = False) -> pd.DataFrame:
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"cannot read {name}: the file is empty")
    if stripped[0] == "[":  # one JSON array of records
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise InputError(f"cannot read {name}: bad JSON at line {e.lineno}: {e.msg}") from None
        if isinstance(obj, list) and obj and _is_capture(obj[0]):
            return _capture_frame([_capture_rows(o, name, i + 1) for i, o in enumerate(obj)], None, ids)
        if not isinstance(obj, list) or not all(isinstance(o, dict) for o in obj):
            raise InputError(f"cannot read {name}: expected a JSON array of objects (records)")
        return _records_frame([(i + 1, o) for i, o in enumerate(obj)], name, last_n, ids)
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    records = []
    for k, (lineno, line) in enumerate(lines):
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            if k == len(lines) - 1 and not text.endswith("\n"):
                break  # the record being written right now: whole lines only
            raise InputError(f"cannot read {name}: bad JSON on line {lineno}: {e.msg}") from None
    return _records_frame(records, name, last_n, ids)


def _records_frame(records: list[tuple[int, Any]], name: str, last_n: int | None,
                   ids: bool = False) -> pd.DataFrame:
    if not records:
        raise InputError(f"cannot read {name}: no records")
    if _is_capture(records[0][1]):
        parsed = [_capture_rows(o, name, ln) for ln, o in records]
        return _capture_frame(parsed, last_n, ids)
    rows = []
    for lineno, obj in records:
        if not isinstance(obj, dict):
            raise InputError(f"cannot read {name}: line {lineno} is not a JSON object")
        rows.append(obj)
    if last_n is not None:
        rows = rows[-last_n:] if last_n > 0 else []
    return pd.DataFrame.from_records(rows)


# --------------------------------------------------------------------------- SageMaker capture


class _Rows:
    """Rows of one capture record: inputs and outputs (lists of dicts) and the inference time."""

    __slots__ = ("event", "inference", "inputs", "outputs", "positional", "time", "version")

    def __init__(self, inputs: list[dict], outputs: list[dict], positional: list[str], time: Any,
                 event: Any = None, version: Any = None, inference: Any = None):
        self.inputs, self.outputs, self.positional, self.time = inputs, outputs, positional, time
        self.event, self.version, self.inference = event, version, inference

    def __len__(self) -> int:
        return max(len(self.inputs), len(self.outputs))


def _payload_text(payload: dict, name: str, lineno: int, side: str) -> tuple[str, str]:
    """(text, kind) of a capture payload, kind 'csv' or 'json'."""
    data = payload.get("data")
    if data is None:
        return "", "csv"
    if not isinstance(data, str):
        return json.dumps(data), "json"
    encoding = str(payload.get("encoding", "")).upper()
    ctype = str(payload.get("observedContentType", "")).lower()
    if encoding == "BASE64":
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise InputError(f"cannot read {name}: line {lineno}: {side} is not base64 ({e})") from None
        if raw[:2] == b"\x1f\x8b":
            raw = _open_bytes(raw, f"{name}: line {lineno}: {side}")
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"cannot read {name}: line {lineno}: {side} is not UTF-8 text "
                             f"({payload.get('observedContentType')})") from None
        kind = "json" if "json" in ctype else "csv" if "csv" in ctype else _guess_kind(data)
    elif encoding == "JSON":
        kind = "json"
    elif encoding == "CSV":
        kind = "csv"
    else:
        kind = "json" if "json" in ctype else "csv" if "csv" in ctype else _guess_kind(data)
    return data, kind


def _guess_kind(text: str) -> str:
    return "json" if text.lstrip()[:1] in ("{", "[") else "csv"


def _scalar(text: str) -> Any:
    t = text.strip()
    if t == "":
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
        return v
    except ValueError:
        return t


def _csv_rows(text: str) -> list[list[Any]]:
    return [[_scalar(x) for x in row] for row in csv.reader(io.StringIO(text)) if row]


def _positional(values: list[Any], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{i}": v for i, v in enumerate(values)}


def _output_names(k: int) -> list[str]:
    return [OUTPUT] if k == 1 else [f"{OUTPUT}_{i}" for i in range(k)]


def _oip_tensors(tensors: list[dict], role: str) -> tuple[list[dict], bool]:
    """Open Inference Protocol v2 tensors -> rows; (rows, positional)."""
    columns: dict[str, list] = {}
    positional = False
    single = len(tensors) == 1
    for t in tensors:
        name = str(t.get("name", "input" if role == "input" else OUTPUT))
        data = t.get("data", [])
        shape = t.get("shape") or [len(_flatten(data))]
        flat = _flatten(data)
        n = int(shape[0]) if shape else len(flat)
        k = int(math.prod(shape[1:])) if len(shape) > 1 else 1
        if n * k != len(flat) or n == 0:
            n, k = len(flat), 1
        if k == 1:
            col = OUTPUT if (role == "output" and single and name == "") else name
            columns[col] = flat[:n]
        else:
            if single and role == "input":
                positional = True
                names = [f"{POSITIONAL}{j}" for j in range(k)]
            elif single and role == "output":
                names = _output_names(k)
            else:
                names = [f"{name}_{j}" for j in range(k)]
            for j, nm in enumerate(names):
                columns[nm] = flat[j::k][:n]
    n_rows = max((len(v) for v in columns.values()), default=0)
    rows = [{c: (v[i] if i < len(v) else None) for c, v in columns.items()} for i in range(n_rows)]
    return rows, positional


def _flatten(data: Any) -> list:
    if isinstance(data, list):
        out: list = []
        for x in data:
            out.extend(_flatten(x)) if isinstance(x, list) else out.append(x)
        return out
    return [data]


def _json_rows(obj: Any, role: str, n_inputs: int | None = None) -> tuple[list[dict], bool]:
    """Rows (dicts) from a JSON payload; (rows, positional)."""
    prefix = POSITIONAL if role == "input" else None
    if isinstance(obj, dict):
        if "instances" in obj:
            return _json_rows(obj["instances"], role, n_inputs)
        for key in ("predictions", "outputs") if role == "output" else ("inputs",):
            if key in obj:
                value = obj[key]
                if isinstance(value, list) and value and all(
                        isinstance(t, dict) and "data" in t for t in value):
                    return _oip_tensors(value, role)
                return _json_rows(value, role, n_inputs)
        if "dataframe_split" in obj and isinstance(obj["dataframe_split"], dict):
            split = obj["dataframe_split"]
            cols = [str(c) for c in split.get("columns", [])]
            return [dict(zip(cols, r)) for r in split.get("data", [])], not cols
        if "dataframe_records" in obj:
            return _json_rows(obj["dataframe_records"], role, n_inputs)
        for key in ("features", "data"):
            if key in obj and len(obj) <= 2 and isinstance(obj[key], list):
                return _json_rows(obj[key], role, n_inputs)
        values = list(obj.values())
        if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
            keys = [str(k) for k in obj]
            return [dict(zip(keys, r)) for r in zip(*values)], False
        return [{str(k): _cell(v) for k, v in obj.items()}], False
    if isinstance(obj, list):
        if not obj:
            return [], False
        if all(isinstance(x, dict) for x in obj):
            return [{str(k): _cell(v) for k, v in x.items()} for x in obj], False
        if all(isinstance(x, list) for x in obj):
            if role == "input":
                return [_positional([_cell(v) for v in x], prefix) for x in obj], True
            return [dict(zip(_output_names(len(x)), [_cell(v) for v in x])) for x in obj], False
        # a flat list: one row of features (input), or one prediction per input row (output)
        if role == "input":
            return [_positional([_cell(v) for v in obj], prefix)], True
        if n_inputs is not None and len(obj) == n_inputs:
            return [{OUTPUT: _cell(v)} for v in obj], False
        if n_inputs == 1:
            return [dict(zip(_output_names(len(obj)), [_cell(v) for v in obj]))], False
        return [{OUTPUT: _cell(v)} for v in obj], False
    if role == "input":
        return [{f"{POSITIONAL}0": obj}], True
    return [{OUTPUT: obj}], False


def _cell(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 1:
        return v[0]
    return v


def _capture_rows(rec: Any, name: str, lineno: int) -> _Rows:
    if not _is_capture(rec):
        raise InputError(f"cannot read {name}: line {lineno} is not a data-capture record")
    cd = rec["captureData"]
    inputs: list[dict] = []
    positional: list[str] = []
    payload = cd.get("endpointInput")
    if isinstance(payload, dict):
        text, kind = _payload_text(payload, name, lineno, "endpointInput")
        if kind == "csv":
            inputs = [_positional(r, POSITIONAL) for r in _csv_rows(text)]
            pos = True
        else:
            try:
                obj = json.loads(text) if text.strip() else []
            except json.JSONDecodeError as e:
                raise InputError(f"cannot read {name}: line {lineno}: endpointInput is not JSON ({e.msg})") from None
            inputs, pos = _json_rows(obj, "input")
        if pos and inputs:
            positional = list(inputs[0])
    outputs: list[dict] = []
    version = None
    payload = cd.get("endpointOutput")
    if isinstance(payload, dict):
        text, kind = _payload_text(payload, name, lineno, "endpointOutput")
        if kind == "csv":
            rows = _csv_rows(text)
            if len(rows) == 1 and inputs and len(inputs) > 1 and len(rows[0]) == len(inputs):
                rows = [[v] for v in rows[0]]  # one line of predictions for a batch
            outputs = [dict(zip(_output_names(len(r)), r)) for r in rows]
        else:
            try:
                obj = json.loads(text) if text.strip() else []
            except json.JSONDecodeError as e:
                raise InputError(f"cannot read {name}: line {lineno}: endpointOutput is not JSON ({e.msg})") from None
            outputs, _ = _json_rows(obj, "output", len(inputs) if inputs else None)
            if isinstance(obj, dict) and isinstance(obj.get("model_version"), (str, int)):
                version = str(obj["model_version"])  # an Open Inference Protocol answer says who answered
    meta = rec.get("eventMetadata") or {}
    if not isinstance(meta, dict):
        return _Rows(inputs, outputs, positional, None, None, version)
    event, inference = meta.get("eventId"), meta.get("inferenceId")
    if event is None:
        event, inference = inference, None
    return _Rows(inputs, outputs, positional, meta.get("inferenceTime"), None if event is None else str(event),
                 version, None if inference is None else str(inference))


def _capture_frame(parsed: list[_Rows], last_n: int | None = None, ids: bool = False) -> pd.DataFrame:
    rows: list[dict] = []
    times: list[Any] = []
    positional: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for r in parsed:
        n = len(r)
        for i in range(n):
            row: dict[str, Any] = {}
            if ids:
                row[ID] = row_key(r.event, i)
                if r.version is not None:
                    row[VERSION] = r.version
                if r.inference is not None:  # ground truth may name the request by its inferenceId
                    row[INFERENCE_ID] = row_key(r.inference, i)
            if i < len(r.inputs):
                row.update(r.inputs[i])
            if i < len(r.outputs):
                for k, v in r.outputs[i].items():
                    key = k if k not in row else f"{k}_output"
                    row[key] = v
                    outputs[key] = None
            rows.append(row)
            times.append(r.time)
        positional.update(dict.fromkeys(r.positional))
    if last_n is not None:  # the last records as written, then in inference-time order
        rows, times = (rows[len(rows) - last_n:], times[len(times) - last_n:]) if last_n > 0 else ([], [])
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    index = pd.to_datetime(pd.Series(times, dtype=object), errors="coerce", utc=True)
    frame.index = pd.DatetimeIndex(index, name="inference_time")
    if len(frame) and not frame.index.isna().any():
        frame = frame.iloc[frame.index.argsort(kind="stable")]
    frame.attrs["positional_columns"] = [c for c in positional if c in frame.columns]
    frame.attrs["output_columns"] = [c for c in outputs if c in frame.columns]
    return frame


def parse_capture_lines(lines: list[str], name: str = "<capture>", last_n: int | None = None) -> pd.DataFrame:
    """SageMaker data-capture JSON lines -> a window (see the module docstring)."""
    records = []
    for i, line in enumerate(lines):
        if line.strip():
            try:
                records.append((i + 1, json.loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(f"cannot read {name}: bad JSON on line {i + 1}: {e.msg}") from None
    return _capture_frame([_capture_rows(o, name, ln) for ln, o in records], last_n)


# --------------------------------------------------------------------------- files


LINE_LIMIT = 64 << 20  # bytes of one record (line) read from the end of a file


def _reverse_lines(path: Path, *, budget: int, block: int = 1 << 20, stop: int = 0) -> Iterator[bytes]:
    """The non-empty lines of a file, last first, reading blocks from the end: at most
    ``budget`` bytes in all and LINE_LIMIT for one line (a hole of NULs, or a file without line
    breaks, is refused in words instead of read into memory); lines starting before ``stop``
    (a header) are not yielded."""
    name = str(path)
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        tail = b""
        used = 0
        while pos > stop:
            step = min(block, pos - stop)
            pos -= step
            used += step
            if used > budget:
                raise InputError(f"cannot read {name}: the last records are not within the last {budget} bytes "
                                 f"([poll] max_capture_bytes, --max-bytes)")
            f.seek(pos)
            chunk = f.read(step) + tail
            parts = chunk.split(b"\n")
            tail = parts[0]
            if len(tail) > LINE_LIMIT:
                raise InputError(f"cannot read {name}: a line longer than {LINE_LIMIT >> 20} MiB near byte {pos} "
                                 f"(not line-delimited records)")
            for line in reversed(parts[1:]):
                if line.strip():
                    yield line
        if tail.strip():
            yield tail


def _read_json_tail(path: Path, name: str, last_n: int, ids: bool = False,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """The last ``last_n`` rows of a JSON-lines file without reading all of it: memory is
    bounded by the window, not the file."""
    picked: list[tuple[int, Any]] = []
    parsed: list[_Rows] = []
    rows = 0
    capture = None
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        complete = f.read(1) == b"\n"
    for k, raw in enumerate(_reverse_lines(path, budget=max_bytes)):
        if capture is not False:
            key = hashlib.blake2b(raw, digest_size=16).digest()
            hit = _ROWS_CACHE.get(key)
            if hit is not None:
                capture = True
                parsed.append(hit)
                rows += len(hit)
                if rows >= last_n:
                    break
                continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if k == 0 and not complete:
                continue  # the record being written right now: whole lines only
            msg = getattr(e, "msg", None) or str(e)
            raise InputError(f"cannot read {name}: bad JSON on line {k + 1} from the end: {one_line(msg, 80)}") from None
        if capture is None:
            capture = _is_capture(obj)
        if capture:
            got = _capture_rows(obj, name, -k)
            _ROWS_CACHE.put(key, got)
            parsed.append(got)
            rows += len(got)
        else:
            picked.append((-k, obj))
            rows += 1
        if rows >= last_n:
            break
    if capture:
        parsed.reverse()
        return _capture_frame(parsed, last_n, ids)
    picked.reverse()
    return _records_frame(picked, name, last_n, ids)


class _RowsCache:
    """Capture records already decoded, by a 128-bit hash of their line: a window read every
    few seconds from a growing capture file decodes only the records new since the last read
    (decoding was most of the TUI's CPU on the demo). Bounded in entries; thread-safe (drift
    and quality read in worker threads). A cached record's rows are never changed by readers
    (``_capture_frame`` copies them)."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._d: OrderedDict[bytes, _Rows] = OrderedDict()

    def get(self, key: bytes) -> _Rows | None:
        with self._lock:
            got = self._d.get(key)
            if got is not None:
                self._d.move_to_end(key)
            return got

    def put(self, key: bytes, rows: _Rows) -> None:
        with self._lock:
            self._d[key] = rows
            if len(self._d) > self.limit:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_ROWS_CACHE = _RowsCache()


def _read_csv_tail(path: Path, name: str, last_n: int, max_bytes: int) -> pd.DataFrame | None:
    """The header and the last ``last_n`` rows of a plain CSV/TSV without reading the rest;
    None when the tail holds a quote (a quoted field may span lines: read it whole instead)."""
    with open(path, "rb") as f:
        header = f.readline(LINE_LIMIT + 1)
    if len(header) > LINE_LIMIT or not header.endswith(b"\n"):
        return None
    lines: list[bytes] = []
    for raw in _reverse_lines(path, budget=max_bytes, stop=len(header)):
        if b'"' in raw:
            return None
        lines.append(raw)
        if len(lines) >= last_n:
            break
    lines.reverse()
    return _read_csv(io.BytesIO(header + b"\n".join(lines) + b"\n"), name)


def read_file(path: Path, last_n: int | None = None, ids: bool = False,
              max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """One file (any supported format), or its last ``last_n`` records. A regular file only;
    a whole read (or a gzipped one, decompressed) is at most ``max_bytes``; a window of the
    last records of JSON lines or a CSV reads from the end of the file."""
    name = str(path)
    with _bounded(name):
        return _read_file(path, name, last_n, ids, max_bytes)


def _read_file(path: Path, name: str, last_n: int | None, ids: bool, max_bytes: int) -> pd.DataFrame:
    st = check_regular(path, name)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    if not head:
        raise InputError(f"cannot read {name}: the file is empty")
    gz = head[:2] == b"\x1f\x8b"
    if gz:
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(16)
        except GZIP_ERRORS as e:
            raise InputError(f"cannot read {name}: bad gzip data ({_one_line(e)})") from None
    fmt = _format_of(name, head)
    tail = last_n is not None and last_n > 0 and not gz
    if fmt == "json" and tail and head.lstrip()[:1] != b"[":
        return _read_json_tail(path, name, last_n, ids, max_bytes)  # type: ignore[arg-type]
    if fmt == "csv" and tail:
        frame = _read_csv_tail(path, name, last_n, max_bytes)  # type: ignore[arg-type]
        if frame is not None:
            return frame
    if st.st_size > max_bytes:
        raise _too_big(name, st.st_size, max_bytes)
    if fmt == "parquet":
        if gz:
            return _read_parquet(io.BytesIO(_read_all(path, name, max_bytes)), name, last_n)
        return _read_parquet(str(path), name, last_n)
    if fmt == "json":
        return _parse_json_text(_decode(_read_all(path, name, max_bytes), name), name, last_n, ids)
    frame = _read_csv(io.BytesIO(_read_all(path, name, max_bytes)), name)
    return frame.tail(last_n) if last_n is not None else frame


def _read_all(path: Path, name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A regular file's bytes (gunzipped), at most ``max_bytes`` either way."""
    st = check_regular(path, name)
    if st.st_size > max_bytes:
        raise _too_big(name, st.st_size, max_bytes)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    if len(data) > max_bytes:  # it grew meanwhile
        raise _too_big(name, len(data), max_bytes)
    return _open_bytes(data, name, max_bytes)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f.shape[1] or len(f)]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    positional: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for f in frames:
        positional.update(dict.fromkeys(f.attrs.get("positional_columns", [])))
        outputs.update(dict.fromkeys(f.attrs.get("output_columns", [])))
    out = pd.concat(frames, axis=0)
    if isinstance(out.index, pd.DatetimeIndex) and not out.index.isna().any():
        out = out.iloc[out.index.argsort(kind="stable")]
    elif not isinstance(out.index, pd.DatetimeIndex):
        out = out.reset_index(drop=True)
    out.attrs["positional_columns"] = [c for c in positional if c in out.columns]
    if outputs:
        out.attrs["output_columns"] = [c for c in outputs if c in out.columns]
    return out


def read_window(source: str | os.PathLike, last_n: int | None, *, timeout: float = DEFAULT_TIMEOUT,
                max_bytes: int = DEFAULT_MAX_BYTES, ids: bool = False) -> pd.DataFrame:
    """The last ``last_n`` records of a file, glob or URL (all of them with ``last_n=None``).
    ``ids``: SageMaker capture rows carry their event key (:func:`row_key`) in an ``_id``
    column (quality joins them with labels on it)."""
    if last_n is not None and last_n < 0:
        raise InputError(f"last_n must be >= 0, got {last_n}")
    text = str(source)
    if is_url(text):
        data, ctype = fetch_bytes(text, timeout=timeout, max_bytes=max_bytes)
        frame = parse_bytes(data, text, content_type=ctype, ids=ids, max_bytes=max_bytes)
        return _tail(frame, last_n)
    paths = expand_source(text)
    if len(paths) == 1:
        return _tail(read_file(paths[0], last_n, ids, max_bytes), last_n)
    if last_n is None:
        total = sum(_size(p) for p in paths)
        if total > max_bytes:
            raise _too_big(text, total, max_bytes, f"{len(paths)} files of ")
    frames: list[pd.DataFrame] = []
    rows = 0
    for p in reversed(paths):  # newest first
        need = None if last_n is None else last_n - rows
        if need is not None and need <= 0:
            break
        try:
            f = read_file(p, need, ids, max_bytes)
        except InputError:
            if not p.exists():  # rotated away since the glob was expanded: its records are gone
                continue
            raise
        frames.insert(0, f)
        rows += len(f)
    return _tail(_concat(frames), last_n)


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _tail(frame: pd.DataFrame, last_n: int | None) -> pd.DataFrame:
    if last_n is None or len(frame) <= last_n:
        return frame
    attrs = dict(frame.attrs)
    out = frame.iloc[len(frame) - last_n:]
    out.attrs.update(attrs)
    return out


def read_table(source: str | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT,
               max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """All records of a file, glob or URL (reference data)."""
    return read_window(source, None, timeout=timeout, max_bytes=max_bytes)


# --------------------------------------------------------------------------- labels (ground truth)

ID_COLUMNS = ("event_id", "eventId", "inference_id", "inferenceId", "id")  # tried when none is configured
LABEL_TIME_COLUMNS = ("label_time", "labelTime")


def _is_ground_truth(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("groundTruthData"), dict)


def read_labels(source: str | os.PathLike, *, id_column: str | None = None, label_column: str = LABEL,
                timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES,
                modified_after: float | None = None, skipped: list[Path] | None = None) -> pd.DataFrame:
    """Ground truth from a file, glob or URL (the same limits as :func:`read_window`): a frame
    of ``_id`` (the join key), ``label`` and ``_label_time`` (UTC; NaT when not known), oldest
    first, so the last row of an id is its newest label.

    Formats: SageMaker Model Monitor ground-truth JSON lines (``groundTruthData.data``, one
    label per row of the captured request, comma-separated; the key ``eventMetadata.eventId``,
    or ``inferenceId``, as :func:`row_key` makes it for a batch; ``eventMetadata.labelTime``
    when present), or any CSV / JSON lines / Parquet file with an id column (``id_column``,
    else the first of event_id, eventId, inference_id, inferenceId, id) and ``label_column``
    (and ``label_time`` when present). Labels are ordered by their label time when every one
    has it, else as written (files oldest first). ``modified_after`` (epoch seconds): files of a
    glob last written before it are skipped (they cannot hold a label of a newer prediction),
    so a long label history costs only its recent files; each file so skipped is appended to
    ``skipped`` when given (quality counts them: nothing is dropped silently)."""
    text = str(source)
    frames: list[pd.DataFrame] = []
    if is_url(text):
        data, ctype = fetch_bytes(text, timeout=timeout, max_bytes=max_bytes)
        with _bounded(text):
            frames.append(_labels_from_bytes(data, text, ctype, id_column, label_column))
    else:
        paths = expand_source(text)
        if modified_after is not None and len(paths) > 1:
            recent = [p for p in paths if _age_key(p)[0] / 1e9 >= modified_after]
            kept = recent or paths[-1:]
            if skipped is not None:
                keep = set(kept)
                skipped.extend(p for p in paths if p not in keep)
            paths = kept
        total = sum(_size(p) for p in paths)
        if total > max_bytes:
            raise _too_big(text, total, max_bytes, f"{len(paths)} label files of " if len(paths) > 1 else "")
        for p in paths:
            try:
                st = check_regular(p)
                if st.st_size == 0:
                    continue  # a label file just created
                try:
                    with open(p, "rb") as f:
                        data = f.read(max_bytes + 1)
                except OSError as e:
                    raise InputError(f"cannot read {p}: {e.strerror or e}") from None
            except InputError:
                if len(paths) > 1 and not p.exists():
                    continue  # rotated away since the glob was expanded (as read_window skips it)
                raise
            if not data.strip():
                continue  # a label file just created
            with _bounded(str(p)):
                frames.append(_labels_from_bytes(data, str(p), None, id_column, label_column))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({ID: pd.Series([], dtype=object), LABEL: pd.Series([], dtype=object),
                             LABEL_TIME: pd.Series([], dtype="datetime64[ns, UTC]")})
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    times = out[LABEL_TIME]
    if len(out) and not times.isna().any():
        out = out.iloc[np.argsort(times.to_numpy(), kind="stable")].reset_index(drop=True)
    return out


def _labels_from_bytes(data: bytes, name: str, ctype: str | None, id_column: str | None,
                       label_column: str) -> pd.DataFrame:
    data = _open_bytes(data, name)
    fmt = _format_of(name, data[:16], ctype)
    if fmt == "json" and data.lstrip()[:1] == b"{":
        first = data.lstrip().split(b"\n", 1)[0]
        try:
            head = json.loads(first)
        except (json.JSONDecodeError, UnicodeDecodeError):
            head = None
        if _is_ground_truth(head):
            return _ground_truth_frame(_decode(data, name), name)
    frame = parse_bytes(data, name, content_type=ctype)
    return _plain_labels(frame, name, id_column, label_column)


def _ground_truth_frame(text: str, name: str) -> pd.DataFrame:
    ids: list[str | None] = []
    labels: list[Any] = []
    times: list[Any] = []
    lines = text.split("\n")
    complete = text.endswith("\n")
    loads = json.loads
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = loads(line)
        except json.JSONDecodeError as e:
            if k == len(lines) - 1 and not complete:
                break  # the record being written right now: whole lines only
            raise InputError(f"cannot read {name}: bad JSON on line {k + 1}: {e.msg}") from None
        gt = rec.get("groundTruthData") if isinstance(rec, dict) else None
        if not isinstance(gt, dict):
            raise InputError(f"cannot read {name}: line {k + 1} is not a ground-truth record (no groundTruthData)")
        meta = rec.get("eventMetadata")
        event = None
        when = None
        if isinstance(meta, dict):
            event = meta.get("eventId")
            if event is None:
                event = meta.get("inferenceId")
            when = meta.get("labelTime")
        if event is None:
            raise InputError(f"cannot read {name}: line {k + 1} has no eventMetadata.eventId or inferenceId")
        value = gt.get("data")
        if isinstance(value, str) and str(gt.get("encoding", "CSV")).upper() == "BASE64":
            try:
                value = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise InputError(f"cannot read {name}: line {k + 1}: groundTruthData is not base64 text") from None
        event = str(event)
        if isinstance(value, str) and "," in value:
            for i, part in enumerate(next(csv.reader([value]))):
                ids.append(row_key(event, i))
                labels.append(_scalar(part))
                times.append(when)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                ids.append(row_key(event, i))
                labels.append(v)
                times.append(when)
        else:
            ids.append(event)
            labels.append(_scalar(value) if isinstance(value, str) else value)
            times.append(when)
    return _label_table(ids, labels, times)


def _label_table(ids: Any, labels: Any, times: Any) -> pd.DataFrame:
    t = pd.to_datetime(pd.Series(times, dtype=object), errors="coerce", utc=True) if len(times) else \
        pd.Series([], dtype="datetime64[ns, UTC]")
    return pd.DataFrame({ID: pd.Series(ids, dtype=object), LABEL: pd.Series(labels, dtype=object),
                         LABEL_TIME: t.reset_index(drop=True)})


def _plain_labels(frame: pd.DataFrame, name: str, id_column: str | None, label_column: str) -> pd.DataFrame:
    cols = [str(c) for c in frame.columns]
    if id_column is None:
        id_column = next((c for c in ID_COLUMNS if c in cols), None)
        if id_column is None:
            raise InputError(f"{name}: no id column to join labels on (set label_id_column; columns: "
                             f"{_cols(cols)})")
    elif id_column not in cols:
        raise InputError(f"{name}: no id column {id_column!r} (columns: {_cols(cols)})")
    if label_column not in cols:
        raise InputError(f"{name}: no label column {label_column!r} (set label_column; columns: {_cols(cols)})")
    ids = frame[id_column]
    keys = ids.astype(object).where(ids.notna(), None)
    keys = [None if k is None else (str(int(k)) if isinstance(k, float) and k.is_integer() else str(k))
            for k in keys.tolist()] if ids.dtype.kind == "f" else \
        [None if k is None else str(k) for k in keys.tolist()]
    tcol = next((c for c in LABEL_TIME_COLUMNS if c in cols), None)
    times = frame[tcol].tolist() if tcol else [None] * len(frame)
    return _label_table(keys, frame[label_column].tolist(), times)


def _cols(cols: list[str], limit: int = 12) -> str:
    from modeldeck.core.textfmt import one_line

    shown = ", ".join(one_line(c, 40) for c in cols[:limit])
    return shown + (f" and {len(cols) - limit} more" if len(cols) > limit else "")
