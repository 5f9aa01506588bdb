"""MLflow as the registry of record, at scale: 100 models x 50 versions in a real ``mlflow server``.

Starts ``mlflow server --workers 1`` (SQLite backend, loopback) from the pinned MLflow
virtualenv (``tests/mlflow_venv.py`` makes it), fills it over REST (every version of the first
``--with-runs`` models has a run with params, metrics and a dataset), then times, each against
the bare REST calls it makes, replayed with a plain httpx client in the same run:

- the model screen opening (what ``ModelScreen.load_versions`` reads: versions, aliases, the
  environment choices, evaluations, the policy), p95 over repeated opens with the ledger's copy
  warm; the first, cold open (the lineage of 50 runs read once) is printed apart;
- the alias poll of all 100 models (``MlflowRegistry.all_aliases``: one paged model search,
  outside moves compared with the ledger): wall time and this process's CPU per poll;
- promote (outside moves first, then read, check, set, read back, and the ledger's rows), p95.

The servers it starts are stopped at the end, whatever happens.
Run: .venv/bin/python benchmarks/bench_mlflow.py [--models 100] [--versions 50] [--with-runs 20] [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from modeldeck.core import config, policy
from modeldeck.core.demo import mlflowserver
from modeldeck.core.mlflow import Client, MlflowRegistry
from modeldeck.core.releases import environment_choices


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(v: float) -> str:
    return f"{v * 1000:.1f}"


def fill(url: str, n_models: int, n_versions: int, with_runs: int) -> None:
    api = url + "/api/2.0/mlflow/"
    t0 = time.monotonic()

    def model(m: int) -> None:
        name = f"model-{m:03d}"
        with httpx.Client(base_url=api, timeout=60) as c:
            c.post("registered-models/create", json={"name": name}).raise_for_status()
            exp = None
            if m < with_runs:
                r = c.post("experiments/create", json={"name": f"exp-{name}"})
                r.raise_for_status()
                exp = r.json()["experiment_id"]
            for v in range(1, n_versions + 1):
                body: dict[str, Any] = {"name": name, "source": f"s3://bucket/{name}/{v}/model.pkl"}
                if exp is not None:
                    run = c.post("runs/create", json={"experiment_id": exp, "run_name": f"{name}-{v}",
                                                      "tags": [{"key": "mlflow.source.git.commit", "value": "c0ffee1"}]})
                    run.raise_for_status()
                    rid = run.json()["run"]["info"]["run_id"]
                    c.post("runs/log-batch", json={
                        "run_id": rid, "params": [{"key": "depth", "value": str(v % 9)}, {"key": "lr", "value": "0.1"}],
                        "metrics": [{"key": "auc", "value": 0.8 + v / 1000, "timestamp": 0, "step": 0},
                                    {"key": "f1", "value": 0.7, "timestamp": 0, "step": 0}]}).raise_for_status()
                    c.post("runs/log-inputs", json={"run_id": rid, "datasets": [{
                        "tags": [{"key": "mlflow.data.context", "value": "training"}],
                        "dataset": {"name": "train", "digest": f"{v:08x}", "source_type": "local",
                                    "source": '{"uri": "/data/train.csv"}'}}]}).raise_for_status()
                    body["run_id"] = rid
                c.post("model-versions/create", json=body).raise_for_status()
            for alias, v in (("production", n_versions - 1), ("staging", n_versions)):
                c.post("registered-models/alias", json={"name": name, "alias": alias, "version": str(v)}).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(model, range(n_models)))
    print(f"filled {n_models} models x {n_versions} versions ({with_runs} models with a run per version) "
          f"in {time.monotonic() - t0:.0f} s", flush=True)


class Recorder:
    """Wraps a Client's call to note the REST calls an operation makes (to replay them bare)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls: list[tuple[str, str, Any, Any]] = []
        self._orig = client.call

        def call(method: str, path: str, *, params: Any = None, body: Any = None) -> dict[str, Any]:
            self.calls.append((method, path, params, body))
            return self._orig(method, path, params=params, body=body)

        client.call = call  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, str, Any, Any]]:
        out, self.calls = self.calls, []
        return out


def replay(http: httpx.Client, calls: list[tuple[str, str, Any, Any]]) -> None:
    for method, path, params, body in calls:
        r = http.request(method, path, params=params, json=body)
        r.json()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--versions", type=int, default=50)
    ap.add_argument("--with-runs", type=int, default=20, help="models whose every version has a run")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    if not mlflowserver.venv_ready():
        print(f"bench_mlflow: skipped: {mlflowserver.why_not_ready()}")
        return 0
    with tempfile.TemporaryDirectory(prefix="modeldeck-bench-mlflow-") as tmp:
        t0 = time.monotonic()
        server = mlflowserver.start(Path(tmp) / "mlflow")
        try:
            print(f"mlflow server {mlflowserver.MLFLOW_PIN} ready in {time.monotonic() - t0:.1f} s at {server.url}",
                  flush=True)
            fill(server.url, args.models, args.versions, args.with_runs)
            return measure(server.url, Path(tmp), args)
        finally:
            server.stop()
            print(f"stopped the mlflow server (pid {server.pid}): {'still running!' if server.alive() else 'gone'}")


