# Set-up and checks. `make test` and `make demo` work on a fresh machine:
# they create .venv at the repo root and install medklip into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the releases this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test lint demo demo-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# pytest exits 5 when it collects no tests: that fails here too (make stops on any non-zero code).
# With 4 or more cores, two pytest workers (pytest-xdist, one test file each at a time): the quick
# demo (collected first) trains in one while the other runs the rest. Not on 2 cores: the demo's two
# torch threads beside another worker's oversubscribe them (measured: 11.8 min instead of 9).
# TEST_WORKERS=N overrides (0: one process).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -ge 4 ] && echo 2 || echo 0)
test: $(STAMP)
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/medklip

demo: $(STAMP)
	$(BIN)/medklip demo --output runs/demo

demo-quick: $(STAMP)
	$(BIN)/medklip demo --quick --output runs/demo-quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
