# arcgap developer entry points. `make demo` and `make test` do all set-up on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all sysdeps venv test unit lint demo bench wheelhouse clean

all: test

sysdeps:
	bash scripts/install-sysdeps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || (bash scripts/install-sysdeps.sh venv && $(PYTHON) -m venv $(VENV))
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check arcgap devtools tests
	$(BIN)/lint-imports

## Everything: lint, unit tests and end-to-end tests against real registries, dockerd and namespaces.
test: sysdeps venv lint
	$(BIN)/python -m pytest -q -ra

## The pure core only: no services needed.
unit: venv
	$(BIN)/python -m pytest -q -m "not services"

## Real local registries, a generated Arc-like release, export → bundle → import, digests compared.
demo: sysdeps venv
	$(BIN)/python -m devtools.demo

## Export and import of a generated release of several hundred MB, side by side with skopeo.
bench: sysdeps venv
	$(BIN)/python -m devtools.bench

## arcgap and every runtime dependency as wheels, with install.sh and SHA256SUMS, for an offline machine.
## Another target: make wheelhouse WHEELHOUSE_ARGS="--installer-platform manylinux2014_aarch64 --installer-python 3.9"
wheelhouse: venv
	$(BIN)/arcgap wheelhouse --output dist/wheelhouse --force $(WHEELHOUSE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info .work
