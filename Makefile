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
# pytest's temporary folders (TEST_TMP): in memory where /dev/shm has 6 GB free, one folder per
# checkout. The suite writes, syncs and removes gigabytes of runs and checkpoints; on the disk
# that cost 28 s more of its 295 (the 2-core VM: file-system journal, write-back, waits in fsync).
# Each passing test's folder goes as it ends (pyproject.toml), the whole one when every test
# passed; a failing test's stays, where its report says. `make test TEST_TMP=` keeps pytest's own place;
# `TEST_TMP=DIR` uses DIR, which pytest empties first (its --basetemp) and make removes after a pass.
TEST_TMP_FREE_KB := $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $$4}')
TEST_TMP ?= $(if $(shell [ "$(TEST_TMP_FREE_KB)" -gt 6000000 ] 2>/dev/null && echo yes),/dev/shm/clipclap-tests-$(shell printf %s "$(CURDIR)" | cksum | cut -d' ' -f1))
# --durations: the slowest tests, so that a slow run (CI's included) says where its time went.
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(if $(TEST_TMP),--basetemp=$(TEST_TMP))

.PHONY: install demo test test-fast lint bench clean

# Bytecode is kept (see the install below): the variable that would forbid it stays out of every command.
unexport PYTHONDONTWRITEBYTECODE

install: $(STAMP)

# torch/torchvision are pinned to the builds this machine serves from local disk. pip does not
# byte-compile what it installs (--no-compile): that was half of the install's time, for some
# 14,000 modules of which a run imports a few thousand. Python compiles those on first import
# instead and keeps them, since make does not pass PYTHONDONTWRITEBYTECODE on (set on this
# project's machines, it would have every process compile torch anew; tried: 86 s more of tests).
# The virtual environment gets its pip from this Python's (pip >= 22.3 installs into another
# environment with --python): 1.7 s instead of 4.2 for venv's own bootstrap (the pip and setuptools
# it bundles, compiled, then pip upgraded), which remains the way where this Python has no pip.
# .ci/install_env.py is `pip install` with torch's 3 GB of CUDA wheels unpacked by two pip
# processes at once, and the modules the commands import compiled while pip finishes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python install --quiet --upgrade pip 2>/dev/null || $(PYTHON) -m venv --upgrade-deps $(VENV)
	$(BIN)/python .ci/install_env.py --quiet --no-compile torch==2.14.1 torchvision==0.29.1 -e '.[all,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clipclap demo --store $(DEMO_STORE)

# ruff first (its rules are in pyproject.toml): a style finding fails CI like a failing test
test: lint
	$(PYTEST) $(if $(TEST_TMP),&& rm -rf $(TEST_TMP))

# every test but those marked slow (training to compare numbers, killed processes, the wheel)
test-fast: lint
	$(PYTEST) -m "not slow" $(if $(TEST_TMP),&& rm -rf $(TEST_TMP))

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_protocol.py
	$(BIN)/python benchmarks/bench_extract.py --full
	$(BIN)/python benchmarks/bench_predict.py

clean:
	rm -rf $(VENV) demo-output
