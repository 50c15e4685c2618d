"""ClassificationModule: the LightningModule that trains any classifier, one run alone or K runs as lanes of one
network (a LaneNet, lottery.lanes), with one training step, one evaluation and one way of logging for both.

A run alone is `ClassificationModule(model, ...)`; K runs are `ClassificationModule(LaneNet.from_models(models), ...)`
with their data from lottery.training.lane_data (each training batch [K, B, ...], lane k in its own data order):

    module = ClassificationModule(net, num_classes, optim)
    trainer = pl.Trainer(max_steps=steps, callbacks=[MaskCallback(masks)], use_distributed_sampler=False)
    trainer.fit(module, datamodule=LaneDataModule(data, seeds=[0, 1, 2, 3]))
    module.histories[k], net.lane_state_dict(k)    # run k's validation history and trained weights

Lane k sees the batches run k sees alone, keeps its own masks, optimizer state, BatchNorm statistics and metrics,
and ends with the weights run k reaches alone (up to float rounding of the batched kernels; the optimizer's step is
each lane's bit for bit, lottery.lanes.optimizer).
"""
from __future__ import annotations

from typing import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lottery.core import seeds
from lottery.core.schema import OptimConfig
from lottery.lanes.net import LaneNet, clip_lane_grad_norm_, lane_loss
from lottery.training.metrics import extra_metrics
from lottery.training.optimizers import make_optimizer, set_lr

STAGES = ("train", "val", "test")


