# lottery: `make help` lists the targets.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are pinned to the releases this project is tested with; pip takes them from a local wheel cache when there is one.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: help install demo test test-fast bench clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install lottery with its dependencies

demo: install  ## the demo: IMP on LeNet-300-100 / digits, 12 levels + control, curve and ticket in runs/demo (~3 min on 2 CPU cores)
	$(VENV)/bin/lottery run --config experiments/configs/demo.yaml

test: install  ## the whole test suite, slow end-to-end tests included (what CI runs)
	$(PY) -m pytest -q

test-fast: install  ## the test suite without the slow end-to-end tests
	$(PY) -m pytest -q -m "not slow"

bench: install  ## mask overhead per training step: dense vs MaskManager.apply() vs torch.nn.utils.prune
	$(PY) experiments/bench_masks.py

clean:  ## remove the virtual environment and runs/
	rm -rf $(VENV) runs
