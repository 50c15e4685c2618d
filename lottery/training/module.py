"""ClassificationModule: the LightningModule that trains any classifier for one IMP level."""
from __future__ import annotations

from typing import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lottery.core import seeds
from lottery.training.metrics import extra_metrics
from lottery.training.optimizers import Optim, make_optimizer, set_lr

EVAL_STAGES = ("val_", "test_")  # ModuleDict keys may not shadow nn.Module attributes such as `train`


class ScheduledModule(pl.LightningModule):
    """The training step lottery writes out (Lightning's manual optimization): zero_grad, backward, the
    learning rate of this step, optimizer step. Lightning's automatic optimization (closures, scheduler
    stepping) costs a noticeable share of a small model's step (docs/speed.md); the schedule is a pure
    function of the step, so setting it needs no state. Shared by ClassificationModule and LaneModule.

    Args:
        net: the network trained; only its forward is compiled (`compile`), so its parameters stay the
            ones the MaskManager's in-place multiply reaches and state_dict keys keep their names.
        optim: the optimizer and its schedule (milestones in steps).
        start_step: schedule position of the first step (k when rewound to iteration k).
        constant_lr: train at this fixed learning rate (fine-tuning) instead of the schedule.
        seed: the global RNG is reseeded from (seed, epoch) at each epoch start, so that a run
            resumed from an epoch checkpoint draws the same random numbers as an uninterrupted one
            (lottery.core.seeds.epoch).
        gradient_clip: clip the gradient norm to this before each step (trainer.gradient_clip_val; None: off).
            MaskCallback zeroes the pruned weights' gradients first, so the norm is the sparse network's.
    """

    def __init__(self, net: nn.Module, optim: Optim, start_step: int = 0, constant_lr: float | None = None,
                 seed: int = 0, compile: bool = False, gradient_clip: float | None = None):
        super().__init__()
        self.optim, self.start_step, self.constant_lr, self.seed = optim, start_step, constant_lr, seed
        self.gradient_clip = gradient_clip
        # A plain __dict__ entry, not a submodule: the weights are not listed twice.
        self.__dict__["_forward"] = torch.compile(net) if compile else net
        self.automatic_optimization = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    @property
    def schedule_step(self) -> int:
        """Position in the whole training schedule: the rewind step k plus the steps taken in this level."""
        return self.start_step + self.global_step

    # -- the validation history of each run trained (one; K for lanes), kept in checkpoints -------------
    HISTORY_KEY = "lottery_history"  # where a checkpoint keeps `history`

    def run_histories(self) -> list[list[dict]]:
        """One list of {step, val/loss, val/acc} per run this module trains."""
        raise NotImplementedError

    @property
    def validated_step(self) -> int | None:
        """The schedule step of the last validation (None before the first)."""
        first = self.run_histories()[0]
        return first[-1]["step"] if first else None

    def record_validation(self, values: list[dict]) -> None:
        """Add this validation's values (one dict per run) to each run's history at the current schedule step."""
        for history, run_values in zip(self.run_histories(), values):
            entry = {"step": self.schedule_step, **run_values}
            if history and history[-1]["step"] == entry["step"]:
                history[-1] = entry  # the closing validation repeats the last epoch's
            else:
                history.append(entry)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[self.HISTORY_KEY] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.HISTORY_KEY in checkpoint:
            self.history = checkpoint[self.HISTORY_KEY]

    def optimize(self, loss: torch.Tensor):
        """One optimizer step on `loss` at this step's learning rate; returns the optimizer."""
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.constant_lr is None:
            set_lr(optimizer, self.optim, self.schedule_step)
        optimizer.step()
        return optimizer

    def on_before_optimizer_step(self, optimizer) -> None:
        # Here rather than in `optimize`: under fp16 mixed precision Lightning unscales the gradients just before.
        if self.gradient_clip is not None:
            self.clip_gradient_norm(self.gradient_clip)

    def clip_gradient_norm(self, max_norm: float) -> None:
        """Scale the gradients so that their norm is at most `max_norm` (torch.nn.utils.clip_grad_norm_)."""
        torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm)

    def on_train_batch_start(self, batch, batch_idx):
        # Not on_train_epoch_start: Lightning skips that hook for an epoch it restarts from a checkpoint.
        if batch_idx == 0:
            torch.manual_seed(seeds.epoch(self.seed, self.start_step, self.current_epoch))


