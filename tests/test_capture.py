"""core.capture: file formats, last-N windows, globs, SageMaker data capture, HTTP, bad input."""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

from modeldeck.core import capture
from modeldeck.core.capture import read_table, read_window
from modeldeck.core.drift import build_profile, compare
from modeldeck.core.errors import InputError

rng = np.random.default_rng(7)


def frame(n=50):
    return pd.DataFrame({"x": np.arange(n, dtype=float), "c": [f"k{i % 3}" for i in range(n)],
                         "i": np.arange(n) % 7, "b": np.arange(n) % 2 == 0})


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl", "json", "csv.gz", "tsv"])
def test_formats_and_last_n(tmp_path, ext):
    df = frame()
    path = tmp_path / f"data.{ext}"
    if ext.startswith("csv"):
        df.to_csv(path, index=False)
    elif ext == "tsv":
        df.to_csv(path, index=False, sep="\t")
    elif ext == "parquet":
        df.to_parquet(path, row_group_size=7)
    elif ext == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    else:
        path.write_text(json.dumps(df.to_dict("records")))
    whole = read_table(path)
    assert list(whole.columns) == ["x", "c", "i", "b"] and len(whole) == 50
    tail = read_window(path, 12)
    assert tail.x.tolist() == list(range(38, 50))
    assert tail.c.tolist() == df.c.tolist()[38:]
    assert read_window(path, 500).shape == (50, 4)
    assert len(read_window(path, 0)) == 0


def test_jsonl_tail_reads_from_the_end(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(20000):
            f.write(json.dumps({"x": i, "s": "y" * (i % 50)}) + "\n")
    tail = capture._read_json_tail(path, str(path), 1234)
    assert tail.x.tolist() == list(range(20000 - 1234, 20000))
    assert read_window(path, 3).x.tolist() == [19997, 19998, 19999]


def test_partial_last_line_is_skipped(tmp_path):
    path = tmp_path / "c.jsonl"
    whole = "".join(_capture_line(f"{i},x", "0", f"2024-01-01T00:00:0{i}Z") + "\n" for i in range(5))
    path.write_text(whole + _capture_line("9,x", "0", "2024-01-01T00:00:09Z")[:40])
    assert read_window(path, 3)._c0.tolist() == [2, 3, 4]
    assert read_window(path, None)._c0.tolist() == [0, 1, 2, 3, 4]
    path.write_text(whole + "{broken\n")  # a complete but bad line is an error
    with pytest.raises(InputError, match="bad JSON"):
        read_window(path, 3)


def test_glob_reads_newest_files_first(tmp_path):
    now = time.time()
    for k in range(4):
        p = tmp_path / f"part-{k}.csv"
        pd.DataFrame({"x": np.arange(10) + 10 * k}).to_csv(p, index=False)
        os.utime(p, (now - 100 + k, now - 100 + k))
    # the newest file by time is part-3 even though part-0 sorts first by name
    w = read_window(str(tmp_path / "*.csv"), 15)
    assert w.x.tolist() == list(range(25, 40))
    assert read_table(str(tmp_path / "part-*.csv")).x.tolist() == list(range(40))
    os.utime(tmp_path / "part-0.csv", (now, now))  # now part-0 is the newest
    assert read_window(str(tmp_path / "*.csv"), 5).x.tolist() == [5, 6, 7, 8, 9]


def _capture_line(inp, out, t, enc_in="CSV", enc_out="CSV", ctype_in="text/csv", ctype_out="text/csv"):
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": ctype_in, "mode": "INPUT", "data": inp, "encoding": enc_in},
            "endpointOutput": {"observedContentType": ctype_out, "mode": "OUTPUT", "data": out,
                               "encoding": enc_out},
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": t},
        "eventVersion": "0",
    })


