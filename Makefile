# The two set-up commands of the README:
#   make repro   create/update .venv, install the pinned dependencies, run `dvc repro` on params.yaml, print a summary
#   make test    create/update .venv, install the pinned dependencies, run lint and the test suite
# Orchestration: `make serve` starts a local Prefect server and serves the deployments; `make stop` stops both.
# Offline, point TOP_DATA_DIR at a local data root (glue/<Task>/*.tsv ...) first, e.g. ../shared/data; a relative
# path is relative to this directory (where make runs every recipe), and `make serve` reads it once, at start.
# `prefect` and `dvc` commands typed after `make serve` need the venv's tools: `. .venv/bin/activate`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv repro results test lint serve stop clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: venv
	test -d .dvc || $(BIN)/dvc init --quiet
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	$(BIN)/python -m studies.summary

# docs/RESULTS.md from the experiment records and the current stage metrics.
results: venv
	$(BIN)/python -m studies.results_report

lint: venv
	$(BIN)/ruff check top pipeline flows studies tests

# One pytest-xdist worker per core: most of the suite's time is single-threaded stage subprocesses.
TEST_WORKERS ?= auto
test: lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -ra --numprocesses $(TEST_WORKERS) $(PYTEST_ARGS)

# A local Prefect server (SQLite, state in .work/prefect) and the process serving top/compress and top-sweep/sweep.
# They keep the environment they start with; a relative TOP_DATA_DIR is handed to them absolute.
PORT ?= 4200
serve: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m flows.services start --port $(PORT)

stop:
	$(BIN)/python -m flows.services stop

clean-venv:
	rm -rf $(VENV)
