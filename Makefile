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
# Two pytest processes side by side, each with half the cores as torch threads: the quick demo (one
# test that trains for minutes) followed by the model-process tests, and everything else. On 2
# cores, one thread each, the two sides take about the same time (instead of 10 min for one process
# on two threads: the demo's small convolutions gain 1.8x from a second thread, the rest of the suite
# less). pytest-xdist's work stealing (two workers, the demo collected first) was tried instead:
# 513 s from a fresh clone against 521 s for these two fixed halves on the same day, within the
# run-to-run spread, for one more dependency, and each worker builds the session's fixtures (files
# split between workers build their module fixtures twice). The demo's headline numbers close its
# side's output (tests/conftest.py).
# TEST_PARALLEL=0 runs one process.
TEST_PARALLEL ?= 1
TEST_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 3 ? n / 2 : 1 )))
DEMO_SIDE := tests/test_demo.py tests/zeroshot/test_replicas.py
test: $(STAMP)
ifeq ($(TEST_PARALLEL),0)
	$(BIN)/python -m pytest -q
else
	@log=$$(mktemp); \
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q $(DEMO_SIDE) >$$log 2>&1 & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' INT TERM; \
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q $(addprefix --ignore=,$(DEMO_SIDE)); rest=$$?; \
	wait $$demo; code=$$?; echo "--- $(DEMO_SIDE) (beside the rest):"; cat $$log; rm -f $$log; \
	[ $$rest -eq 0 ] && [ $$code -eq 0 ]
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
