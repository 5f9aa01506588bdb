#!/usr/bin/env python3
"""The example pipeline's evaluation entry point (modeldeck's ``evaluate`` hook): measure a
model artifact written by ``train.py`` on labelled data, and print the metrics as one JSON
object on the last line.

    python sample_data/pipeline/evaluate.py --artifact artifacts/churn/…/model.pkl --data holdout.csv

In a modeldeck config::

    [models.churn]
    evaluate = { command = ["python", "sample_data/pipeline/evaluate.py", "--model", "{model}",
                            "--artifact", "{artifact}", "--data", "{data}"] }

The data is CSV or Parquet with the model's features and its label: the artifact's target
column (``churned`` for the churn preset), or ``label`` (what modeldeck writes for
``eval_data = "recent"``). The metrics are those ``train.py`` registers: accuracy, auc, f1,
precision and recall for a binary classifier; rmse, mae and r2 for a regression. Exit status 0
with the metrics, 2 on bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train  # the pipeline's own module, beside this file


def evaluate_file(artifact_path: str, data_path: str, target: str | None = None) -> dict[str, float]:
    art = train.load_artifact(artifact_path)
    data = train.read_table(data_path)
    target = target or art["target"]
    if target not in data.columns:
        if "label" in data.columns:
            data = data.rename(columns={"label": target})
        else:
            raise train.PipelineError(f"{data_path}: no label column ({target!r} or 'label'; columns: "
                                      f"{', '.join(map(str, data.columns))})")
    data = data.dropna(subset=[target])
    if len(data) < 10:
        raise train.PipelineError(f"{data_path}: too few labelled rows to evaluate on ({len(data)})")
    x = train.matrix(data, art["features"], art["categorical"])
    y = data[target].to_numpy()
    if art["task"] == "classification":
        classes = art["estimator"].classes_
        kind = type(classes[0].item() if hasattr(classes[0], "item") else classes[0])
        try:
            y = y.astype(kind)  # labels read back from text compare with the classes the model learnt
        except (TypeError, ValueError):
            pass
    return train.evaluate(art, x, y)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", required=True, metavar="PATH", help="model.pkl written by train.py")
    p.add_argument("--data", required=True, metavar="PATH", help="labelled data (CSV or Parquet)")
    p.add_argument("--model", help="model name (for messages only)")
    p.add_argument("--target", help="label column (default: the artifact's target, else 'label')")
    args = p.parse_args(argv)
    try:
        metrics = evaluate_file(args.artifact, args.data, args.target)
    except train.PipelineError as e:
        print(f"evaluate.py: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as e:
        print(f"evaluate.py: {args.artifact}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    name = args.model or Path(args.artifact).parent.name
    print(f"evaluated {name} on {args.data}", file=sys.stderr)
    print(json.dumps(metrics, sort_keys=True))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
