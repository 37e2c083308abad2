# Each target installs what it needs: on a fresh machine `make train` or `make test` is enough.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data
CONFIG ?= configs/default.yaml
# flags added to any target's command: make test ARGS="-k resume", make compare ARGS="--epochs 2"
ARGS ?=
# SEEDS="0 1 2": one run per seed, then mean +- std
SEEDS ?=
# make experiments: the overlays of the seed recipe on MNIST (folder.yaml and fashion_mnist.yaml read other data)
EXPERIMENTS ?= $(filter-out folder fashion_mnist,$(basename $(notdir $(wildcard configs/experiments/*.yaml))))
PORT ?= 6006
# The stamp is older than pyproject.toml when dependencies changed: then install again.
STAMP := $(VENV)/.installed

.PHONY: install train test lr-find tensorboard bench bench-gpu compare results experiments predict plots export notebooks sweep lint clean

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
	$(BIN)/lit-mnist seeds --seeds $(SEEDS) --config $(CONFIG) --data.data_dir=$(DATA_DIR) $(ARGS)
endif

test: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest $(ARGS)

# make sweep ARGS="--space configs/sweeps/search.yaml --trials 24 [--workers 2]": an Optuna study
sweep: $(STAMP)
	$(BIN)/lit-mnist sweep --config $(CONFIG) --data.data_dir=$(DATA_DIR) $(ARGS)

# make lr-find [CONFIG=...] [ARGS="--model.optimizer=torch.optim.SGD"]: an LR range test, the suggested --model.optimizer.lr
lr-find: $(STAMP)
	$(BIN)/lit-mnist lr-find --config $(CONFIG) --data.data_dir=$(DATA_DIR) $(ARGS)

# make bench [ARGS="--cases bc"]: the template against plain PyTorch, report in docs/bench.md
bench: $(STAMP)
	$(BIN)/lit-mnist bench --data.data_dir=$(DATA_DIR) $(ARGS)

# make bench-gpu: on a CUDA GPU, samples/s at large batches and gpu_fast.yaml's time to 99%, into docs/bench-gpu.md
bench-gpu: $(STAMP)
	$(BIN)/lit-mnist bench-gpu --data.data_dir=$(DATA_DIR) $(ARGS)

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
	$(BIN)/lit-mnist plots $(RUN) $(ARGS)

# make export CKPT=logs/best/version_0/checkpoints/<name>.ckpt: ONNX + TorchScript, checked on the
# checkpoint's own test split (its run's config.yaml says which data; DATA_DIR=DIR where it moved)
export: $(STAMP)
	@test -n "$(CKPT)" || { echo "error: usage: make export CKPT=<checkpoint>"; exit 2; }
	$(BIN)/lit-mnist export $(CKPT) $(if $(filter file,$(origin DATA_DIR)),,--data.data_dir=$(DATA_DIR)) $(ARGS)

# make notebooks [RUN=<run folder>] [IMAGE=<image file>]: executed copies in logs/notebooks/
notebooks: $(STAMP)
	DATA_DIR=$(DATA_DIR) $(if $(RUN),LIT_MNIST_RUN=$(RUN)) $(if $(IMAGE),LIT_MNIST_IMAGE=$(IMAGE)) \
	  $(BIN)/lit-mnist notebooks notebooks/*.ipynb $(ARGS)

# make compare [ARGS="--epochs 10 --optimizers sgd adam --data.batch_size=128"]: 4 epochs each by default
compare: $(STAMP)
	$(BIN)/lit-mnist compare --data.data_dir=$(DATA_DIR) $(ARGS)

results: $(STAMP)
	$(BIN)/lit-mnist results logs --output logs/results.md $(ARGS)

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir logs --port $(PORT) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests notebooks $(ARGS)

clean:
	rm -rf logs build src/*.egg-info .pytest_cache .ruff_cache
