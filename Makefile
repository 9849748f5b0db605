# The two commands of the README do all the set-up themselves:
#   make compare   # creates .venv, installs, runs the reference comparison (default profile)
#   make test      # creates .venv, installs, runs the project's test suite
# Overrides: PYTHON=python3.11, TORCH_PKGS="torch torchvision" (e.g. on a Mac),
#            PROFILE=smoke|cpu|gpu, ARGS="--arms torch-scratch", PYTEST_ARGS="-x -k data",
#            TEST_JOBS=4 (pytest-xdist workers; 0 runs the suite in one process).
#   make mutants LESSON=05_analysis   # mutation testing of solutions/ (mutmut), reports in
#                                     # docs/results/mutants/ (LESSON: one or more; default all;
#                                     # ARGS="--jobs 2": two mutants at once, one per core)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,docs
TEST_JOBS ?= 2
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install compare test mutants stubs docs serve site-check screenshots notebooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PKGS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m alexnet_course.pagecache $(VENV)  # mapped as a used install's (#30)
	touch $@

install: $(STAMP)

compare: $(STAMP)
	$(BIN)/alexnet-course compare $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

test: $(STAMP)  # on TEST_JOBS processes (pytest-xdist; TEST_JOBS=0: one process)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --maxschedchunk 1 $(PYTEST_ARGS)

mutants: $(STAMP)  # mutmut on solutions/ against each lesson's graded suite (slow; not in CI)
	OMP_NUM_THREADS=1 $(BIN)/alexnet-course mutants $(LESSON) $(ARGS)

stubs: $(STAMP)
	$(BIN)/alexnet-course stubs

docs: $(STAMP)  # the site into ./site, strict
	$(BIN)/mkdocs build --strict

serve: $(STAMP)  # the site at http://127.0.0.1:8000, rebuilt on every change
	$(BIN)/mkdocs serve

site-check: $(STAMP)  # every main page in headless Chromium (apt-get install chromium)
	$(BIN)/alexnet-course site check

screenshots: $(STAMP)  # full-page PNGs of the main pages into site-screenshots/
	$(BIN)/alexnet-course site screenshots site-screenshots

notebooks: $(STAMP)  # re-run the docs notebooks in place (reference solutions, generated data)
	$(BIN)/alexnet-course site notebooks

clean:
	rm -rf $(VENV) runs site site-screenshots .benchmarks
