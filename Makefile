# diffqc — two commands on a fresh machine: `make run` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
ARGS ?=
TORCH := torch==2.13.0

.PHONY: setup system-packages run test proto lint bench-detector bench-fast clean

setup: system-packages $(STAMP)

# System packages from Debian: the embedded time-series store, the browser the dashboard tests
# drive, and the compose implementation that checks docker-compose.yml. Installed when we can
# (root + apt-get); otherwise the command to run is printed.
DEBIAN_PACKAGES := victoria-metrics chromium docker-compose
system-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "note: missing Debian packages; run: sudo apt-get install $$missing"; fi; fi

# Re-installs only when pyproject.toml changes. torch goes first, pinned to the local CPU wheel:
# an unpinned torch (asked for by diffusers) would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make setup: $(PYTHON) not found (diffqc needs Python 3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: setup
	$(BIN)/diffqc demo $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

proto: setup
	$(BIN)/python -m diffqc.contracts.codegen

lint: setup
	$(BIN)/ruff check diffqc services tests

# Trains the detector on every benchmark data set under a fixed CPU budget (~70 min on 2 cores);
# e.g. ARGS="--minutes 2 --datasets pcb,brick". The bench extra brings the ELPV data set.
bench-detector: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/detector.py $(ARGS)

# Distillation, adaptive augmentation and onboarding on the same data sets (several hours on 2 cores
# for everything); e.g. ARGS="--distill pcb,brick --ada pcb --onboard pcb".
bench-fast: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.fast $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
