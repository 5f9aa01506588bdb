# Two commands for a newcomer: `make demo` and `make test`.
# Both create .venv on first use and re-install only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean mlflow-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || echo "first run: creating $(VENV) and installing modeldeck into it (about a minute)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test ! -f $(STAMP) || echo "pyproject.toml changed: re-installing modeldeck into $(VENV)..."
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,demo]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/modeldeck --demo

lint: $(STAMP)
	$(BIN)/ruff check core tui tests benchmarks sample_data

# The MLflow tests run a real `mlflow server` from a pinned mlflow in its own virtualenv
# (~/.cache/modeldeck/mlflow-<pin>), made on first use; if it cannot be made they skip, saying why.
# The Prometheus tests start Debian's prometheus: installed here when missing and run as root.
test: lint
	@sh scripts/ensure-prometheus.sh
	@sh scripts/ensure-chromium.sh
	$(BIN)/python tests/mlflow_venv.py
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The fast part only: no real servers, subprocesses or demo fleet (tests marked `live`).
test-fast: lint
	$(BIN)/python -m pytest -n 2 -m "not live"

mlflow-venv: $(STAMP)
	$(BIN)/python tests/mlflow_venv.py

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
