# The two commands: `make demo` (install, run the pipeline on the demo benchmark) and `make test`
# (`make test-fast`: the same less the slow-marked end-to-end tests, for the inner loop).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STORE ?= demo-output/clipclap.zarr
# pytest-xdist workers: one per core (`make test TEST_WORKERS=0` runs the tests in one process). Tests
# sharing a module fixture that they change (the wheel's environment) keep together (xdist_group).
TEST_WORKERS ?= auto
# --durations: the slowest tests, so that a slow run (CI's included) says where its time went.
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15

.PHONY: install demo test test-fast lint bytecode bench clean

install: $(STAMP)

# torch/torchvision are pinned to the builds this machine serves from local disk. pip byte-compiles
# what it installs (half of the install's time), and that stays: where PYTHONDONTWRITEBYTECODE is
# set (as on this project's machines), Python would otherwise compile torch again in every process
# (tried: the suite ran 86 s slower with --no-compile).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clipclap demo --store $(DEMO_STORE)

# ruff first (its rules are in pyproject.toml): a style finding fails CI like a failing test
test: lint bytecode
	$(PYTEST)

# every test but those marked slow (training to compare numbers, killed processes, the wheel)
test-fast: lint bytecode
	$(PYTEST) -m "not slow"

# The project's own modules compiled once (only those changed since, in well under a second):
# where PYTHONDONTWRITEBYTECODE is set, as on this project's machines, Python keeps no bytecode,
# and each of the suite's few hundred processes compiled clipclap anew (about 0.5 s of CPU each).
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 clipclap_cli plugins

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_protocol.py
	$(BIN)/python benchmarks/bench_extract.py --full
	$(BIN)/python benchmarks/bench_predict.py

clean:
	rm -rf $(VENV) demo-output
