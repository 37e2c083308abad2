# Each target installs what it needs: on a fresh machine `make train` or `make test` is enough.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data
CONFIG ?= configs/default.yaml
ARGS ?=
# SEEDS="0 1 2": one run per seed, then mean +- std
SEEDS ?=
# make compare: epochs per optimizer
EPOCHS ?= 4
# make experiments: the overlays to run
EXPERIMENTS ?= $(basename $(notdir $(wildcard configs/experiments/*.yaml)))
PORT ?= 6006
# The stamp is older than pyproject.toml when dependencies changed: then install again.
STAMP := $(VENV)/.installed

.PHONY: install train test tensorboard bench compare results experiments predict plots export notebooks lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

train: $(STAMP)
ifeq ($(strip $(SEEDS)),)
	$(BIN)/lit-mnist fit --config $(CONFIG) --data.data_dir=$(DATA_DIR) $(ARGS)
else
	$(BIN)/python -m lit_mnist.tools.seeds --seeds $(SEEDS) -- fit --config $(CONFIG) --data.data_dir=$(DATA_DIR) $(ARGS)
endif

test: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python src/lit_mnist/tools/bench.py --data-dir $(DATA_DIR) $(BENCH_ARGS)

experiments: $(STAMP)
	@for name in $(EXPERIMENTS); do \
	  echo "=== $$name"; \
	  $(BIN)/lit-mnist fit --config $(CONFIG) --config configs/experiments/$$name.yaml \
	    --data.data_dir=$(DATA_DIR) $(ARGS) || exit 1; \
	done

# make predict CKPT=logs/default/version_0/checkpoints/last.ckpt INPUT=my_digits/
predict: $(STAMP)
	@test -n "$(CKPT)" -a -n "$(INPUT)" || { echo "error: usage: make predict CKPT=<checkpoint> INPUT=<image or folder>"; exit 2; }
	$(BIN)/lit-mnist predict --config $(dir $(CKPT))../config.yaml --ckpt_path $(CKPT) --data.predict_path=$(INPUT) $(ARGS)

# make plots RUN=logs/default/version_0
plots: $(STAMP)
	@test -n "$(RUN)" || { echo "error: usage: make plots RUN=<run folder>"; exit 2; }
	$(BIN)/python -m lit_mnist.tools.plots $(RUN)

# make export CKPT=logs/best/version_0/checkpoints/<name>.ckpt: ONNX + TorchScript, checked on the test set
export: $(STAMP)
	@test -n "$(CKPT)" || { echo "error: usage: make export CKPT=<checkpoint>"; exit 2; }
	$(BIN)/python -m lit_mnist.tools.export $(CKPT) --data-dir $(DATA_DIR) $(EXPORT_ARGS)

# make notebooks [RUN=<run folder>] [IMAGE=<image file>]: executed copies in logs/notebooks/
notebooks: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(if $(RUN),LIT_MNIST_RUN=$(RUN)) $(if $(IMAGE),LIT_MNIST_IMAGE=$(IMAGE)) \
	  $(BIN)/python -m lit_mnist.tools.notebooks notebooks/*.ipynb

compare: $(STAMP)
	$(BIN)/python -m lit_mnist.tools.compare --epochs $(EPOCHS) --data-dir $(DATA_DIR) $(COMPARE_ARGS)

results: $(STAMP)
	$(BIN)/python -m lit_mnist.tools.results logs --output logs/results.md $(RESULTS_ARGS)

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir logs --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests notebooks

clean:
	rm -rf logs build src/*.egg-info .pytest_cache .ruff_cache
