# Two commands do everything: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNS   ?= runs

.PHONY: run test lint figures figures-quick bench data clean

# torch/torchvision: the newest pair that installs together here; nothing newer is pinned.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/initlab data

run: $(STAMP) data
	$(BIN)/initlab run configs/kaiming.yaml --out $(RUNS) --plot

test: $(STAMP)
	$(BIN)/ruff check initlab tests
	$(BIN)/python -m pytest -q

figures: $(STAMP) data
	$(BIN)/initlab figures --out figures

figures-quick: $(STAMP) data
	$(BIN)/initlab figures --quick --out /tmp/initlab-figures-quick

bench: $(STAMP) data
	$(BIN)/initlab bench --out bench.json

clean:
	rm -rf $(VENV) runs .pytest_cache
