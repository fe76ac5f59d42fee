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

# Each install leaves a stamp in the venv once pip has succeeded, and runs again only when
# pyproject.toml is newer than its stamp: `make run` and `make test` on a ready environment
# install nothing (a reinstall under a running `make test` broke its collection, issue 33),
# and an install that failed or was interrupted is not stamped, so the next run redoes it.
STAMP := $(VENV)/.installed
define pip_install
	@rm -f $@
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e "$(1)"
	@touch $@
endef

# Serving only: no scikit-learn, matplotlib or training stack.
$(STAMP)-serve: pyproject.toml setup.py | $(BIN)/python
	$(call pip_install,.)

$(STAMP)-train: pyproject.toml setup.py | $(BIN)/python
	$(call pip_install,.[train])

# The dev extra holds the serving and training packages: a dev install stands for both.
$(STAMP)-dev: pyproject.toml setup.py | $(BIN)/python
	$(call pip_install,.[dev])
	@touch $(STAMP)-serve $(STAMP)-train $(STAMP)-docs

install: $(STAMP)-serve
install-train: $(STAMP)-train
install-dev: $(STAMP)-dev

# The documentation site that the app serves at /guide (docs/, mkdocs.yml), built into
# site/ when missing or older than its pages; MkDocs and its theme are the docs extra.
$(STAMP)-docs: pyproject.toml setup.py | $(BIN)/python
	$(call pip_install,.[docs])

site/index.html: mkdocs.yml $(wildcard docs/*.md) | $(STAMP)-docs
	@NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet

# Quiet on a ready environment: make echoes nothing, so every line is the app's own.
run: install site/index.html
	@$(BIN)/pneumonia-triage serve

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
