# The two commands of the README do all the set-up themselves:
#   make compare   # creates .venv, installs, runs the reference comparison (default profile)
#   make test      # creates .venv, installs, runs the project's test suite
# Overrides: PYTHON=python3.11, TORCH_PKGS="torch torchvision" (e.g. on a Mac),
#            PROFILE=smoke|cpu|gpu, ARGS="--arms torch-scratch", PYTEST_ARGS="-x -k data".
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,docs
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install compare test stubs docs serve-docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PKGS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

compare: $(STAMP)
	$(BIN)/alexnet-course compare $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

stubs: $(STAMP)
	$(BIN)/alexnet-course stubs

clean:
	rm -rf $(VENV) runs site .benchmarks
