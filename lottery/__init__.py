"""lottery: find, control and export lottery tickets (sparse trainable subnetworks) by iterative
magnitude pruning with rewinding, on PyTorch and PyTorch Lightning.

The core (MaskManager, pruning strategies, rewinding, tickets) needs only torch (and safetensors
for files); the Lightning parts are imported on first use. Deployable exports (compact, shrunk,
ONNX, sparse kernels) are in `lottery.export`.
"""
from lottery.errors import LotteryError
from lottery.lane_count import choose_lanes, step_macs
from lottery.lanes import LaneNet, lane_loss, stack_masks, unstack_masks
from lottery.masks import MaskManager, default_prunable
from lottery.pruning import STRATEGIES, get_strategy
from lottery.rewind import RewindPoint, capture, restore
from lottery.ticket import Ticket, load_into, load_ticket, save_ticket

__version__ = "0.1.0"

__all__ = [
    "LotteryError", "MaskManager", "default_prunable", "STRATEGIES", "get_strategy",
    "RewindPoint", "capture", "restore", "Ticket", "load_ticket", "save_ticket", "load_into",
    "MaskCallback", "ClassificationModule", "create_model", "create_datamodule", "__version__",
    "LaneNet", "stack_masks", "unstack_masks", "lane_loss", "choose_lanes", "step_macs", "LaneModule", "LaneDataModule",
]

_LAZY = {"MaskCallback": "lottery.callback", "ClassificationModule": "lottery.module",
         "create_model": "lottery.models", "create_datamodule": "lottery.data",
         "LaneModule": "lottery.lane_module", "LaneDataModule": "lottery.lane_module"}


def __getattr__(name: str):
    # Lightning and torchvision load only when these are asked for: the core stays torch-only.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lottery' has no attribute {name!r}")
