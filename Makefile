# Two commands from a fresh clone (each sets up .venv, installs, builds the kernels):
#   make train   the main job: the fastai lesson-1 flow on the embedded demo dataset
#   make test    lint + the test suite
# FORCE_CUDA=1 also compiles the CUDA kernels on a machine without a GPU (CI does this).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FORCE_CUDA ?= 0
export FORCE_CUDA

DEPS   := $(VENV)/.deps-installed
KERNELS:= $(VENV)/.kernels-built-cuda$(FORCE_CUDA)
CSRC   := $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)

.PHONY: install train test lint bench clean

$(DEPS): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

$(KERNELS): $(DEPS) setup.py pyproject.toml $(CSRC)
	rm -f $(VENV)/.kernels-built-cuda*
	MAX_JOBS=$${MAX_JOBS:-2} $(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

install: $(KERNELS)

train: $(KERNELS)
	$(BIN)/fastcore-ext train $(ARGS)

lint: $(DEPS)
	$(BIN)/ruff check setup.py fastcore_ext tests bench $(wildcard examples)
	$(BIN)/ruff format --check setup.py fastcore_ext tests bench $(wildcard examples)

test: $(KERNELS) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(KERNELS)
	$(BIN)/python -m pytest bench -q --benchmark-columns=median,iqr,rounds $(PYTEST_ARGS)

clean:
	rm -rf build fastcore_ext/*.so *.egg-info $(VENV)/.kernels-built-cuda*
