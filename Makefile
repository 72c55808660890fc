# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNS   ?= runs

.PHONY: run test test-all notebook fuzz lint figures figures-quick bench data clean

# torch/torchvision: the newest pair that installs together here; nothing newer is pinned.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[test,ray]"  # ray: the cluster tests run in make test
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/initlab data

run: $(STAMP) data
	$(BIN)/initlab run configs/kaiming.yaml --out $(RUNS) --plot

# One pytest-xdist worker per core (one torch thread each: tests/conftest.py); a test file
# runs on one worker, so its module-scoped fixtures are built once (--dist loadfile).
# `make test` leaves out the cases marked slow; `make test-all` runs them too.
# CONTRIBUTING.md: Checks.
test: $(STAMP)
	$(BIN)/ruff check initlab tests
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "not slow"

test-all: $(STAMP)
	$(BIN)/ruff check initlab tests
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# examples/lecture.ipynb in JupyterLab, from the venv (the notebook extra: JupyterLab).
notebook: $(VENV)/.notebook data
	$(BIN)/jupyter lab examples/lecture.ipynb

$(VENV)/.notebook: $(STAMP)
	$(BIN)/pip install --quiet -e ".[notebook]"
	touch $@

# The property-based suites with fresh randomness and FUZZ_FACTOR times the examples `make test`
# draws (its draws are fixed: CONTRIBUTING.md). Stop it with Ctrl-C; a failure prints the
# example and a @reproduce_failure line to paste into the test.
FUZZ_FACTOR ?= 50
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz INITLAB_FUZZ_FACTOR=$(FUZZ_FACTOR) $(BIN)/python -m pytest -q \
		tests/test_hostile.py "tests/test_config.py::test_mutated_configs_load_or_raise_config_error" \
		"tests/test_overrides.py::test_every_yaml_initlab_writes_reads_back_to_the_same_values"

figures: $(STAMP) data
	$(BIN)/initlab figures --out figures

figures-quick: $(STAMP) data
	$(BIN)/initlab figures --quick --out /tmp/initlab-figures-quick

bench: $(STAMP) data
	$(BIN)/initlab bench --out bench.json

clean:
	rm -rf $(VENV) runs .pytest_cache
