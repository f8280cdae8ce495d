# Set-up and the two everyday commands. `make smoke` and `make test` each create .venv on first use
# (torch and torchvision from pip, then this project with its test extras), so a fresh machine needs
# nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: smoke test test-fast lint clean-venv gpu-prepare gpu-check

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

smoke: $(VENV)/.installed
	$(PY) run.py experiment=smoke

test: $(VENV)/.installed
	$(PY) -m pytest

# The fast signal while developing: the unit and config tiers, without the end-to-end runs (marked slow)
# and the Slurm cluster tests; `make test` (CI) runs everything.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow and not slurm"

# The project's GPU check (dih/tools/gpu_check/). gpu-prepare, here and online, fills the ignored .gpu/ with
# the pure-Python wheels a bare GPU machine lacks and the CIFAR-10 JPEG archive; gpu-check, on the GPU machine
# from the checkout's root, runs it in one call (under 8 minutes) with that machine's python3 and writes
# $(OUT)/gpu_check.md.
OUT ?= gpu_check_out
gpu-prepare: $(VENV)/.installed
	$(PY) -m dih.tools.gpu_check prepare

gpu-check:
	python3 -m dih.tools.gpu_check run --out $(OUT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dih tests run.py

clean-venv:
	rm -rf $(VENV)
