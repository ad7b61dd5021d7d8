# faceidx: `make demo` runs the end-to-end job, `make test` runs the tests.
# Both create .venv/ and install what they need first.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -q
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help install test demo bench lint clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP)  ## Create .venv and install faceidx (editable) with every extra but gpu, CPU torch

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# CPU torch pinned: this release lies on disk here; others pull GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[cpu,embed,onnx,serve,ray,dev]'
	# MTCNN's weights only (--detector hog+mtcnn); the package pins an old torch: no deps.
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

test: install  ## Run the test suite (what CI runs)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: install  ## Run the main job end to end on a default dataset
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash scripts/demo.sh

bench: install  ## Run the benchmarks (JSON lines to stdout, plots under bench-out/)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash scripts/bench.sh

lint: install  ## ruff check
	$(VENV)/bin/ruff check faceidx tests benchmarks

clean:  ## Remove the venv and generated outputs
	rm -rf $(VENV) demo-out bench-out *.egg-info
