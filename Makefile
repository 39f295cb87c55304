# One venv for everything; each target creates it when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check bench clean venv

# scripts/system-deps installs the system parts each target needs (or says how) before the venv.

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo:
	@scripts/system-deps demo
	@$(MAKE) --no-print-directory venv
	$(BIN)/axons demo

test:
	@scripts/system-deps test
	@$(MAKE) --no-print-directory venv
	$(BIN)/pytest -q

check:
	@scripts/system-deps test
	@$(MAKE) --no-print-directory venv
	$(BIN)/ruff check engine axons_tui bench tests sample_agents
	$(BIN)/ruff format --check engine axons_tui bench tests sample_agents
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench:
	@scripts/system-deps bench
	@$(MAKE) --no-print-directory venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
