# Each target installs what it needs: on a fresh machine `make train` or `make test` is enough.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data
CONFIG ?= configs/default.yaml
ARGS ?=
PORT ?= 6006
# The stamp is older than pyproject.toml when dependencies changed: then install again.
STAMP := $(VENV)/.installed

.PHONY: install train test tensorboard bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

train: $(STAMP)
	$(BIN)/lit-mnist fit --config $(CONFIG) --data.data_dir=$(DATA_DIR) $(ARGS)

test: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench.py --data-dir $(DATA_DIR) $(BENCH_ARGS)

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir logs --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf logs build src/*.egg-info .pytest_cache .ruff_cache