def test_sagemaker_csv_capture_with_batches_and_time_order(tmp_path):
    lines = [
        _capture_line("1.5,a,3\n2.5,b,4", "0.1\n0.2", "2024-05-01T10:00:02Z"),
        _capture_line("0.5,c,1", "0.9", "2024-05-01T10:00:01Z"),
        _capture_line("3.5,a,2", "0.3", "2024-05-01T10:00:03Z"),
    ]
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(lines) + "\n")
    w = read_window(path, None)
    assert list(w.columns) == ["_c0", "_c1", "_c2", "prediction"]
    assert w._c0.tolist() == [0.5, 1.5, 2.5, 3.5]  # by inference time
    assert w.prediction.tolist() == [0.9, 0.1, 0.2, 0.3]
    assert w.index.name == "inference_time" and w.index.is_monotonic_increasing
    assert w.attrs["positional_columns"] == ["_c0", "_c1", "_c2"]
    # the last records as written (the last two lines), in inference-time order
    assert read_window(path, 2)._c0.tolist() == [0.5, 3.5]
    assert read_window(path, 3)._c0.tolist() == [0.5, 2.5, 3.5]


def test_a_growing_capture_decodes_only_its_new_records_and_reads_the_same(tmp_path, monkeypatch):
    """A window read again after records were appended decodes only those (the rest come from
    the decoded-record cache) and equals a read with an empty cache, ids, versions and order."""
    def line(i):
        return json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "encoding": "JSON",
                                  "data": json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64",
                                                                  "data": [i * 0.5]}]})},
                "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON",
                                   "data": json.dumps({"model_version": str(1 + i % 2),
                                                       "outputs": [{"name": "p", "shape": [1], "datatype": "FP64",
                                                                    "data": [i / 100]}]})},
            },
            "eventMetadata": {"eventId": f"ev{i}", "inferenceTime": f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z"},
            "eventVersion": "0"})

    path = tmp_path / "capture.jsonl"
    path.write_text("".join(line(i) + "\n" for i in range(300)))
    capture._ROWS_CACHE.clear()
    first = read_window(path, 200, ids=True)
    decoded = []
    real = capture._capture_rows
    monkeypatch.setattr(capture, "_capture_rows", lambda rec, name, n: decoded.append(n) or real(rec, name, n))
    with path.open("a") as f:
        f.write("".join(line(i) + "\n" for i in range(300, 340)))
    again = read_window(path, 200, ids=True)
    assert len(decoded) == 40  # the appended records only
    capture._ROWS_CACHE.clear()
    fresh = read_window(path, 200, ids=True)
    assert len(decoded) == 40 + 200
    pd.testing.assert_frame_equal(again, fresh)
    assert again.attrs == fresh.attrs and again.attrs["output_columns"] == ["p"]
    assert again[capture.ID].tolist() == [f"ev{i}" for i in range(140, 340)]
    assert again[capture.VERSION].tolist() == [str(1 + i % 2) for i in range(140, 340)]
    assert first[capture.ID].tolist() == [f"ev{i}" for i in range(100, 300)]


def test_sagemaker_json_and_base64_payloads(tmp_path):
    body1 = json.dumps({"instances": [{"age": 30, "plan": "a"}, {"age": 40, "plan": "b"}]})
    out1 = json.dumps({"predictions": [{"score": 0.2, "label": 0}, {"score": 0.8, "label": 1}]})
    body2 = json.dumps([[50, "c"]])  # a row of features, base64 encoded
    body3 = "60,d"
    lines = [
        _capture_line(body1, out1, "2024-05-01T10:00:01Z", "JSON", "JSON", "application/json",
                      "application/json"),
        _capture_line(base64.b64encode(body2.encode()).decode(), base64.b64encode(b"[0.5]").decode(),
                      "2024-05-01T10:00:02Z", "BASE64", "BASE64", "application/json", "application/json"),
        _capture_line(base64.b64encode(body3.encode()).decode(), base64.b64encode(b"0.7").decode(),
                      "2024-05-01T10:00:03Z", "BASE64", "BASE64", "text/csv", "text/csv"),
    ]
    w = capture.parse_capture_lines(lines, "cap")
    assert w.age.tolist()[:2] == [30, 40] and w.plan.tolist()[:2] == ["a", "b"]
    assert w.score.tolist()[:2] == [0.2, 0.8] and w.label.tolist()[:2] == [0, 1]
    assert w._c0.tolist()[2:] == [50, 60] and w._c1.tolist()[2:] == ["c", "d"]
    assert w.prediction.tolist()[2:] == [0.5, 0.7]


