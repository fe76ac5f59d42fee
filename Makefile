# The two commands of the README: `make run` (set up, serve the committed model) and
# `make test` (set up, run the whole test suite). CI runs `make test` through .ci/run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data/chest_xray
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast install install-dev install-train system-packages lint train

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
	$(BIN)/pneumonia-triage serve

# Real components the tests drive, from Debian's packages, installed once when missing:
# Chromium (browser tests; Playwright's own download is not used), PostgreSQL (a throw-away
# cluster per test session), Orthanc and dcmtk (a real PACS, storescu/echoscu), Prometheus
# (promtool checks the alert rules), dicom3tools (dciodvfy checks the DICOM node's results
# against their IODs).
SYSTEM_PACKAGES := chromium:chromium postgresql:/usr/lib/postgresql/*/bin/initdb \
	orthanc:/usr/sbin/Orthanc dcmtk:storescu prometheus:promtool dicom3tools:dciodvfy
system-packages:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  package=$${entry%%:*}; probe=$${entry#*:}; \
	  if ! command -v "$$probe" >/dev/null 2>&1 && ! ls $$probe >/dev/null 2>&1; then \
	    missing="$$missing $$package"; fi; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing for the tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

lint: install-dev
	$(BIN)/ruff check .

test: install-dev system-packages lint
	PNEUMONIA_DATA_DIR=$${PNEUMONIA_DATA_DIR:-$(DATA_DIR)} $(BIN)/python -m pytest

# The daily lane: everything but slow, browser and real-data tests (under 2 minutes on 2 cores).
test-fast: install-dev lint
	$(BIN)/python -m pytest -m "not slow and not browser and not realdata"

# The full study on the CPU (about 12 minutes on 2 cores); writes models/.
train: install-train
	$(BIN)/python -m training run --data-dir $(DATA_DIR) --experiments all --out models
