"""What identifies a dataset that metrics were measured on: the SHA-256 of its bytes and its
number of rows. Standard library (and pyarrow's metadata for Parquet): cheap to import, so
``modeldeck register`` stays fast.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from modeldeck.core.errors import InputError

HEX64 = re.compile(r"^[0-9a-f]{64}$")
DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".csv.gz", ".jsonl.gz")


def check_regular(p: Path) -> None:
    """Refuse what is not a regular file: a FIFO would wait for a writer forever and a device
    (``/dev/zero``) never ends."""
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a plain file")
        raise InputError(f"{p}: not a regular file ({kind})")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, in order)."""
    p = Path(path)
    h = hashlib.sha256()
    check_regular(p)
    try:
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode() + b"\0")
                _hash_into(h, f)
        else:
            _hash_into(h, p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def _hash_into(h: Any, f: Path) -> None:
    with open(f, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


def check_sha256(text: str, where: str = "--eval-sha256") -> str:
    """A SHA-256 given by hand: 64 hex digits (any case); returned in lower case."""
    s = str(text).strip().lower()
    if s.startswith("sha256:"):
        s = s[len("sha256:"):]
    if not HEX64.match(s):
        raise InputError(f"{where}: {text!r} is not a SHA-256 (64 hex digits)")
    return s


def count_rows(path: str | os.PathLike[str]) -> int:
    """Data rows of a CSV/TSV (header excluded, quoted newlines respected), Parquet (from its
    metadata), JSON lines (non-empty lines) or JSON array file; ``.gz`` is read through. A
    folder counts the rows of its data files."""
    p = Path(path)
    check_regular(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(DATA_SUFFIXES))
        if not files:
            raise InputError(f"{p}: a folder without data files (CSV, Parquet, JSON lines)")
        return sum(count_rows(f) for f in files)
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(p).metadata.num_rows)
        with _open_text(p) as fh:
            if name.removesuffix(".gz").endswith((".jsonl", ".ndjson")):
                return sum(1 for line in fh if line.strip())
            if name.removesuffix(".gz").endswith(".json"):
                import json

                data = json.load(fh)
                if isinstance(data, list):
                    return len(data)
                if isinstance(data, dict) and isinstance(data.get("instances"), list):
                    return len(data["instances"])
                raise InputError(f"{p}: a JSON file of records must be an array")
            dialect = "excel-tab" if name.removesuffix(".gz").endswith(".tsv") else "excel"
            rows = _csv_rows(fh, dialect)
            return max(0, sum(1 for _ in rows) - 1)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except InputError:
        raise
    except RecursionError:
        raise InputError(f"{p}: cannot count its rows: JSON nested too deeply") from None
    except (OSError, ValueError, csv.Error, EOFError, zlib.error) as e:
        raise InputError(f"{p}: cannot count its rows: {' '.join(str(e).split())}") from None
    except Exception as e:  # pyarrow's errors
        raise InputError(f"{p}: cannot count its rows: {type(e).__name__}: {e}") from None


def _open_text(p: Path) -> IO[str]:
    if p.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(p, encoding="utf-8", errors="replace", newline="")


def _csv_rows(fh: IO[str], dialect: str) -> Iterator[list[str]]:
    csv.field_size_limit(1 << 30)
    return (r for r in csv.reader(fh, dialect=dialect) if r)


def identity(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(SHA-256, rows) of a dataset file or folder."""
    return sha256_file(path), count_rows(path)


def short(sha256: str | None) -> str:
    """The hash prefix shown in gate lines: ``93ddf3b…``."""
    return "unknown data" if not sha256 else f"{sha256[:7]}…"


def describe(sha256: str | None, rows: int | None) -> str:
    """``93ddf3b… (300 rows)``; ``unknown data`` for metrics registered without their data."""
    if not sha256:
        return "unknown data"
    return f"{short(sha256)} ({rows} rows)" if rows is not None else f"{short(sha256)} (rows unknown)"
