"""LaneModule: K runs of one architecture trained as lanes in one `Trainer.fit` (their data: lottery.training.lane_data).

Lane k sees the batches run k sees alone (the data order of seed k), keeps its own masks, optimizer state,
BatchNorm statistics and metrics, and ends with the weights run k reaches alone (up to float rounding of
the batched kernels). What the lanes share is what the runs share anyway: the architecture, batch size,
number of steps and learning-rate schedule.

    net = LaneNet.from_models(models)
    masks = MaskManager(net); masks.set_masks(stack_masks([m.masks for m in per_run_masks]))
    module = LaneModule(net, num_classes, optim)
    trainer = pl.Trainer(max_steps=steps, callbacks=[MaskCallback(masks)], use_distributed_sampler=False)
    trainer.fit(module, datamodule=LaneDataModule(data, seeds=[0, 1, 2, 3]))
    module.history[k], net.lane_state_dict(k)    # run k's validation history and trained weights
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lottery.lanes.net import LaneNet, clip_lane_grad_norm_, lane_loss
from lottery.training.metrics import extra_metrics
from lottery.training.module import ScheduledModule
from lottery.training.optimizers import Optim, make_optimizer

EVAL_STAGES = ("val", "test")


class LaneModule(ScheduledModule):
    """ClassificationModule's training for K lanes: the same hand-written step, loss summed over lanes.

    Logs per lane `val/acc/lane_k`, `val/loss/lane_k` (and `test/...`, `train/...`) and the mean over lanes
    as `val/acc`; `history[k]` is lane k's list of {step, val/loss, val/acc}, as ClassificationModule.history.

    Args:
        seed: the global RNG is reseeded from (seed, epoch) at each epoch start, as ClassificationModule does;
            it is shared by the lanes, so models that draw from it while training (dropout) differ from solo runs.
    """

    HISTORY_KEY = "lottery_lane_history"

    def __init__(self, net: LaneNet, num_classes: int, optim: Optim, start_step: int = 0,
                 constant_lr: float | None = None, seed: int = 0, compile: bool = False, metrics: Sequence[str] = (),
                 gradient_clip: float | None = None):
        super().__init__(net, optim, start_step, constant_lr, seed, compile, gradient_clip)
        self.net, self.num_classes = net, num_classes
        lanes = net.lanes
        # Per-lane running sums on the device; reduced to the host once per epoch.
        for stage in ("train", *EVAL_STAGES):
            self.register_buffer(f"{stage}_loss_sum", torch.zeros(lanes), persistent=False)
            self.register_buffer(f"{stage}_correct", torch.zeros(lanes), persistent=False)
        self.seen = dict.fromkeys(("train", *EVAL_STAGES), 0)
        # Metrics beside accuracy (lottery.training.metrics), one set per lane and stage: evaluation only.
        self.extra = nn.ModuleDict({s: nn.ModuleList(extra_metrics(metrics, num_classes) for _ in range(lanes))
                                    for s in EVAL_STAGES}) if metrics else None
        self.history: list[list[dict]] = [[] for _ in range(lanes)]
        self.results: dict[str, list[dict]] = {}  # stage -> per-lane {stage/loss, stage/acc} of the last epoch
        self.lane_loggers: list = []  # one Lightning logger per lane (optional): lane k's epoch values, as a run alone logs them
        self._log_every = 0  # set at on_train_start

    @property
    def lanes(self) -> int:
        return self.net.lanes

    def run_histories(self) -> list[list[dict]]:
        return self.history

    def training_step(self, batch, batch_idx):
        x, y = batch  # [K, B, ...], [K, B]
        logits = self(x)
        loss, per_lane = lane_loss(logits, y)
        optimizer = self.optimize(loss)
        self._accumulate("train", logits.detach(), y, per_lane)
        if self._log_every and self.global_step % self._log_every == 0:
            self._log_step(optimizer.param_groups[0]["lr"])
        return loss

    def clip_gradient_norm(self, max_norm: float) -> None:
        """Each lane's gradient norm clipped on its own, as its run alone clips it."""
        clip_lane_grad_norm_(list(self.net.parameters()), max_norm, self.lanes)

    def on_train_start(self):
        # As ClassificationModule: per-step values only with loggers, on the writing process, every log_every_n_steps.
        self._log_every = self.trainer.log_every_n_steps if self.lane_loggers and self.trainer.is_global_zero else 0

    def _log_step(self, lr: float) -> None:
        """Each lane's step/lr and running step/train_loss, step/train_acc (as ClassificationModule logs them): one host sync."""
        running = (torch.cat((self.train_loss_sum, self.train_correct)) / max(self.seen["train"], 1)).tolist()
        for k, logger in enumerate(self.lane_loggers):
            logger.log_metrics({"step/lr": lr, "step/train_loss": running[k], "step/train_acc": running[self.lanes + k]},
                               step=self.global_step)

    def _accumulate(self, stage: str, logits: torch.Tensor, y: torch.Tensor, per_lane_loss: torch.Tensor) -> None:
        with torch.no_grad():
            batch = y.shape[1]
            getattr(self, f"{stage}_loss_sum").add_(per_lane_loss, alpha=batch)
            getattr(self, f"{stage}_correct").add_((logits.argmax(-1) == y).sum(1))
        self.seen[stage] += batch

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch  # shared by the lanes
        xs, ys = x.expand(self.lanes, *x.shape), y.expand(self.lanes, *y.shape)
        logits = self(xs)
        _, per_lane = lane_loss(logits, ys)
        self._accumulate(stage, logits, ys, per_lane)
        if self.extra is not None:
            predicted = logits.argmax(-1)
            for k, lane in enumerate(self.extra[stage]):
                for metric in lane.values():
                    metric.update(predicted[k], y)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _epoch_end(self, stage: str) -> list[dict]:
        loss_sum, correct = getattr(self, f"{stage}_loss_sum"), getattr(self, f"{stage}_correct")
        sums = torch.cat((loss_sum, correct, loss_sum.new_tensor([self.seen[stage]])))
        if self.trainer.world_size > 1:  # every process saw its share of the examples
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        means = (sums[:-1] / sums[-1].clamp(min=1)).tolist()  # one host sync per epoch
        loss, acc = means[:self.lanes], means[self.lanes:]
        loss_sum.zero_(), correct.zero_()
        self.seen[stage] = 0
        values = {f"{stage}/loss/lane_{k}": loss[k] for k in range(self.lanes)}
        values |= {f"{stage}/acc/lane_{k}": acc[k] for k in range(self.lanes)}
        values |= {f"{stage}/loss": sum(loss) / self.lanes, f"{stage}/acc": sum(acc) / self.lanes}
        self.log_dict(values, sync_dist=False)
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            for k, logger in enumerate(self.lane_loggers):
                logger.log_metrics({f"{stage}/loss": loss[k], f"{stage}/acc": acc[k]}, step=self.global_step)
        self.results[stage] = [{f"{stage}/loss": loss[k], f"{stage}/acc": acc[k]} for k in range(self.lanes)]
        if self.extra is not None and stage in self.extra:
            for k, lane in enumerate(self.extra[stage]):
                self.results[stage][k] |= {f"{stage}/{name}": float(metric.compute()) for name, metric in lane.items()}
                for metric in lane.values():
                    metric.reset()
        return self.results[stage]

    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_validation_epoch_end(self):
        lanes = self._epoch_end("val")
        if self.trainer.sanity_checking:
            return
        self.record_validation(lanes)

    def on_test_epoch_end(self):
        self._epoch_end("test")

    def configure_optimizers(self):
        # Adam, AdamW and SGD (momentum, weight decay) act elementwise: one optimizer over the stacked
        # parameters is K optimizers over the lanes' own parameters (tests/test_lanes.py checks it).
        return make_optimizer(self.net.parameters(), self.optim, lr=self.constant_lr)
