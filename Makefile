# Two entry points for a fresh machine (see README): `make run` and `make test`.
# Both create .venv and install the pinned packages first; re-running skips the install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# CPU build on dev machines and CI; GPU images install their own CUDA torch.
TORCH_REQ := requirements/torch-cpu.txt
CONFIG ?= configs/local.yaml

.PHONY: install run data info test test-fast lint lock clean

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS) $(TORCH_REQ)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r $(TORCH_REQ) -c $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/ptwiki-llm run --config $(CONFIG)

data: install
	$(BIN)/ptwiki-llm data --config $(CONFIG)

info: install
	$(BIN)/ptwiki-llm info --config $(CONFIG)

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lock: install
	{ head -3 $(CONSTRAINTS); $(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch==|ptwiki-llm)'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf .ptwiki
