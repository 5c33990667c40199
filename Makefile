# Two commands work on a fresh machine: `make demo` and `make test` (both set up first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DATA ?= data
MANIFEST ?= $(DATA)/demo/manifest.csv
OUT ?= $(DATA)/features
BACKBONE ?= efficientnet
# Extra `extract run` options, e.g. EXTRACT_ARGS="--image-frames 4 --device cuda".
EXTRACT_ARGS ?=
# The demo samples 4 frames per clip for the image backbone so that it runs in minutes on a CPU;
# the reference default (every frame of the clip) is what `make extract` uses.
DEMO_EXTRACT_ARGS ?= --image-frames 4

.PHONY: setup test demo demo-data extract matrix lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(DATA)/demo/manifest.csv: | setup
	$(BIN)/extract demo-data $(DATA)/demo

demo-data: $(DATA)/demo/manifest.csv

extract: setup $(MANIFEST)
	$(BIN)/extract run --manifest $(MANIFEST) --backbone $(BACKBONE) --out $(OUT) $(EXTRACT_ARGS)

demo: setup $(DATA)/demo/manifest.csv
	$(BIN)/extract run --manifest $(DATA)/demo/manifest.csv --backbone efficientnet_lite0 \
		--out $(DATA)/demo-features $(DEMO_EXTRACT_ARGS) --quiet
	$(BIN)/extract verify $(DATA)/demo-features/efficientnet/efficientnet_lite0.h5
	$(BIN)/probe train --features $(DATA)/demo-features/efficientnet/efficientnet_lite0.h5 \
		--model linear --splits all --seeds 1 --out runs/demo-linear --quiet
	@echo
	@echo "demo data:     $(DATA)/demo/manifest.csv"
	@echo "features:      $(DATA)/demo-features/efficientnet/efficientnet_lite0.h5"
	@echo "probe results: runs/demo-linear (metrics.json per split; summary.json)"

bench: setup
	$(BIN)/python bench/bench_extract.py
	$(BIN)/python bench/bench_probe.py

clean:
	rm -rf $(DATA)/demo-features runs reports
