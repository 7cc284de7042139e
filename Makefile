# diffqc — two commands on a fresh machine: `make run` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
ARGS ?=
TORCH := torch==2.13.0

.PHONY: setup system-packages run test proto lint constraints bench-detector bench-fast soak scaleout gpu-check clean

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

# Re-installs when pyproject.toml or constraints.txt changes. torch goes first, pinned to the local
# CPU wheel: an unpinned torch (asked for by diffusers) would pull a multi-GB CUDA build. Then the
# project with every extra the tests and the demo need, at the versions constraints.txt pins (the
# images install the same pins; a production install is the base alone: see README, Install).
EXTRAS := detector,onnx,charts,local,s3,dev
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make setup: $(PYTHON) not found (diffqc needs Python 3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $@

run: setup
	$(BIN)/diffqc demo $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

proto: setup
	$(BIN)/python -m diffqc.contracts.codegen

# ruff (rules and formatting: checks only, never rewrites) and mypy (its files and strictness: pyproject.toml).
LINT_PATHS := diffqc services tests benchmarks
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

# Re-pins constraints.txt to what .venv holds (after installing new versions there and running the
# tests): its header stays, the pins are pip freeze (setuptools included: torch requires it) without
# pip, the project and local version labels (torch's +cpu: the Triton image takes the CUDA build).
constraints:
	@test -x $(BIN)/python || { echo "make constraints: no $(VENV); run make setup first"; exit 1; }
	{ sed -n '1,/^$$/p' constraints.txt; $(BIN)/python -m pip freeze --all --exclude-editable \
	  | grep -v '^pip==' | sed -E 's/^([A-Za-z0-9_.-]+==[^+]+)\+.*/\1/'; } > constraints.txt.new \
	  && mv constraints.txt.new constraints.txt

# Chaos soak: three lines stream while services are SIGKILLed and Triton, PostgreSQL, the time-series store
# and the blob volume fail in turn (benchmarks/soak.py; ~5 min).
soak: setup
	$(BIN)/python -m benchmarks.soak $(ARGS)

# Scale-out curve: frames/s with 1, 2, 4 replicas of each consumer stage next to Triton alone (benchmarks/scaleout.py).
scaleout: setup
	$(BIN)/python -m benchmarks.scaleout $(ARGS)

# Trains the detector on every benchmark data set under a fixed CPU budget (~70 min on 2 cores);
# e.g. ARGS="--minutes 2 --datasets pcb,brick". The bench extra brings the ELPV data set.
bench-detector: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/detector.py $(ARGS)

# Distillation, adaptive augmentation and onboarding on the same data sets (several hours on 2 cores
# for everything); e.g. ARGS="--distill pcb,brick --ada pcb --onboard pcb".
bench-fast: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m benchmarks.fast $(ARGS)

# On a machine with one NVIDIA GPU: its own venv (.gpu-venv: the CUDA build of $(TORCH), onnxruntime-gpu,
# tritonserver), the gpu tests (CPU parity, fp16 verdicts, KIND_GPU Triton) and `diffqc bench triton
# --device cuda`, in one table (docs/gpu.md). Independent of setup: it must not touch the CPU .venv.
gpu-check:
	bash benchmarks/gpu_check.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
