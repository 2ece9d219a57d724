# genviz — one-command set-up, book build, tests and benchmarks.
#   make book   set up, execute every chapter in the `book` profile, build _build/html (warnings are errors)
#   make test   set up, unit tests + every chapter in the `quick` profile under nbval + pair check + book build
#   make bench  fast paths against plain reference paths, with the ratios
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAPTERS := $(wildcard chapters/*.md)
QUICK_NB := _build/quick-notebooks
export PYTHONUNBUFFERED := 1

.PHONY: setup data book test unit bench sync check-widgets clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) data

data:
	@bash tools/get_fashion_mnist.sh

book: setup
	$(BIN)/jupyter-book build . -W --keep-going

unit: setup
	$(BIN)/pytest tests

test: setup
	rm -rf $(QUICK_NB) && mkdir -p $(QUICK_NB)
	@for md in $(CHAPTERS); do \
	  name=$$(basename $$md .md); \
	  $(BIN)/jupytext --quiet --to ipynb $$md -o $(QUICK_NB)/$$name.src.ipynb && \
	  $(BIN)/papermill --prepare-only -p PROFILE quick $(QUICK_NB)/$$name.src.ipynb $(QUICK_NB)/$$name.ipynb \
	    --log-level WARNING && rm $(QUICK_NB)/$$name.src.ipynb || exit 1; \
	done
	$(BIN)/pytest tests $(QUICK_NB) --nbval-lax --nbval-cell-timeout=300 -p no:cacheprovider
	GENVIZ_PROFILE=quick $(BIN)/jupyter-book build . --path-output _build/quick -W --keep-going

bench: setup
	$(BIN)/python bench/run.py

# Optional (not part of `make test`): click through a built page's widget in headless Chromium.
check-widgets:
	@test -x /usr/bin/chromium || { echo "needs Debian's chromium: apt-get install -y chromium"; exit 1; }
	@test -d _build/tools/node_modules/playwright-core || npm install --silent --prefix _build/tools playwright-core@1
	NODE_PATH=_build/tools/node_modules node tools/check_widgets.js \
	  $${PAGE:-_build/html/chapters/00_first_experiment.html} _build/widget.png

# `make sync` after editing a chapter; `make sync URL=https://github.com/OWNER/REPO` to publish under another repository
sync: $(STAMP)
	$(BIN)/python tools/sync_chapters.py $(if $(URL),--url $(URL))

clean:
	rm -rf _build
