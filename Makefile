# lottery: `make help` lists the targets.
# The Python that builds .venv: python3.11 (what CI uses) when present, else the first of python3,
# python3.13, python3.12, python3.10 that is >= 3.10. `make PYTHON=/path/to/python3.x` picks one.
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in python3.11 python3 python3.13 python3.12 python3.10; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && { echo $$p; break; }; done)
endif
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are pinned to the releases this project is tested with; pip takes them from a local wheel cache when there is one.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

# Overrides for the paper presets: make resnet20-cifar10 LEVELS=5 SEEDS=3 DEVICE=gpu LANES=auto ARGS="train.epochs=10"
# SEEDS seeds run in one process, level by level; LANES (auto: where they pay) trains a level's runs together.
LEVELS ?=
SEEDS  ?= 1
LANES  ?= auto
DEVICE ?= auto
ARGS   ?=
SEED_LIST = [$$(seq -s, 0 $$(($(SEEDS) - 1)))]
RUN     = $(VENV)/bin/lottery run --config $(1) "seeds=$(SEED_LIST)" trainer.lanes=$(LANES) trainer.accelerator=$(DEVICE) \
	  $(if $(LEVELS),prune.levels=$(LEVELS)) $(ARGS)
PRESET  = $(call RUN,experiments/configs/$(1).yaml)