class ClassificationModule(ScheduledModule):
    """Cross-entropy training of any classifier; loss and accuracy logged per epoch as `train/*`, `val/*`,
    `test/*` (arguments: ScheduledModule's; `metrics`: names in lottery.training.metrics evaluated beside
    accuracy, e.g. ("f1", "mcc") for text)."""

    def __init__(self, model: nn.Module, num_classes: int, optim: Optim, start_step: int = 0,
                 constant_lr: float | None = None, seed: int = 0, compile: bool = False, metrics: Sequence[str] = (),
                 gradient_clip: float | None = None):
        super().__init__(model, optim, start_step, constant_lr, seed, compile, gradient_clip)
        self.model = model
        # Training loss and accuracy as running sums on the device: two in-place adds per step and no
        # host sync, where a torchmetrics update per step costs more Python than the optimizer step itself.
        self.register_buffer("train_loss_sum", torch.zeros(()), persistent=False)
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.train_seen = 0
        self._log_every = 0  # set at on_train_start
        # Evaluation is off the hot path: torchmetrics, with argument checks and NaN scans off.
        self.acc = nn.ModuleDict({s: MulticlassAccuracy(num_classes, average="micro", validate_args=False)
                                  for s in EVAL_STAGES})
        self.loss = nn.ModuleDict({s: MeanMetric(nan_strategy="disable") for s in EVAL_STAGES})
        self.extra = nn.ModuleDict({s: extra_metrics(metrics, num_classes) for s in EVAL_STAGES}) if metrics else None
        self.history: list[dict] = []  # one entry per validation: step, val/loss, val/acc

    def run_histories(self) -> list[list[dict]]:
        return [self.history]

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        optimizer = self.optimize(loss)
        with torch.no_grad():
            self.train_loss_sum.add_(loss, alpha=len(y))
            self.train_correct.add_((logits.argmax(1) == y).sum())
        self.train_seen += len(y)
        if self._log_every and self.global_step % self._log_every == 0:
            self._log_step(optimizer.param_groups[0]["lr"])
        return loss

    def _log_step(self, lr: float) -> None:
        """step/lr and the epoch's running step/train_loss, step/train_acc, straight to the loggers: one host sync."""
        running = torch.stack((self.train_loss_sum, self.train_correct.to(self.train_loss_sum))) / max(self.train_seen, 1)
        loss, acc = running.tolist()
        for logger in self.loggers:
            logger.log_metrics({"step/lr": lr, "step/train_loss": loss, "step/train_acc": acc}, step=self.global_step)

    def on_train_start(self):
        # Per-step logging only with a logger, on the writing process, every log_every_n_steps (Lightning's, 50).
        self._log_every = self.trainer.log_every_n_steps if self.loggers and self.trainer.is_global_zero else 0

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.acc[stage].update(logits, y)
        self.loss[stage].update(F.cross_entropy(logits, y), weight=y.numel())
        if self.extra is not None:
            predicted = logits.argmax(1)
            for metric in self.extra[stage].values():
                metric.update(predicted, y)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val_")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test_")

    def _log(self, stage: str, loss: torch.Tensor, acc: torch.Tensor) -> dict[str, torch.Tensor]:
        # Reduced once per epoch (across processes too), not per step: no host sync in the loop.
        values = {f"{stage}/loss": loss, f"{stage}/acc": acc}
        self.log_dict(values, prog_bar=True, sync_dist=False)
        return values

    def _log_eval(self, stage: str) -> dict[str, torch.Tensor]:
        values = self._log(stage, self.loss[f"{stage}_"].compute(), self.acc[f"{stage}_"].compute())
        self.loss[f"{stage}_"].reset()
        self.acc[f"{stage}_"].reset()
        if self.extra is not None:
            extra = {f"{stage}/{name}": metric.compute() for name, metric in self.extra[f"{stage}_"].items()}
            self.log_dict(extra, sync_dist=False)
            values |= extra
            for metric in self.extra[f"{stage}_"].values():
                metric.reset()
        return values

    def on_train_epoch_end(self):
        totals = torch.stack((self.train_loss_sum, self.train_correct.to(self.train_loss_sum),
                              torch.tensor(float(self.train_seen), device=self.device)))
        loss_sum, correct, seen = self.trainer.strategy.reduce(totals, reduce_op="sum")  # over processes
        self._log("train", loss_sum / seen, correct / seen)
        self.train_loss_sum.zero_()
        self.train_correct.zero_()
        self.train_seen = 0

    def on_validation_epoch_end(self):
        values = self._log_eval("val")
        if self.trainer.sanity_checking:
            return
        self.record_validation([{k: float(v) for k, v in values.items()}])

    def on_test_epoch_end(self):
        self._log_eval("test")

    def configure_optimizers(self):
        return make_optimizer(self.parameters(), self.optim, lr=self.constant_lr)