def test_open_inference_protocol_tensors():
    inp = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    out = {"outputs": [{"name": "predict", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}
    w = capture.parse_capture_lines([_capture_line(json.dumps(inp), json.dumps(out), "2024-01-01T00:00:00Z",
                                                   "JSON", "JSON", "application/json", "application/json")])
    assert w[["_c0", "_c1", "_c2"]].to_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]
    assert w.predict.tolist() == [0, 1]
    named = {"inputs": [{"name": "age", "shape": [2], "data": [1, 2]},
                        {"name": "plan", "shape": [2], "data": ["a", "b"]}]}
    w = capture.parse_capture_lines([_capture_line(json.dumps(named), "[0.1, 0.2]", "2024-01-01T00:00:00Z",
                                                   "JSON", "JSON", "application/json", "application/json")])
    assert w.age.tolist() == [1, 2] and w.plan.tolist() == ["a", "b"] and w.prediction.tolist() == [0.1, 0.2]


def test_multiple_outputs_are_numbered():
    w = capture.parse_capture_lines([_capture_line("1,2", "0.1,0.9", "2024-01-01T00:00:00Z")])
    assert list(w.columns) == ["_c0", "_c1", "prediction_0", "prediction_1"]


def test_positional_capture_columns_take_reference_names(tmp_path):
    ref = pd.DataFrame({"age": rng.normal(40, 5, 3000), "plan": rng.choice(list("ab"), 3000),
                        "prediction": rng.random(3000)})
    lines = [_capture_line(f"{a},{p}", f"{s}", f"2024-01-01T00:00:{k % 60:02d}Z")
             for k, (a, p, s) in enumerate(zip(rng.normal(40, 5, 600), rng.choice(list("ab"), 600),
                                               rng.random(600)))]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines))
    res = compare(build_profile(ref), read_window(path, 600))
    assert [c.column for c in res.columns] == ["age", "plan", "prediction"]
    assert all(c.status == "ok" for c in res.columns)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):
        route = self.routes.get(self.path)
        if route is None:
            self.send_response(404)
            self.end_headers()
            return
        body, ctype, delay = route
        if delay:
            time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Handler.routes
    srv.shutdown()
    srv.server_close()
    _Handler.routes.clear()


@pytest.mark.live
def test_http_sources(server):
    base, routes = server
    df = frame(30)
    routes["/data.csv"] = (df.to_csv(index=False).encode(), "text/csv", 0)
    routes["/capture"] = ("\n".join(_capture_line("1,2", "0", f"2024-01-01T00:00:0{k}Z")
                                    for k in range(5)).encode(), "application/x-ndjson", 0)
    routes["/big.csv"] = (b"x\n" + b"1\n" * 5000, "text/csv", 0)
    routes["/slow.csv"] = (b"x\n1\n", "text/csv", 2.0)
    assert read_window(f"{base}/data.csv", 10).x.tolist() == list(range(20, 30))
    assert len(read_window(f"{base}/capture", 3)) == 3
    with pytest.raises(InputError, match="cap"):
        read_window(f"{base}/big.csv", None, max_bytes=1000)
    with pytest.raises(InputError, match="timed out"):
        read_window(f"{base}/slow.csv", None, timeout=0.3)
    with pytest.raises(InputError, match="HTTP 404"):
        read_window(f"{base}/missing.csv", None)


@pytest.mark.live
def test_profile_from_url_uses_cache(server, tmp_path):
    from modeldeck.core.drift import load_profile

    base, routes = server
    routes["/ref.parquet"] = (_parquet_bytes(frame(100)), "application/octet-stream", 0)
    p1 = load_profile(f"{base}/ref.parquet", cache_dir=tmp_path)
    p2 = load_profile(f"{base}/ref.parquet", cache_dir=tmp_path)
    assert p1.sha256 == p2.sha256 and len(list(tmp_path.iterdir())) == 1


