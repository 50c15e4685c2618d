"""ClassificationModule: the LightningModule that trains any classifier for one IMP level."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lottery.schedule import OptimConfig, lr_factor, make_optimizer

STAGES = ("train_", "val_", "test_")  # ModuleDict keys may not shadow nn.Module attributes such as `train`


class ClassificationModule(pl.LightningModule):
    """Cross-entropy training with torchmetrics accuracy, logged per epoch as `train/acc`, `val/acc`, `test/acc`.

    Args:
        step_offset: schedule position of the first step (k when rewound to iteration k).
        constant_lr: train at this fixed learning rate (fine-tuning) instead of the schedule.
        seed: the global RNG is reseeded from (seed, epoch) at each epoch start, so that a run
            resumed from an epoch checkpoint draws the same random numbers as an uninterrupted one.
        compile: run the forward through `torch.compile`.
    """

    def __init__(self, model: nn.Module, num_classes: int, optim: OptimConfig, step_offset: int = 0,
                 constant_lr: float | None = None, seed: int = 0, compile: bool = False):
        super().__init__()
        self.model, self.optim, self.step_offset = model, optim, step_offset
        # Only the forward is compiled; parameters stay those of `model`, so the MaskManager's
        # in-place multiply after each step reaches them and state_dict keys keep their names.
        # Kept out of the submodules (plain __dict__ entry) so the weights are not listed twice.
        self.__dict__["_forward"] = torch.compile(model) if compile else model
        self.constant_lr, self.seed = constant_lr, seed
        # Argument checks and NaN scans off: they cost more than the update itself on small models.
        self.acc = nn.ModuleDict({s: MulticlassAccuracy(num_classes, average="micro", validate_args=False) for s in STAGES})
        self.loss = nn.ModuleDict({s: MeanMetric(nan_strategy="disable") for s in STAGES})
        self.history: list[dict] = []  # one entry per validation: step, val/loss, val/acc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.acc[f"{stage}_"].update(logits.detach(), y)
        self.loss[f"{stage}_"].update(loss.detach(), weight=y.numel())
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def _log_epoch(self, stage: str) -> dict[str, torch.Tensor]:
        # Metrics are reduced once per epoch (across processes too), not per step: no host sync in the loop.
        values = {f"{stage}/loss": self.loss[f"{stage}_"].compute(), f"{stage}/acc": self.acc[f"{stage}_"].compute()}
        self.log_dict(values, prog_bar=True, sync_dist=False)
        self.loss[f"{stage}_"].reset()
        self.acc[f"{stage}_"].reset()
        return values

    def on_train_batch_start(self, batch, batch_idx):
        # Not on_train_epoch_start: Lightning skips that hook for an epoch it restarts from a checkpoint.
        if batch_idx == 0:
            torch.manual_seed(self.seed * 1_000_003 + self.step_offset + self.current_epoch)

    def on_train_epoch_end(self):
        self._log_epoch("train")

    def on_validation_epoch_end(self):
        values = self._log_epoch("val")
        if self.trainer.sanity_checking:
            return
        entry = {"step": self.step_offset + self.global_step, **{k: float(v) for k, v in values.items()}}
        if self.history and self.history[-1]["step"] == entry["step"]:
            self.history[-1] = entry  # the closing validation repeats the last epoch's
        else:
            self.history.append(entry)

    def on_test_epoch_end(self):
        self._log_epoch("test")

    def configure_optimizers(self):
        if self.constant_lr is not None:
            return make_optimizer(self.parameters(), self.optim, lr=self.constant_lr)
        optimizer = make_optimizer(self.parameters(), self.optim)
        offset, optim = self.step_offset, self.optim
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step + offset, optim))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lottery_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = checkpoint.get("lottery_history", [])
