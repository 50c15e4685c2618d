"""lottery: find, control and export lottery tickets (sparse trainable subnetworks) by iterative
magnitude pruning with rewinding, on PyTorch and PyTorch Lightning.

The packages are the layers, each importing only those below it (tests/test_layering.py):

    core/       torch only: masks, method records and pruning strategies, rewinding, tickets, the configuration
                schema, files, run-folder layout, seeds
    lanes/      torch only: K runs of one architecture as one batched network
    sparsity/   torch only: sparse networks found other than by IMP: pruning at initialisation, sparse training
                (mask updaters), early-bird detection, Wanda; sparsity distributions
    models/ data/   registered architectures and datasets
    structured/ structured tickets: whole channels, neurons and heads (Torch-Pruning's dependency graph, an extra)
    export/     deployable tickets: compact, shrunk, ONNX, sparse kernels
    training/   the Lightning layer: the one Trainer, a run spec in, a training's files out (alone or as lanes)
    imp/        the algorithm: one seed's levels (train, prune, rewind, repeat), the branches off a level
    report/     curves, the matching rule, plots and report.md of a run folder
    cli/        the `lottery` command: configs, the plan of a run, experiment folders, stability, sweeps

The names below are the public API; the Lightning parts load on first use, so `import lottery` stays torch-only.
A pruning method is a record (Strategy, Branch, SparseTraining, OneShot): `register` adds one, and so does an
installed package through the `lottery.methods` entry points (docs/development.md).
"""
from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager, default_prunable
from lottery.core.methods import METHODS, Branch, Method, OneShot, SparseTraining, Strategy, Training, register
from lottery.core.pruning import STRATEGIES, get_strategy
from lottery.core.rewind import RewindPoint, capture, restore
from lottery.core.ticket import Ticket, load_into, load_ticket, save_ticket
from lottery.structured import criteria as _structured  # noqa: F401  (registers the structured strategies)

__version__ = "0.1.0"

__all__ = [
    "LotteryError", "MaskManager", "default_prunable", "STRATEGIES", "get_strategy",
    "METHODS", "Method", "Strategy", "Branch", "SparseTraining", "OneShot", "register", "Training",
    "RewindPoint", "capture", "restore", "Ticket", "load_ticket", "save_ticket", "load_into",
    "MaskCallback", "ClassificationModule", "create_model", "create_datamodule", "__version__",
]

_LAZY = {"MaskCallback": "lottery.training.callbacks", "ClassificationModule": "lottery.training.module",
         "create_model": "lottery.models", "create_datamodule": "lottery.data"}


def __getattr__(name: str):
    # Lightning and torchvision load only when these are asked for: the core stays torch-only.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lottery' has no attribute {name!r}")
