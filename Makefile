# The two commands: `make demo` (install, run the pipeline on the demo benchmark) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STORE ?= demo-output/clipclap.zarr

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torch/torchvision are pinned to the builds this machine serves from local disk.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clipclap demo --store $(DEMO_STORE)

# ruff first (its rules are in pyproject.toml): a style finding fails CI like a failing test
test: lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_protocol.py
	$(BIN)/python benchmarks/bench_extract.py --full

clean:
	rm -rf $(VENV) demo-output