.PHONY: help install demo sparse-demo strong-tickets update-step bench-sparse structured-demo structured-conv bench-structured vit-digits bert-rte bench-bert sweep-demo test test-fast bench bench-data bench-level bench-study bench-lanes bench-memory bench-export gpu-check curves stability clean lenet-mnist conv2-cifar10 conv4-cifar10 conv6-cifar10 resnet20-cifar10 vgg16-cifar10

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no Python >= 3.10 found (tried python3.11, python3, python3.13, python3.12, python3.10);" \
	  "install one, or name it: make PYTHON=/path/to/python3.x"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "make: PYTHON=$(PYTHON) is not a Python >= 3.10 (lottery needs 3.10 or later); make PYTHON=/path/to/python3.x"; exit 2; }
	@echo "make: building $(VENV) with $(PYTHON): $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "make: installing $(TORCH) (pip's default build of torch is the CUDA one: ~5.5 GB in $(VENV); for a CPU-only"
	@echo "      machine see README.md, Install)"
	$(PY) -m pip install --progress-bar on $(TORCH)
	@echo "make: installing lottery and what its tests use (the test extra)"
	$(PY) -m pip install --progress-bar on -e ".[test]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install lottery with its dependencies

demo: install  ## the demo: IMP on LeNet-300-100 / digits, 12 levels + control, curve and ticket in runs/demo (~30 s on 2 idle CPU cores)
	$(VENV)/bin/lottery run --config experiments/configs/demo.yaml

sparse-demo: install  ## IMP beside GMP, SET, RigL, static ERK and early-bird tickets on digits, with their cost (~1 min)
	$(VENV)/bin/lottery run --config experiments/configs/sparse_demo.yaml trainer.lanes=$(LANES)

strong-tickets: install  ## strong tickets (edge-popup) and SR-STE 2:4 beside IMP and reinit on digits, LeNet and 4x as wide (~25 min)
	$(VENV)/bin/lottery run --config experiments/configs/strong_tickets.yaml trainer.lanes=$(LANES)
	$(VENV)/bin/lottery run --config experiments/configs/strong_tickets.yaml trainer.lanes=$(LANES) \
	  model.name=lenet_1200_400 name=strong_tickets_wide
	$(PY) experiments/nm_compare.py runs/strong_tickets

update-step: install  ## SET and RigL: what an update step does with its gradient (skip, apply, extra), 10 seeds (~15 min)
	$(PY) experiments/update_step.py --seeds 10

bench-sparse: install  ## the cost of a mask update (GMP, SET, RigL) amortised over ΔT = 100 steps vs dense steps
	$(PY) experiments/bench_sparse.py

structured-demo: install  ## structured (neuron) tickets of LeNet-300-100 vs unstructured ones and their controls, 2 seeds, one curve (docs/structured.md)
	$(VENV)/bin/lottery run --config experiments/configs/structured_digits.yaml "seeds=[0,1]" trainer.lanes=$(LANES)
	$(VENV)/bin/lottery run --config experiments/configs/structured_digits.yaml "seeds=[0,1]" trainer.lanes=$(LANES) \
	  name=structured_digits_unstructured prune.strategy=layer_magnitude prune.levels=14
	$(VENV)/bin/lottery plot runs/structured_digits runs/structured_digits_unstructured --out runs/structured_digits_curve.png

structured-conv: install  ## network-slimming tickets of Conv-4-BN on the digits, its control and channel early-bird tickets, and the unstructured run (for bench-structured)
	$(VENV)/bin/lottery run --config experiments/configs/structured_conv_digits.yaml trainer.lanes=$(LANES)
	$(VENV)/bin/lottery run --config experiments/configs/structured_conv_digits.yaml trainer.lanes=$(LANES) \
	  name=structured_conv_digits_unstructured prune.strategy=layer_magnitude prune.levels=14 "branches=[]"

bench-structured: install  ## latency of the structured ticket's smaller model vs the unstructured ticket vs dense, digits and ResNet-20 (after structured-conv)
	$(PY) experiments/bench_structured.py --structured runs/structured_conv_digits --unstructured runs/structured_conv_digits_unstructured

vit-digits: install  ## transformer tickets with no download: a small ViT on the digits, 6 levels + reinit (docs/pretrained.md)
	$(call PRESET,vit_digits)

bert-rte: install  ## Chen et al. 2020: BERT-base tickets on GLUE RTE (pip install -e ".[hf]"; a GPU; downloads once)
	$(call RUN,experiments/configs/pretrained/bert_rte.yaml)

sweep-demo: install  ## the demo as a sweep: prune.fraction 0.2 and 0.5 x seeds 0, 1 as local jobs; summary in runs/sweeps/demo
	$(VENV)/bin/lottery sweep --config experiments/configs/demo.yaml prune.fraction=0.2,0.5 seeds=[0,1] prune.levels=3 --launcher local

# One worker per core, one torch thread each: the suite's models are tiny, and threads of several workers sharing
# the cores wait on each other (with two threads per worker the suite took 16 min on 2 cores, with one 8.5).
test: install  ## the whole test suite, slow end-to-end tests included (what CI runs), one worker per core
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist worksteal

test-fast: install  ## the test suite without the slow end-to-end tests
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist worksteal -m "not slow"

bench: install  ## mask overhead per training step: dense vs MaskManager.apply() vs torch.nn.utils.prune
	$(PY) experiments/bench_masks.py

bench-level: install  ## one IMP level: lottery vs a hand-written loop vs a minimal Lightning module (LeNet-300-100, ResNet-20; ~5 min)
	$(PY) experiments/bench_level.py

bench-study: install  ## a 5-seed LeNet study with OpenLTH's settings in one process: lanes vs one by one vs a hand-written loop, ratios side by side (~4 min)
	$(PY) experiments/bench_study.py

bench-lanes: install  ## K runs as lanes of one network vs one by one: runs/hour, LeNet / Conv-2 / ResNet-20 (~4 min)
	$(PY) experiments/bench_lanes.py

bench-memory: install  ## mask bytes per weight in training (ours vs nn.utils.prune) and ticket size vs torch.save
	$(PY) experiments/bench_memory.py

bench-export: install  ## deployable tickets: file sizes and latency of compact / shrunk / CSR / ONNX vs dense (5-9 min on a busy 2-core CPU)
	$(PY) experiments/bench_export.py

gpu-check: install  ## on a CUDA machine: CUDA tests + every benchmark on the GPU, one summary (< 5 min)
	bash experiments/gpu_check.sh

curves: install  ## run CONFIG=<yaml> with its branches (controls) over SEEDS seeds, then the curves and report.md
	@test -n "$(CONFIG)" || { echo "usage: make curves CONFIG=experiments/configs/<name>.yaml [SEEDS=3] [LEVELS=..]"; exit 2; }
	$(call RUN,$(CONFIG))

bench-bert: install  ## one level of a small BERT: lottery vs a hand-written loop vs HF Trainer, and 4 runs as lanes (needs .[hf] and accelerate)
	$(PY) experiments/bench_bert.py --layers 2 --hidden 64 --length 32 --steps 20

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
	  trainer.accelerator=$(DEVICE) trainer.lanes=$(LANES) $(ARGS) --steps $(STEPS) --levels $(or $(LEVELS),0)

clean:  ## remove the virtual environment and runs/
	rm -rf $(VENV) runs
