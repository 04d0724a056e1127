# Two commands for a fresh machine (only Python needed): `make run` and `make test`. `make bench` for the figures.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 8501

.PHONY: setup run test bench chromium clean

setup: $(STAMP)

# Re-installs when pyproject.toml changes; pip takes torch==2.13.0 (CPU) from the machine's local disk.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian's chromium for the browser tests (test tools cannot download their own browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

run: $(STAMP)
	$(BIN)/streamlit run app.py --server.headless true --server.port $(PORT) \
		--browser.gatherUsageStats false --server.maxUploadSize 500 -- --data data

test: $(STAMP) chromium
	$(BIN)/python -m pytest

bench: $(STAMP) chromium
	$(BIN)/python tests/benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache
