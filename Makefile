# genviz — one-command set-up, book build, tests and benchmarks.
#   make book   set up, execute every chapter in the `book` profile, build _build/html (warnings are errors)
#   make test   set up, unit tests + every chapter in the `quick` profile under nbval + pair check + book build
#   make assignments  student and instructor notebooks of every chapter's exercises, and an nbgrader course (seconds)
#   make student-book the book with every solution hidden, for students (reuses `make book`'s executed chapters)
#   make bench  genviz against plain reference paths and the peer libraries on the same work, with the ratios
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHAPTERS := $(wildcard chapters/*.md)
QUICK_NB := _build/quick-notebooks
COLAB_SAMPLE := 02_poisoning
export PYTHONUNBUFFERED := 1

.PHONY: setup data book assignments student-book test test-colab unit bench sync check-widgets check-launch clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -r requirements.txt
	@# genviz_lib itself, and its test extra (nbgrader, for the assignments); everything else is there already
	$(BIN)/pip install -q --no-compile -e ".[test]"
	@# byte-compile on every core at once (pip compiles one file after another), skipping what no run imports:
	@# test suites, sympy and networkx (torch's, for compilation), pip, the debugger and completer, torch's compiler
	$(BIN)/python -m compileall -q -j 0 -x '/(tests?|sympy|networkx|pip|debugpy|jedi|_inductor|testing)/' \
	  $(VENV)/lib > /dev/null || true
	touch $(STAMP)

setup: $(STAMP) data

data:
	@bash tools/get_fashion_mnist.sh $(BIN)/python

book: setup
	$(BIN)/jupyter-book build . -W --keep-going

# Instructors: _build/assignments/{instructor,student}/<chapter>.ipynb and an nbgrader course in
# _build/assignments/course/ (nbgrader_config.py, source/<chapter>/<chapter>.ipynb). See tools/assignments.py.
assignments: setup
	$(BIN)/python tools/assignments.py

# The book with every solution hidden (_build/assignments/book/_build/html); after `make book` nothing executes again
student-book: setup
	$(BIN)/python tools/assignments.py --student-book

unit: setup
	$(BIN)/pytest tests

test: setup
	$(BIN)/ruff check .
	rm -rf $(QUICK_NB) && $(BIN)/python tools/quick_notebooks.py $(QUICK_NB) > /dev/null
	@# the chapters first: they fill the results cache one at a time, which the assignments' notebooks then read
	$(BIN)/pytest $(QUICK_NB) tests --nbval-lax --nbval-cell-timeout=300 -p no:cacheprovider
	@# one launch notebook as a Colab student runs it (ipywidgets 7.7.1, pip install, data by download);
	@# `make test-colab` runs all of them, with ipywidgets 7.7.1 and 8.x
	$(BIN)/python tools/colab_check.py --widgets 7 --chapters $(COLAB_SAMPLE)
	GENVIZ_PROFILE=quick $(BIN)/jupyter-book build . --path-output _build/quick -W --keep-going
	@grep -q 'caption-number">Fig. 0.1' _build/quick/_build/html/chapters/00_first_experiment.html \
		|| (echo "chapter 0's figures are not numbered 0.1, 0.2, ..."; exit 1)

# Every launch notebook in a fresh Colab-like environment, once with ipywidgets 7.7.1 and once with 8.x.
test-colab: setup
	$(BIN)/python tools/colab_check.py --widgets 7
	$(BIN)/python tools/colab_check.py --widgets 8

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) bench/constraints.txt
	$(BIN)/pip install -q --no-compile -c bench/constraints.txt -e ".[bench]"
	touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	$(BIN)/python bench/run.py

# Optional (not part of `make test`): click through a built page's widget in headless Chromium.
check-widgets:
	@test -x /usr/bin/chromium || { echo "needs Debian's chromium: apt-get install -y chromium"; exit 1; }
	@test -d _build/tools/node_modules/playwright-core || npm install --silent --prefix _build/tools playwright-core@1
	NODE_PATH=_build/tools/node_modules node tools/check_widgets.js \
	  $${PAGE:-_build/html/chapters/00_first_experiment.html} _build/widget.png

# Optional: open a built page's launch menu in headless Chromium and check Binder, Colab and Live Code.
check-launch:
	@test -x /usr/bin/chromium || { echo "needs Debian's chromium: apt-get install -y chromium"; exit 1; }
	@test -d _build/tools/node_modules/playwright-core || npm install --silent --prefix _build/tools playwright-core@1
	NODE_PATH=_build/tools/node_modules node tools/check_launch_buttons.js \
	  $${PAGE:-_build/html/chapters/02_poisoning.html} \
	  $$($(BIN)/python -c "import yaml; print(yaml.safe_load(open('_config.yml'))['repository']['url'])") _build/launch.png

# `make sync` after editing a chapter; `make sync URL=https://github.com/OWNER/REPO` to publish under another repository
sync: $(STAMP)
	$(BIN)/python tools/sync_chapters.py $(if $(URL),--url $(URL))

clean:
	rm -rf _build