class ClassificationModule(pl.LightningModule):
    """Cross-entropy training of any classifier (or of K lanes of one), written out by hand (Lightning's manual
    optimization): zero_grad, backward, the learning rate of this step, optimizer step. Lightning's automatic
    optimization (closures, scheduler stepping) costs a noticeable share of a small model's step (docs/speed.md);
    the schedule is a pure function of the step, so setting it needs no state.

    Loss and accuracy are running sums on the device per run (no host sync in the loop), reduced once per epoch and
    logged as `train/*`, `val/*`, `test/*`; with lanes, their mean as `val/acc`, each lane's own values going to
    its own logger (`lane_loggers`). `histories[k]` is run k's list of
    {step, val/loss, val/acc} (`history`: the first run's), kept in checkpoints.

    Args:
        model: the network trained, a model or a LaneNet; only its forward is compiled (`compile`), so its
            parameters stay the ones the MaskManager's in-place multiply reaches and state_dict keys keep their names.
        optim: the optimizer and its schedule (milestones in steps).
        start_step: schedule position of the first step (k when rewound to iteration k).
        constant_lr: train at this fixed learning rate (fine-tuning) instead of the schedule.
        seed: the global RNG is reseeded from (seed, epoch) at each epoch start, so that a run resumed from an epoch
            checkpoint draws the same random numbers as an uninterrupted one (lottery.core.seeds.epoch); lanes share
            it, so models that draw from it while training (dropout) differ from runs alone.
        metrics: names in lottery.training.metrics evaluated beside accuracy, e.g. ("f1", "mcc") for text.
        gradient_clip: clip each run's gradient norm to this before each step (trainer.gradient_clip_val; None: off).
            MaskCallback zeroes the pruned weights' gradients first, so the norm is the sparse network's.
        penalty: a lottery.core.methods.Penalty, weight x sum |p| over its parameters added to the loss that is minimised
            (not to the logged train/loss); with lanes each lane's parameters get their own gradient of it.

    `extra_before` (set by lottery.training.trainer.fit_and_test from a mask updater that takes iterations of its own,
    RigL with methods.rigl.update_step=extra): iteration -> the extra iterations before it, which take no step of the
    schedule (`step_of`).
    """

    HISTORY_KEY = "lottery_histories"  # where a checkpoint keeps `histories`

    def __init__(self, model: nn.Module, num_classes: int, optim: OptimConfig, start_step: int = 0,
                 constant_lr: float | None = None, seed: int = 0, compile: bool = False, metrics: Sequence[str] = (),
                 gradient_clip: float | None = None, penalty=None):
        super().__init__()
        self.penalty = penalty
        self.model, self.num_classes, self.optim = model, num_classes, optim
        self.start_step, self.constant_lr, self.seed, self.gradient_clip = start_step, constant_lr, seed, gradient_clip
        self.lanes = model.lanes if isinstance(model, LaneNet) else None  # None: a run alone
        runs = self.lanes or 1
        # A plain __dict__ entry, not a submodule: the weights are not listed twice.
        self.__dict__["_forward"] = torch.compile(model) if compile else model
        self.automatic_optimization = False
        for stage in STAGES:  # per-run running sums on the device; reduced to the host once per epoch
            self.register_buffer(f"{stage}_loss_sum", torch.zeros(runs), persistent=False)
            self.register_buffer(f"{stage}_correct", torch.zeros(runs), persistent=False)
        self.seen = dict.fromkeys(STAGES, 0)
        # Metrics beside accuracy, one set per run and evaluation stage (off the hot path: torchmetrics).
        self.extra = nn.ModuleDict({s: nn.ModuleList(extra_metrics(metrics, num_classes) for _ in range(runs))
                                    for s in STAGES[1:]}) if metrics else None
        self.histories: list[list[dict]] = [[] for _ in range(runs)]
        self.results: dict[str, list[dict]] = {}  # stage -> per-run {stage/loss, stage/acc, ...} of the last epoch
        self.lane_loggers: list = []  # with lanes: one Lightning logger per lane, which gets lane k's epoch values
        self._log_every = 0  # set at on_train_start
        self.extra_before = None  # iteration -> extra iterations before it (a mask updater's); None: there are none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    @property
    def history(self) -> list[dict]:
        """The (first) run's validation history: one {step, val/loss, val/acc} per validation."""
        return self.histories[0]

    @property
    def schedule_step(self) -> int:
        """Position in the whole training schedule: the rewind step k plus the steps taken in this level."""
        return self.step_of(self.global_step)

    def step_of(self, iteration: int) -> int:
        """The schedule step of iteration `iteration` of this training (0: its first): the rewind step k plus the
        iterations before it, less the extra ones a mask updater took (its mask updates, which are no step)."""
        raw = self.start_step + iteration
        return raw - self.extra_before(raw) if self.extra_before is not None else raw

    @property
    def validated_step(self) -> int | None:
        """The schedule step of the last validation (None before the first)."""
        return self.history[-1]["step"] if self.history else None

    # -- a step ----------------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the loss to minimise, each run's mean loss [K], logits [K, B, C], targets [K, B]) of a batch."""
        if self.lanes is None:
            loss = F.cross_entropy(logits, y)
            return loss, loss.detach()[None], logits[None], y[None]
        loss, per_lane = lane_loss(logits, y)  # the sum of the lanes' mean losses: each lane's gradient its own
        return loss, per_lane, logits, y

    def training_step(self, batch, batch_idx):
        x, y = batch  # lanes: [K, B, ...], [K, B]
        loss, per_run, logits, y = self._loss(self(x), y)
        if self.penalty is not None:
            loss = loss + self.penalty_term()
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.constant_lr is None:
            set_lr(optimizer, self.optim, self.schedule_step)
        optimizer.step()
        self._accumulate("train", logits.detach(), y, per_run)
        if self._log_every and self.global_step % self._log_every == 0:
            self._log_step(optimizer.param_groups[0]["lr"])
        return loss

    def penalty_term(self) -> torch.Tensor:
        """weight x sum |p| over the penalty's parameters (every lane's: each gets its own gradient, weight x sign p)."""
        params = [self.model.get_parameter(n) for n in self.penalty.names]
        return self.penalty.weight * torch.stack(torch._foreach_norm(params, 1)).sum()

    def on_before_optimizer_step(self, optimizer) -> None:
        # Here rather than in the step: under fp16 mixed precision Lightning unscales the gradients just before.
        if self.gradient_clip is not None:
            if self.lanes is None:
                torch.nn.utils.clip_grad_norm_(self.parameters(), self.gradient_clip)
            else:  # each lane's gradient norm clipped on its own, as its run alone clips it
                clip_lane_grad_norm_(list(self.model.parameters()), self.gradient_clip, self.lanes)

    def on_train_batch_start(self, batch, batch_idx):
        # Not on_train_epoch_start: Lightning skips that hook for an epoch it restarts from a checkpoint.
        if batch_idx == 0:
            seed = seeds.epoch(self.seed, self.start_step, self.current_epoch)
            # The generators this training draws from: torch.manual_seed also seeds CUDA's (on a CUDA build without a
            # GPU, a lazy call that records its traceback: ~0.4 ms an epoch on the CPU, docs/speed.md).
            torch.default_generator.manual_seed(seed)
            if self.device.type == "cuda":
                torch.cuda.manual_seed_all(seed)

    def _accumulate(self, stage: str, logits: torch.Tensor, y: torch.Tensor, per_run_loss: torch.Tensor) -> None:
        with torch.no_grad():
            batch = y.shape[1]
            getattr(self, f"{stage}_loss_sum").add_(per_run_loss * batch)
            getattr(self, f"{stage}_correct").add_((logits.argmax(-1) == y).sum(1))
        self.seen[stage] += batch

    # -- evaluation ------------------------------------------------------------------------------------
    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch  # shared by the lanes
        if self.lanes is not None:
            x = x.expand(self.lanes, *x.shape)
        _, per_run, logits, ys = self._loss(self(x), y if self.lanes is None else y.expand(self.lanes, *y.shape))
        self._accumulate(stage, logits, ys, per_run)
        if self.extra is not None:
            predicted = logits.argmax(-1)
            for k, run in enumerate(self.extra[stage]):
                for metric in run.values():
                    metric.update(predicted[k], y)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _epoch_end(self, stage: str) -> list[dict]:
        """Each run's mean loss and accuracy of the epoch (and its extra metrics), logged; the sums reset."""
        loss_sum, correct = getattr(self, f"{stage}_loss_sum"), getattr(self, f"{stage}_correct")
        sums = torch.cat((loss_sum, correct, loss_sum.new_tensor([self.seen[stage]])))
        if self.trainer.world_size > 1:  # every process saw its share of the examples
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        runs = len(loss_sum)
        means = (sums[:-1] / sums[-1].clamp(min=1)).tolist()  # one host sync per epoch
        loss_sum.zero_(), correct.zero_()
        self.seen[stage] = 0
        results = [{f"{stage}/loss": means[k], f"{stage}/acc": means[runs + k]} for k in range(runs)]
        if self.extra is not None and stage in self.extra:
            for k, run in enumerate(self.extra[stage]):
                results[k] |= {f"{stage}/{name}": float(metric.compute()) for name, metric in run.items()}
                for metric in run.values():
                    metric.reset()
        self._log_epoch(stage, results)
        self.results[stage] = results
        return results

    # -- logging ---------------------------------------------------------------------------------------
    def _log_epoch(self, stage: str, results: list[dict]) -> None:
        """A run alone: its values to the Trainer's loggers. Lanes: per lane and their mean to the Trainer, and each
        lane's own values to its own logger."""
        if self.lanes is None:
            self.log_dict(results[0], prog_bar=True, sync_dist=False)
            return
        # Only the means through the Trainer (each value logged costs a share of a small model's step); each lane's
        # own values go to its logger and to `results` and `histories`.
        self.log_dict({key: sum(r[key] for r in results) / len(results) for key in results[0]}, sync_dist=False)
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            for logger, r in zip(self.lane_loggers, results):
                logger.log_metrics({f"{stage}/loss": r[f"{stage}/loss"], f"{stage}/acc": r[f"{stage}/acc"]},
                                   step=self.global_step)

    def _run_loggers(self) -> list[tuple[int, object]]:
        """(run, logger) pairs for the per-step values: a run alone's go to every Trainer logger, lane k's to its own."""
        return [(0, logger) for logger in self.loggers] if self.lanes is None else list(enumerate(self.lane_loggers))

    def on_train_start(self):
        # Per-step values only with loggers, on the writing process, every log_every_n_steps (Lightning's, 50).
        self._log_every = self.trainer.log_every_n_steps if self._run_loggers() and self.trainer.is_global_zero else 0

    def _log_step(self, lr: float) -> None:
        """Each run's step/lr and the epoch's running step/train_loss, step/train_acc: one host sync."""
        running = (torch.cat((self.train_loss_sum, self.train_correct)) / max(self.seen["train"], 1)).tolist()
        runs = len(self.train_loss_sum)
        for k, logger in self._run_loggers():
            logger.log_metrics({"step/lr": lr, "step/train_loss": running[k], "step/train_acc": running[runs + k]},
                               step=self.global_step)

    # -- the epoch's ends ------------------------------------------------------------------------------
    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_validation_epoch_end(self):
        results = self._epoch_end("val")
        if self.trainer.sanity_checking:
            return
        for history, values in zip(self.histories, results):
            entry = {"step": self.schedule_step, **values}
            if history and history[-1]["step"] == entry["step"]:
                history[-1] = entry  # the closing validation repeats the last epoch's
            else:
                history.append(entry)

    def on_test_epoch_end(self):
        self._epoch_end("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[self.HISTORY_KEY] = self.histories

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.HISTORY_KEY in checkpoint:
            self.histories = checkpoint[self.HISTORY_KEY]

    def configure_optimizers(self):
        # Lanes: each lane the optimizer of its run alone, with its own state and steps (lottery.lanes.optimizer).
        return make_optimizer(self.model.parameters(), self.optim, lr=self.constant_lr, lanes=self.lanes)