def _parquet_bytes(df):
    import io

    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.csv", b"", "empty"),
        ("bad.jsonl", b'{"x": 1}\n{"x": \n', "line 2"),
        ("list.jsonl", b"[1, 2]\n", "array of objects"),
        ("scalar.jsonl", b'{"x": 1}\n3\n', "line 2"),
        ("bad.parquet", b"PAR1 not really", "Parquet"),
        ("latin.csv", "x\n\xe9t\xe9\n".encode("latin-1"), "latin.csv"),
        ("notcap.jsonl", b'{"captureData": {}}\n{"x": 1}\n', "line 2"),
        ("b64.jsonl", (_capture_line("!!!", "0", "2024-01-01T00:00:00Z", "BASE64", "CSV") + "\n").encode(),
         "endpointInput"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as e:
        read_table(path)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_missing_paths(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_window(tmp_path / "nope.csv", 10)
    with pytest.raises(InputError, match="no files match"):
        read_window(str(tmp_path / "*.jsonl"), 10)
    with pytest.raises(InputError, match="directory"):
        read_window(tmp_path, 10)
    with pytest.raises(InputError, match="last_n"):
        read_window(tmp_path / "x.csv", -1)


def test_gzipped_jsonl(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for i in range(20):
            f.write(json.dumps({"x": i}) + "\n")
    assert read_window(path, 4).x.tolist() == [16, 17, 18, 19]


@pytest.mark.live
def test_labels_over_http_with_the_capture_limits(server):
    from modeldeck.core.demo.recorder import ground_truth_record

    base, routes = server
    body = "".join(json.dumps(ground_truth_record(f"e{i}", [i % 2])) + "\n" for i in range(50)).encode()
    routes["/labels"] = (body, "application/x-ndjson", 0)
    routes["/labels.csv"] = (b"request_id,label\nr1,yes\nr2,no\n", "text/csv", 0)
    routes["/slow"] = (body, "application/x-ndjson", 2.0)
    labels = capture.read_labels(f"{base}/labels")
    assert labels[capture.ID].tolist()[:3] == ["e0", "e1", "e2"] and labels[capture.LABEL].tolist()[:2] == [0, 1]
    plain = capture.read_labels(f"{base}/labels.csv", id_column="request_id")
    assert plain[capture.ID].tolist() == ["r1", "r2"] and plain[capture.LABEL].tolist() == ["yes", "no"]
    with pytest.raises(InputError, match="cap"):
        capture.read_labels(f"{base}/labels", max_bytes=100)
    with pytest.raises(InputError, match="timed out"):
        capture.read_labels(f"{base}/slow", timeout=0.3)
    with pytest.raises(InputError, match="HTTP 404"):
        capture.read_labels(f"{base}/missing")


def test_plain_jsonl_labels_and_label_files_older_than_the_captures_are_skipped(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"event_id": f"old{i}", "label": 1}) + "\n"
                                              for i in range(5)))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"event_id": f"new{i}", "label": 0, "label_time":
                                                          "2024-01-01T00:00:09Z"}) + "\n" for i in range(3)))
    now = time.time()
    os.utime(tmp_path / "a.jsonl", (now - 3600, now - 3600))
    both = capture.read_labels(str(tmp_path / "*.jsonl"))
    assert both[capture.ID].tolist() == [*(f"old{i}" for i in range(5)), "new0", "new1", "new2"]
    assert both[capture.LABEL_TIME].isna().sum() == 5
    recent = capture.read_labels(str(tmp_path / "*.jsonl"), modified_after=now - 60)
    assert recent[capture.ID].tolist() == ["new0", "new1", "new2"]
    assert str(recent[capture.LABEL_TIME].iloc[0]) == "2024-01-01 00:00:09+00:00"


def test_a_capture_file_rotated_away_after_the_glob_is_skipped(tmp_path, monkeypatch) -> None:
    """A writer rotating its files (the oldest deleted) between the glob and the read: the
    window is what is still there, not an error (a retrain's load_recent failed on it)."""
    import json as _json

    from modeldeck.core import capture as cap

    for i in range(3):
        (tmp_path / f"c-{i}.jsonl").write_text("\n".join(_json.dumps({"x": i * 10 + j}) for j in range(5)) + "\n")
        os.utime(tmp_path / f"c-{i}.jsonl", (1_000 + i, 1_000 + i))
    real = cap.expand_source

    def expand_then_rotate(source):  # type: ignore[no-untyped-def]
        paths = real(source)
        paths[0].unlink()  # the oldest goes, as rotation does, after the listing
        return paths

    monkeypatch.setattr(cap, "expand_source", expand_then_rotate)
    frame = cap.read_window(str(tmp_path / "c-*.jsonl"), None)
    assert sorted(frame["x"]) == [10, 11, 12, 13, 14, 20, 21, 22, 23, 24]
