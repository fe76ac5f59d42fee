# The two commands of the README: `make run` (set up, serve the committed model) and
# `make test` (set up, run the whole test suite). CI runs `make test` through .ci/run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data/chest_xray
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-dev install-train chromium postgresql lint train

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Serving only: no scikit-learn, matplotlib or training stack.
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-train: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train]"

install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"

run: install
	$(BIN)/python -m app

# The browser test drives Debian's Chromium (Playwright's own download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The store's tests and benchmark start a throw-away cluster with Debian's PostgreSQL server
# binaries (tests/pg.py finds them in /usr/lib/postgresql/<version>/bin).
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql for the store's tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql >/dev/null; }

lint: install-dev
	$(BIN)/ruff check .

test: install-dev chromium postgresql lint
	PNEUMONIA_DATA_DIR=$${PNEUMONIA_DATA_DIR:-$(DATA_DIR)} $(BIN)/python -m pytest

# The full study on the CPU (about 12 minutes on 2 cores); writes models/.
train: install-train
	$(BIN)/python -m training --data-dir $(DATA_DIR) --experiments all --out models
