# The two set-up commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Local data folder (Imagenette, WikiText-2, SST-2); defaults to ../shared/data when it exists, else ./data.
PTFT_DATA ?= $(firstword $(wildcard $(abspath ../shared/data)) $(CURDIR)/data)
export PTFT_DATA
export WANDB_MODE ?= offline

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,beam,interop]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

clean:
	rm -rf runs wandb .pytest_cache
