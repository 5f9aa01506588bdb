"""Make the pinned MLflow virtualenv the live MLflow tests run a real ``mlflow server`` from
(``make test`` runs this first; about a minute and 850 MB the first time, then nothing).

modeldeck's own environment never carries mlflow: this one lives in
``~/.cache/modeldeck/mlflow-<pin>`` (``$MODELDECK_MLFLOW_VENV`` overrides). When it cannot be
made (no network to PyPI, no disk), this says why in one line and exits 0: the MLflow tests
then skip with that reason (written next to the virtualenv)."""

from __future__ import annotations

import sys
import time

from modeldeck.core import paths
from modeldeck.core.demo import mlflowserver


def main() -> int:
    venv = mlflowserver.venv_dir()
    if mlflowserver.venv_ready(venv):
        return 0
    print(f"mlflow_venv: creating {paths.display(venv)} with mlflow=={mlflowserver.MLFLOW_PIN} "
          f"(once; about a minute)", flush=True)
    started = time.monotonic()
    try:
        mlflowserver.ensure_venv(venv)
    except mlflowserver.MlflowServerError as e:
        print(f"mlflow_venv: {e}; the MLflow tests will be skipped", file=sys.stderr)
        return 0
    print(f"mlflow_venv: ready in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
