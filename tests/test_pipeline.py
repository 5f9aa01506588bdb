"""sample_data/pipeline/train.py, the example training pipeline: trains, evaluates, writes the
artifact and reference data, and registers the version with its lineage through the
``modeldeck register`` command line. Plus the sample data and the capture/ground-truth files
the pipeline's --recent mode reads."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modeldeck.core.demo import models
from modeldeck.core.demo.datasets import WORLDS, sample_data_dir
from modeldeck.core.demo.recorder import RotatingJsonl, capture_record, ground_truth_record
from modeldeck.core.demo.seed import train_module
from modeldeck.core.registry import Registry

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "sample_data" / "pipeline" / "train.py"


@pytest.fixture(scope="module")
def train():
    return train_module()


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_train_registers_a_version_with_lineage_through_the_cli(tmp_path: Path) -> None:
    reg_path = tmp_path / "reg" / "registry.db"
    with Registry(reg_path) as reg:
        reg.register("demand", "s3://bucket/demand/v1.pkl", reason="an earlier version")
        job = reg.create_job("demand", trigger="manual", runner="command", reason="test")
    r = subprocess.run([sys.executable, str(TRAIN), "--model", "demand", "--registry", str(reg_path),
                        "--reason", "weekly retrain"], capture_output=True, text=True, timeout=120,
                       env=_env(MODELDECK_JOB_ID=str(job.id)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "2"  # the new version number, last line
    with Registry(reg_path) as reg:
        v = reg.version("demand", 2)
        assert reg.job(job.id).produced_version == 2
        audit = reg.audit(subject="demand:2")[0]
    assert v.job_id == job.id and v.approval == "pending"
    artifact = Path(v.artifact)
    assert artifact.is_file() and artifact.parent.parent.parent == reg_path.parent / "artifacts"
    data = sample_data_dir() / "demand" / "train.csv"
    assert Path(v.dataset_path) == data.resolve()
    assert v.dataset_sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert v.code_version == (git.stdout.strip() if git.returncode == 0 else v.code_version)
    assert v.params["algorithm"] == "gbm" and v.params["target"] == "units_sold" and v.params["source"] == "sample"
    assert set(v.metrics) >= {"rmse", "mae", "r2"} and v.metrics["r2"] > 0.9
    ref = pd.read_csv(v.reference_path)
    assert list(ref.columns) == [*WORLDS["demand"].features, "prediction"] and len(ref) == 1500
    assert audit.action == "register" and audit.reason == "weekly retrain"
    # the artifact serves what the reference recorded
    loaded = models.load_version("demand", 2, v.artifact)
    body = models.request_body({f: ref[f].head(20).tolist() for f in loaded.features}, loaded.categorical)
    x, _n = models.columns_from_request(json.loads(json.dumps(body)), loaded)
    served = models.predict(loaded, x)[0]["data"]
    assert np.allclose(served, ref["prediction"].head(20), atol=1e-3)


def _write_window(folder: Path, n: int, *, drift: bool, seed: int = 3) -> tuple[str, str]:
    """A capture window and its ground truth, as the demo fleet writes them (rotating files)."""
    world = WORLDS["churn"]
    cols = {k: v.tolist() for k, v in world.rows(n, seed, drift=drift).items()}
    cap = RotatingJsonl(folder / "captures", "capture", max_records=150, keep=50)
    gt = RotatingJsonl(folder / "ground_truth", "labels", max_records=150, keep=50)
    for i in range(n):
        rid = f"req-{i}"
        body = models.request_body({f: [cols[f][i]] for f in world.features}, world.categorical, rid)
        out = {"model_name": "churn", "model_version": "2", "id": rid,
               "outputs": [{"name": "prediction", "shape": [1], "datatype": "INT64", "data": [0]}]}
        cap.write(capture_record(rid, json.dumps(body), json.dumps(out), inference_id=rid))
        if i % 10:  # some requests never get a label
            gt.write(ground_truth_record(rid, [int(cols["churned"][i])]))
    cap.close()
    gt.close()
    return cap.pattern, gt.pattern


def test_recent_mode_trains_on_the_labelled_capture_window(train, tmp_path: Path, capsys) -> None:
    capture_glob, labels_glob = _write_window(tmp_path, 1200, drift=True)
    assert len(list((tmp_path / "captures").glob("*.jsonl"))) == 8
    code = train.main(["--model", "churn", "--recent", capture_glob, "--labels", labels_glob, "--recent-rows", "800",
                       "--out", str(tmp_path / "out"), "--no-register", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["version"] is None and res["params"]["source"] == "recent" and res["params"]["recent_rows"] == 800
    used = pd.read_csv(res["dataset"])  # the assembled window is the registered dataset
    assert len(used) == 800 and "churned" in used.columns
    assert (used["plan"] == "unlimited").mean() > 0.2
    ref = pd.read_csv(res["reference"])  # fewer than 1,000 holdout rows: all rows, with outputs
    assert len(ref) == 800 and {"prediction", "probability"} <= set(ref.columns)
    assert res["metrics"]["auc"] > 0.85 and res["metrics"]["n_train"] == 600


def test_metrics_are_registered_with_their_holdout_and_evaluate_py_reproduces_them(train, tmp_path: Path) -> None:
    from modeldeck.core.datafiles import sha256_file
    from modeldeck.core.evaluation import labelled_window

    capture_glob, labels_glob = _write_window(tmp_path, 1200, drift=True)
    reg_path = tmp_path / "registry.db"
    r = subprocess.run([sys.executable, str(TRAIN), "--model", "churn", "--recent", capture_glob, "--labels",
                        labels_glob, "--recent-rows", "800", "--registry", str(reg_path)], capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    with Registry(reg_path) as reg:
        v = reg.version("churn", 1)
        evs = {e.metric: e for e in reg.evaluations("churn", 1)}
    holdout = Path(v.artifact).parent / "holdout.csv"  # the split-off holdout, written with the run
    assert evs["auc"].dataset_sha256 == sha256_file(holdout) and evs["auc"].dataset_rows == 200
    assert evs["auc"].dataset_path == str(holdout.resolve()) and evs["auc"].value == v.metrics["auc"]
    # the evaluate entry point (modeldeck's evaluate hook) measures the same numbers on the same data
    r = subprocess.run([sys.executable, str(TRAIN.parent / "evaluate.py"), "--artifact", v.artifact, "--data",
                        str(holdout)], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    measured = json.loads(r.stdout.strip().splitlines()[-1])
    assert {k: measured[k] for k in ("auc", "accuracy", "f1")} == {k: v.metrics[k] for k in ("auc", "accuracy", "f1")}
    # modeldeck's 'recent' data is the pipeline's labelled window, with the label as 'label'
    ours = labelled_window(capture_glob, labels_glob, 800)
    theirs = train.load_recent([capture_glob], [labels_glob], "churned", 800)
    features = list(WORLDS["churn"].features)
    assert len(ours) == 800 and ours[features].equals(theirs[features])
    assert ours["label"].tolist() == theirs["churned"].tolist()
    r = subprocess.run([sys.executable, str(TRAIN.parent / "evaluate.py"), "--artifact", v.artifact, "--data",
                        str(tmp_path / "nope.csv")], capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 2 and r.stderr.strip().endswith("nope.csv: no such file")


def test_a_worse_candidate_and_bad_input(train, tmp_path: Path, capsys) -> None:
    code = train.main(["--model", "churn", "--algorithm", "dummy", "--out", str(tmp_path), "--no-register", "--json",
                       "--param", "demo_fault=errors"])
    assert code == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["metrics"]["auc"] == 0.5  # fails any sensible gate
    assert res["params"]["demo_fault"] == "errors" and models.fault_of(res["params"], {}) == "errors"
    for argv, msg in (
        (["--model", "nosuch"], "no preset"),
        (["--model", "churn", "--data", str(tmp_path / "missing.csv")], "no such file"),
        (["--model", "churn", "--recent", str(tmp_path / "*.jsonl")], "needs --labels"),
        (["--model", "churn", "--recent", str(tmp_path / "none-*.jsonl"), "--labels", "x"], "no capture files"),
        (["--model", "churn", "--algorithm", "ridge"], "does not fit"),
    ):
        assert train.main([*argv, "--no-register", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_own_data_is_split_into_a_holdout(train, tmp_path: Path, capsys) -> None:
    data = tmp_path / "fraud.csv"
    pd.read_csv(sample_data_dir() / "fraud" / "train.csv").to_csv(data, index=False)
    assert train.main(["--model", "fraud", "--data", str(data), "--algorithm", "logreg", "--out", str(tmp_path),
                       "--no-register", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["metrics"]["n_train"] == 2250 and res["metrics"]["n_holdout"] == 750
    assert res["dataset"] == str(data) and res["params"]["algorithm"] == "logreg"


def test_sample_data_is_small_and_regenerates_exactly() -> None:
    spec = importlib.util.spec_from_file_location("make_datasets", ROOT / "sample_data" / "make_datasets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files = mod.files()
    for path, text in files.items():
        assert path.read_text() == text, f"{path} differs from make_datasets.py's output"
    total = sum(p.stat().st_size for p in (ROOT / "sample_data").rglob("*") if p.is_file())
    assert total < 1_000_000
    for name, world in WORLDS.items():
        train = pd.read_csv(ROOT / "sample_data" / name / "train.csv")
        assert list(train.columns) == [*world.features, world.target]


def test_capture_files_rotate_and_stay_bounded(tmp_path: Path) -> None:
    w = RotatingJsonl(tmp_path, "capture", max_records=10, keep=3)
    for i in range(95):
        w.write(capture_record(f"e{i}", "{}", "{}"))
    w.close()
    files = sorted(tmp_path.glob("capture-*.jsonl"))
    assert len(files) == 3
    lines = [json.loads(ln) for f in files for ln in f.read_text().splitlines()]
    assert [r["eventMetadata"]["eventId"] for r in lines] == [f"e{i}" for i in range(70, 95)]
    again = RotatingJsonl(tmp_path, "capture", max_records=10, keep=3)  # a restart continues the sequence
    again.write(capture_record("next", "{}", "{}"))
    again.close()
    assert sorted(tmp_path.glob("capture-*.jsonl"))[-1].name.startswith("capture-000011-")


def test_the_example_config_parses() -> None:
    from modeldeck.core.config import parse_file

    s = parse_file(ROOT / "sample_data" / "modeldeck.example.toml")
    assert [e.name for e in s.endpoints] == ["churn-prod", "churn-staging", "fraud-prod"]
    assert s.models["churn"].retrain.command[1] == "sample_data/pipeline/train.py"
    assert s.models["fraud"].retrain.webhook is not None and s.models["churn"].gates


def test_start_subprocess_reports_a_fleet_that_cannot_start_and_cleans_up(tmp_path: Path, shared_cache: Path) -> None:
    from modeldeck.core.demo.fleet import FleetSettings, start_subprocess
    from modeldeck.core.demo.seed import DemoError

    wd = tmp_path / "broken"
    env = _env(XDG_CACHE_HOME=str(shared_cache))
    env["MODELDECK_SAMPLE_DATA"] = str(tmp_path / "nowhere")  # no training pipeline there
    with pytest.raises(DemoError) as e:
        start_subprocess(wd, ready_timeout=30, settings=FleetSettings(rate_scale=0), env=env, cleanup=True)
    assert "exited with status 2" in str(e.value) and "pipeline is missing" in str(e.value)
    assert not wd.exists()


def test_recent_window_is_modeldecks_join_with_its_counts(train, tmp_path: Path, capsys) -> None:
    """--recent joins as modeldeck's quality does: the newest labelled rows in inference order,
    a relabelled request's newest label, a batch's labels one per row; what did not join (no
    label yet, labels of requests not captured, label files older than the captures) counted."""
    world = WORLDS["churn"]
    n = 400
    cols = {k: v.tolist() for k, v in world.rows(n, 9).items()}
    cap = RotatingJsonl(tmp_path / "captures", "capture", max_records=100, keep=50)
    gt = RotatingJsonl(tmp_path / "ground_truth", "labels", max_records=100, keep=50)
    t0 = 1.79e9
    for i in range(0, n, 2):  # two rows a request
        rid = f"req-{i}"
        body = models.request_body({f: cols[f][i:i + 2] for f in world.features}, world.categorical, rid)
        out = {"model_name": "churn", "model_version": "2", "id": rid,
               "outputs": [{"name": "prediction", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}
        cap.write(capture_record(rid, json.dumps(body), json.dumps(out), inference_id=rid, ts=t0 + i))
        truth = [int(cols["churned"][i]), int(cols["churned"][i + 1])]
        if i % 20 == 0:  # a wrong label first, corrected later
            gt.write(ground_truth_record(rid, [1 - v for v in truth], ts=t0 + i + 1))
        if i % 10 != 8:  # some requests never get their labels
            gt.write(ground_truth_record(rid, truth, ts=t0 + i + 30))
    gt.write(ground_truth_record("req-never-captured", [1], ts=t0 + n + 30))
    cap.close()
    gt.close()
    old = tmp_path / "ground_truth" / "labels-000000-20200101T000000.jsonl"  # a label file from long ago
    old.write_text(json.dumps(ground_truth_record("req-ancient", [0], ts=t0 - 9e6)) + "\n")
    os.utime(old, (t0 - 9e6, t0 - 9e6))
    frame = train.load_recent([cap.pattern], [gt.pattern], "churned", 150)
    labelled = [i for i in range(n) if (i - i % 2) % 10 != 8]
    want = labelled[-150:]
    assert len(frame) == 150 and list(frame.columns) == [*world.features, "churned"]
    for f in world.features:
        assert frame[f].tolist() == [cols[f][i] for i in want], f
    assert frame["churned"].tolist() == [int(cols["churned"][i]) for i in want]  # the corrected labels
    assert frame["churned"].dtype.kind == "i"
    err = capsys.readouterr().err
    assert f"{len(labelled)} of {n} captured rows labelled, {n - len(labelled)} without a label" in err
    assert "1 labels without a prediction" in err and "40 duplicated labels (the newest kept)" in err
    assert "1 label file skipped (last written before the oldest captured row read" in err
    assert "the newest 150 labelled rows used" in err
