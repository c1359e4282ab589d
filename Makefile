# Set-up and checks. `make test` and `make demo` work on a fresh machine:
# they create .venv at the repo root and install medklip into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the releases this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test lint demo demo-quick clean

# Everything in one `uv pip install` (torch pinned to the releases above, the project and its test
# extras, byte-compiled as pip does: without the .pyc files a test's child process compiles pydicom
# as it imports it and its peak memory grows by 14 MiB), from the sources pip is configured with
# (tools/uv_sources.py: a local mirror or wheel folder is used, not bypassed). uv unpacks torch and
# its CUDA libraries faster than pip: with empty caches on a 2-core machine 53 s against 111 s
# (benchmarks/install_time.py). Where uv cannot be installed or fails, pip does it all.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if $(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip install --quiet --compile-bytecode \
			--python $(BIN)/python $$($(BIN)/python tools/uv_sources.py) $(TORCH_PINS) -e ".[test]"; then \
		true; \
	else \
		echo "uv did not install medklip; installing with pip"; \
		$(BIN)/python -m pip install --quiet --upgrade pip \
		&& $(BIN)/python -m pip install --quiet $(TORCH_PINS) \
		&& $(BIN)/python -m pip install --quiet -e ".[test]"; \
	fi
	touch $(STAMP)

install: $(STAMP)

# pytest exits 5 when it collects no tests: that fails here too (make stops on any non-zero code).
# pytest-xdist workers, each with its share of the cores as torch threads (2 cores: 2 workers, one
# thread each). The quick demo (one test that trains for minutes) is collected first
# (tests/conftest.py), so one worker starts on it at once; `--dist worksteal` lets the others take
# what is still queued behind it, so the suite ends when the demo and the rest have shared the
# cores, not when the longer of two fixed halves has run. Its headline numbers close pytest's output.
# TEST_PARALLEL=0 runs one process.
TEST_PARALLEL ?= 1
NPROC := $(shell nproc 2>/dev/null || echo 2)
TEST_WORKERS ?= $(shell n=$(NPROC); w=$$(( n / 2 )); [ $$w -lt 2 ] && w=2; [ $$w -gt 8 ] && w=8; echo $$w)
TEST_THREADS ?= $(shell t=$$(( $(NPROC) / $(TEST_WORKERS) )); [ $$t -lt 1 ] && t=1; echo $$t)
test: $(STAMP)
ifeq ($(TEST_PARALLEL),0)
	$(BIN)/python -m pytest -q
else
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal
endif

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy src/medklip

demo: $(STAMP)
	$(BIN)/medklip demo --output runs/demo

demo-quick: $(STAMP)
	$(BIN)/medklip demo --quick --output runs/demo-quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
