# lottery: `make help` lists the targets.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are pinned to the releases this project is tested with; pip takes them from a local wheel cache when there is one.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

# Overrides for the paper presets: make resnet20-cifar10 LEVELS=5 SEEDS=3 DEVICE=gpu ARGS="train.epochs=10"
LEVELS ?=
SEEDS  ?= 1
DEVICE ?= auto
ARGS   ?=
PRESET  = for s in $$(seq 0 $$(($(SEEDS) - 1))); do \
	  $(VENV)/bin/lottery run --config experiments/configs/$(1).yaml seed=$$s trainer.accelerator=$(DEVICE) \
	  $(if $(LEVELS),prune.levels=$(LEVELS)) $(ARGS) || exit $$?; done

.PHONY: help install demo test test-fast bench bench-data bench-level bench-lanes bench-memory gpu-check curves stability clean lenet-mnist conv2-cifar10 conv4-cifar10 conv6-cifar10 resnet20-cifar10 vgg16-cifar10

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

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

bench-level: install  ## one IMP level: lottery vs a hand-written loop vs a minimal Lightning module (LeNet-300-100, ResNet-20; ~5 min)
	$(PY) experiments/bench_level.py

bench-lanes: install  ## K runs as lanes of one network vs one by one: runs/hour, LeNet / Conv-2 / ResNet-20 (~4 min)
	$(PY) experiments/bench_lanes.py

bench-memory: install  ## mask bytes per weight in training (ours vs nn.utils.prune) and ticket size vs torch.save
	$(PY) experiments/bench_memory.py

gpu-check: install  ## on a CUDA machine: CUDA tests + every benchmark on the GPU, one summary (< 5 min)
	bash experiments/gpu_check.sh

curves: install  ## run CONFIG=<yaml> with its controls over SEEDS seeds, then the curves and report.md
	@test -n "$(CONFIG)" || { echo "usage: make curves CONFIG=experiments/configs/<name>.yaml [SEEDS=3] [LEVELS=..]"; exit 2; }
	for s in $$(seq 0 $$(($(SEEDS) - 1))); do $(VENV)/bin/lottery run --config $(CONFIG) seed=$$s \
	  trainer.accelerator=$(DEVICE) $(if $(LEVELS),prune.levels=$(LEVELS)) $(ARGS) || exit $$?; done

bench-data: install  ## epoch time: torchvision DataLoader pipeline vs device-resident tensors vs pure compute
	$(PY) experiments/bench_data.py

lenet-mnist: install  ## Frankle & Carbin 2019: LeNet-300-100 on MNIST, 20 levels, rewind to init
	$(call PRESET,lenet_mnist)

conv2-cifar10: install  ## Frankle & Carbin 2019: Conv-2 on CIFAR-10, rewind to init
	$(call PRESET,conv2_cifar10)

conv4-cifar10: install  ## Frankle & Carbin 2019: Conv-4 on CIFAR-10, rewind to init
	$(call PRESET,conv4_cifar10)

conv6-cifar10: install  ## Frankle & Carbin 2019: Conv-6 on CIFAR-10, rewind to init
	$(call PRESET,conv6_cifar10)

resnet20-cifar10: install  ## Frankle et al. 2020: ResNet-20 on CIFAR-10, global pruning, rewind to iteration 500
	$(call PRESET,resnet20_cifar10)

vgg16-cifar10: install  ## Frankle et al. 2020: VGG-16 on CIFAR-10, global pruning, rewind to iteration 2000
	$(call PRESET,vgg16_cifar10)

STEPS ?= 0 20 100
stability: install  ## instability analysis of CONFIG (default: the demo setting) at rewind steps STEPS="0 20 100", LEVELS="0"
	$(VENV)/bin/lottery stability --config $(or $(CONFIG),experiments/configs/stability_demo.yaml) \
	  trainer.accelerator=$(DEVICE) $(ARGS) --steps $(STEPS) --levels $(or $(LEVELS),0)

clean:  ## remove the virtual environment and runs/
	rm -rf $(VENV) runs
