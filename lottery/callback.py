"""MaskCallback: keeps any LightningModule's pruned weights at zero, and its masks in checkpoints."""
from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl

from lottery.masks import MaskManager


class MaskCallback(pl.Callback):
    """Attach a MaskManager to an existing LightningModule without changing the module.

    Args:
        masks: a MaskManager over (a submodule of) the LightningModule, or a function
            `pl_module -> MaskManager` called at setup, e.g. ``lambda m: MaskManager(m.net)``.
            Default: a MaskManager over the whole LightningModule.

    The masks are applied after every optimizer step (so every checkpoint holds masked
    weights) and before validation and testing; they are saved in Lightning checkpoints and restored on `ckpt_path=` resume.
    """

    def __init__(self, masks: MaskManager | Callable[[pl.LightningModule], MaskManager] | None = None):
        self._factory = masks if callable(masks) and not isinstance(masks, MaskManager) else None
        self.masks: MaskManager | None = masks if isinstance(masks, MaskManager) else None
        self._pending: dict | None = None  # state restored from a checkpoint before setup ran

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.masks is None:
            self.masks = self._factory(pl_module) if self._factory else MaskManager(pl_module)
        if self._pending is not None:
            self.masks.load_state_dict(self._pending)
            self._pending = None
        self.masks.apply()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.masks.apply()  # right after optimizer.step(): one fused kernel, no host sync

    def on_validation_start(self, trainer, pl_module) -> None:
        self.masks.apply()

    def on_test_start(self, trainer, pl_module) -> None:
        self.masks.apply()

    def state_dict(self) -> dict:
        return self.masks.state_dict() if self.masks is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self.masks is None:
            self._pending = state_dict
        else:
            self.masks.load_state_dict(state_dict)
