# Set-up and checks. `make test` and `make demo` work on a fresh machine:
# they create .venv at the repo root and install medklip into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the releases this project is tested with.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test test-quick demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	@echo "medklip demo (synthetic pre-training + zero-shot) is not available yet: it arrives with the pre-training issue (#4)." >&2
	@echo "Installed: try '$(BIN)/medklip --help'." >&2
	@exit 2

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
