"""Bounded JSONL files the demo writes: SageMaker data capture (one record per inference, as
SageMaker's endpoint data capture writes them) and SageMaker-style ground truth (the labels
the traffic generator knows for the requests it sent, joined to the capture by event id).

Files rotate every ``max_records`` lines and only the newest ``keep`` files stay, so a fleet
left running does not fill the disk. Names sort in write order
(``capture-000042-20261126T140500.jsonl``): the newest records are in the last file.
Each record is one ``write`` system call on an ``O_APPEND`` descriptor, so a reader sees whole
lines except, at most, the one being written at that very moment.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def inference_time(ts: float | None = None) -> str:
    """SageMaker's ``eventMetadata.inferenceTime`` (UTC ISO-8601, milliseconds, ``Z``)."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def capture_record(event_id: str, input_body: str, output_body: str, *, ts: float | None = None,
                   content_type: str = "application/json", inference_id: str | None = None) -> dict[str, Any]:
    """One SageMaker data-capture record (eventVersion 0). Bodies are the request and response
    text as they crossed the wire; ``encoding`` says how ``data`` holds them."""
    encoding = "CSV" if "csv" in content_type else "JSON"
    meta: dict[str, Any] = {"eventId": event_id, "inferenceTime": inference_time(ts)}
    if inference_id:
        meta["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": input_body,
                              "encoding": encoding},
            "endpointOutput": {"observedContentType": content_type, "mode": "OUTPUT", "data": output_body,
                               "encoding": encoding},
        },
        "eventMetadata": meta,
        "eventVersion": "0",
    }


def ground_truth_record(event_id: str, labels: list[Any], *, ts: float | None = None) -> dict[str, Any]:
    """One SageMaker Model Monitor ground-truth record: the labels of one captured request
    (comma-separated, one per row), keyed by the capture's event id; ``labelTime`` (when the
    label was known, UTC) is modeldeck's addition, for the label lag."""
    return {
        "groundTruthData": {"data": ",".join(str(v) for v in labels), "encoding": "CSV"},
        "eventMetadata": {"eventId": event_id, "labelTime": inference_time(ts)},
        "eventVersion": "0",
    }


_NAME = re.compile(r"^(?P<prefix>[a-z_]+)-(?P<seq>\d{6})-\d{8}T\d{6}\.jsonl$")


class RotatingJsonl:
    """Append JSON records to ``folder/PREFIX-SEQ-STAMP.jsonl``; thread-safe."""

    def __init__(self, folder: Path, prefix: str = "capture", *, max_records: int = 1000, keep: int = 6) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.max_records = max(1, int(max_records))
        self.keep = max(1, int(keep))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._count = 0
        self._seq = self._last_seq()
        self.records = 0  # written by this writer

    @property
    def pattern(self) -> str:
        return str(self.folder / f"{self.prefix}-*.jsonl")

    def _existing(self) -> list[Path]:
        out = []
        for p in self.folder.glob(f"{self.prefix}-*.jsonl"):
            m = _NAME.match(p.name)
            if m and m.group("prefix") == self.prefix:
                out.append(p)
        return sorted(out)

    def _last_seq(self) -> int:
        files = self._existing()
        return int(_NAME.match(files[-1].name).group("seq")) if files else 0  # type: ignore[union-attr]

    def _open_next(self) -> int:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = self.folder / f"{self.prefix}-{self._seq:06d}-{stamp}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._count = 0
        for old in self._existing()[:-self.keep]:
            try:
                old.unlink()
            except OSError:
                pass
        return self._fd

    def write(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fd = self._fd
            if fd is None or self._count >= self.max_records:
                fd = self._open_next()
            written = os.write(fd, line)
            while written < len(line):  # a short write (rare): finish the line
                written += os.write(fd, line[written:])
            self._count += 1
            self.records += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                finally:
                    self._fd = None