def measure(url: str, tmp: Path, args: argparse.Namespace) -> int:
    cfg = tmp / "modeldeck.toml"
    cfg.write_text(f'registry = "{tmp / "ledger.db"}"\n[mlflow]\nurl = "{url}"\ntimeout = 30\n')
    settings = config.load(cfg)
    assert settings.mlflow is not None
    bare = httpx.Client(base_url=url + "/api/2.0/mlflow/", timeout=30)
    reg = MlflowRegistry(settings.registry, settings.mlflow)
    rec = Recorder(reg.client)
    try:
        # -- the alias poll of every model: the first look records every alias once (not timed) -----
        reg.all_aliases()
        rec.take()
        poll_wall, poll_cpu, bare_wall, bare_cpu = [], [], [], []
        for _ in range(args.repeat):
            w, c = time.perf_counter(), time.process_time()
            aliases = reg.all_aliases()
            poll_wall.append(time.perf_counter() - w)
            poll_cpu.append(time.process_time() - c)
            calls = rec.take()
            w, c = time.perf_counter(), time.process_time()
            replay(bare, calls)
            bare_wall.append(time.perf_counter() - w)
            bare_cpu.append(time.process_time() - c)
        assert len(aliases) == 2 * args.models, len(aliases)
        print(f"\nalias poll of {args.models} models ({len(calls)} REST call(s) each), {args.repeat} polls:")
        print(f"  modeldeck   wall median {ms(statistics.median(poll_wall))} ms  p95 {ms(pct(poll_wall, .95))} ms   "
              f"client CPU median {ms(statistics.median(poll_cpu))} ms")
        print(f"  bare REST   wall median {ms(statistics.median(bare_wall))} ms  p95 {ms(pct(bare_wall, .95))} ms   "
              f"client CPU median {ms(statistics.median(bare_cpu))} ms")
        print(f"  ratio       wall {statistics.median(poll_wall) / statistics.median(bare_wall):.2f}x   "
              f"CPU {statistics.median(poll_cpu) / max(1e-9, statistics.median(bare_cpu)):.2f}x")

        # -- the model screen opening ------------------------------------------------------------------
        def open_screen(model: str) -> int:
            versions = reg.versions(model)
            reg.aliases(model)
            environment_choices(settings, reg, model)
            reg.evaluations(model)
            policy.merge(settings.model(model), reg.policy(model))
            return len(versions)

        with_runs = [f"model-{m:03d}" for m in range(min(args.with_runs, args.models))]
        cold = []
        for model in with_runs[:5]:
            w = time.perf_counter()
            assert open_screen(model) == args.versions
            cold.append(time.perf_counter() - w)
            cold_calls = rec.take()
        open_wall, open_bare = [], []
        models = [with_runs[i % len(with_runs)] for i in range(args.repeat)] if with_runs else \
            [f"model-{i % args.models:03d}" for i in range(args.repeat)]
        for model in models:
            rec.take()
            w = time.perf_counter()
            open_screen(model)
            open_wall.append(time.perf_counter() - w)
            calls = rec.take()
            w = time.perf_counter()
            replay(bare, calls)
            open_bare.append(time.perf_counter() - w)
        print(f"\nmodel screen open ({args.versions} versions; {len(calls)} REST calls warm, {len(cold_calls)} cold), "
              f"{len(models)} opens:")
        print(f"  cold (lineage of {args.versions} runs read once, into the ledger): median {ms(statistics.median(cold))} ms")
        print(f"  modeldeck   median {ms(statistics.median(open_wall))} ms  p95 {ms(pct(open_wall, .95))} ms")
        print(f"  bare REST   median {ms(statistics.median(open_bare))} ms  p95 {ms(pct(open_bare, .95))} ms")
        print(f"  ratio       p95 {pct(open_wall, .95) / pct(open_bare, .95):.2f}x")

        # -- promote -------------------------------------------------------------------------------------
        model = with_runs[0] if with_runs else "model-000"
        current = reg.alias(model, "staging")
        prom_wall, prom_bare = [], []
        for i in range(args.repeat):
            target = args.versions - 1 - (i % 2)  # staging starts at the newest: n-1, n-2, n-1, ...
            rec.take()
            w = time.perf_counter()
            change = reg.promote(model, target, "staging", "bench", expect=current, actor="bench")
            prom_wall.append(time.perf_counter() - w)
            calls = rec.take()
            current = change.to_version
            # the bare calls of a move: the same reads, and a set back to where it is (no change)
            w = time.perf_counter()
            replay(bare, calls)
            prom_bare.append(time.perf_counter() - w)
        print(f"\npromote ({len(calls)} REST calls: outside moves, read, set, read back; then the ledger), "
              f"{args.repeat} promotes:")
        print(f"  modeldeck   median {ms(statistics.median(prom_wall))} ms  p95 {ms(pct(prom_wall, .95))} ms")
        print(f"  bare REST   median {ms(statistics.median(prom_bare))} ms  p95 {ms(pct(prom_bare, .95))} ms")
        print(f"  ratio       p95 {pct(prom_wall, .95) / pct(prom_bare, .95):.2f}x")
        ok = reg.verify_audit()
        print(f"\nledger: {ok.describe()}")
        return 0 if ok.ok else 1
    finally:
        reg.close()
        bare.close()


if __name__ == "__main__":
    sys.exit(main())
