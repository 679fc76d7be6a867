# arcgap developer entry points. `make demo` and `make test` do all set-up on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# crane (go-containerregistry): a second registry implementation for the tests (`crane registry serve`) and
# the peer `make bench` measures against. Built once from Debian's packaged source by scripts/build-crane.sh
# (about 80 s, then cached in CRANE_DIR); `make test CRANE=/path/to/crane` uses a crane you already have.
CRANE_DIR ?= /tmp/crane-build
CRANE     ?= $(CRANE_DIR)/bin/crane
# cosign, notation, oras from Debian unstable (apt-get download + dpkg -x; the system is not changed) for the
# referrers tests against the real tools (tests/test_e2e_supplychain_tools.py).
SUPPLYCHAIN_DIR ?= /tmp/supplychain-tools

.PHONY: all sysdeps venv test test-crane unit lint demo bench wheelhouse clean crane supplychain-tools

all: test

sysdeps:
	bash scripts/install-sysdeps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || (bash scripts/install-sysdeps.sh venv && $(PYTHON) -m venv $(VENV))
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

crane: $(CRANE)

$(CRANE):
	@mkdir -p $(CRANE_DIR)
	@echo "building crane from Debian's go-containerregistry source into $(CRANE_DIR) (about 80 s, once; log: $(CRANE_DIR)/build.log)"
	@CRANE_DIR=$(CRANE_DIR) bash scripts/build-crane.sh > $(CRANE_DIR)/build.log 2>&1 && [ -x $(CRANE) ] || { \
	    tail -n 15 $(CRANE_DIR)/build.log >&2; \
	    echo "error: could not build crane into $(CRANE_DIR) (needed by the crane round-trip tests and make bench); full log: $(CRANE_DIR)/build.log" >&2; \
	    echo "hint: the build needs apt-get, dpkg-deb and deb.debian.org; or pass CRANE=/path/to/crane" >&2; \
	    exit 1; }

lint: venv
	$(BIN)/ruff check arcgap devtools tests
	$(BIN)/lint-imports
	$(BIN)/vulture arcgap devtools --min-confidence 80  # unused imports, variables, unreachable code

## Everything: lint, unit tests and end-to-end tests against real registries (distribution and crane's),
## dockerd and namespaces. A missing crane is an error here (plain `pytest` skips the crane tests instead).
test: sysdeps venv lint crane supplychain-tools
	ARCGAP_CRANE=$(abspath $(CRANE)) ARCGAP_REQUIRE_CRANE=1 ARCGAP_SUPPLYCHAIN_TOOLS=$(SUPPLYCHAIN_DIR)/bin \
	    $(BIN)/python -m pytest -q -ra

supplychain-tools:
	@SUPPLYCHAIN_DIR=$(SUPPLYCHAIN_DIR) bash scripts/get-supplychain-tools.sh > /dev/null

## Only the round trips against crane's registry (distribution -> crane, crane -> distribution, mirror).
test-crane: sysdeps venv crane
	ARCGAP_CRANE=$(abspath $(CRANE)) ARCGAP_REQUIRE_CRANE=1 $(BIN)/python -m pytest -q -ra -m crane

## The pure core only: no services needed.
unit: venv
	$(BIN)/python -m pytest -q -m "not services"

## Real local registries, a generated Arc-like release, export → bundle → import, digests compared.
demo: sysdeps venv
	$(BIN)/python -m devtools.demo

## Export and import of a generated release of several hundred MB, side by side with crane and skopeo.
## Options through BENCH_ARGS, e.g. make bench BENCH_ARGS="--rounds 5" or BENCH_ARGS=--scale (see --help).
## make bench WAN=1: arcgap, crane and curl over an emulated internet path instead (devtools/wanbench.py; root).
BENCH_MODULE = $(if $(filter 1,$(WAN)),devtools.wanbench,devtools.bench)
bench: sysdeps venv crane
	ARCGAP_CRANE=$(abspath $(CRANE)) $(BIN)/python -m $(BENCH_MODULE) $(BENCH_ARGS)

## arcgap and every runtime dependency as wheels, with install.sh and SHA256SUMS, for an offline machine.
## Another target: make wheelhouse WHEELHOUSE_ARGS="--installer-platform manylinux2014_aarch64 --installer-python 3.9"
wheelhouse: venv
	$(BIN)/arcgap wheelhouse --output dist/wheelhouse --force $(WHEELHOUSE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info .work
