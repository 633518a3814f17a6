# The README's commands. Each one sets up .venv on first use: torch==2.13.0 first (the CPU build; a bare
# torch requirement would pull GBs of CUDA packages), then the project with its dev extra.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo test ui bench clean browser postgres

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/equal demo

# the UI test drives a headless Chromium: Debian's chromium and chromedriver, installed with apt when missing
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing Debian's chromium and chromium-driver (apt) for the UI test"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver; }

# the DuckLake store's tests start a throwaway Postgres from its binaries (initdb, pg_ctl): Debian's postgresql, installed
# with apt when missing (Debian keeps them in /usr/lib/postgresql/<version>/bin, where tests/postgres.py looks)
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing Debian's postgresql (apt) for the DuckLake store's tests"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends postgresql; }

# three pytest workers on two cores, a test file each at a time, the longest files first (tests/conftest.py): many
# tests wait (servers, subprocesses, Ray, a browser) more than they compute; with two workers the cores were busy 1.5
# of 2 on average (10m49s), with three 9m04s-10m08s, with four 11m01s (a test ran past its 300 s limit). One OpenMP
# thread per process: with several workers on two cores, torch's OpenMP threads spin waiting for each other (measured
# side by side, three workers: 12m48s of user CPU and 9m04s without it, 10m22s and 8m16s with it)
test: $(STAMP) browser postgres
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder

ui: $(STAMP)
	$(BIN)/equal ui

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/lake_maintenance.py
	$(BIN)/python benchmarks/openblas.py
	$(BIN)/python benchmarks/harvest.py
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/faults.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/embedder_recall.py --clusters
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/selection_sim.py
	$(BIN)/python benchmarks/selection.py

clean:
	rm -rf .equal .pytest_cache
