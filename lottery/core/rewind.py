"""Rewinding: what a level starts from after pruning (Frankle et al. 2020; Renda et al. 2020).

A rewind point is a copy of the model's state at training step k (k = 0: initialisation).
A policy decides the weights, the schedule position and the length of each retraining:

    init      weights of step 0, full schedule                     (Frankle & Carbin 2019)
    step      weights of step k, schedule and step counter from k  (Frankle et al. 2020, "late rewinding")
    lr        keep the trained weights, replay the schedule from k (Renda et al. 2020)
    finetune  keep the trained weights, constant small learning rate for T - k steps (Han et al. 2015)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lottery.core.errors import LotteryError, Registry


@dataclass(frozen=True)
class RewindPoint:
    """The model's state (parameters and buffers, on the CPU) at training step `step`."""

    step: int
    state: dict[str, torch.Tensor]


def capture(model: nn.Module, step: int) -> RewindPoint:
    """Copy the model's current state to the CPU."""
    return RewindPoint(step, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})


def restore(model: nn.Module, point: RewindPoint, masks=None) -> None:
    """Load the rewind point into `model` in place, then zero the pruned weights."""
    missing, unexpected = model.load_state_dict(point.state, strict=False)
    if missing or unexpected:
        raise LotteryError(f"the rewind point does not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    if masks is not None:
        masks.apply()


REWIND, TRAINED = "rewind", "trained"  # what a training starts from: the rewind point, or trained weights


@dataclass(frozen=True)
class TrainingPlan:
    """How one training starts and runs: its weights, its place in the schedule, its length."""

    weights: str  # REWIND: the rewind point's weights (k = 0: the initial ones); TRAINED: the weights it is given
    start_step: int  # schedule position (and step counter) of the first step
    steps: int  # optimizer steps to train
    constant_lr: float | None = None  # fine-tuning: this learning rate throughout instead of the schedule

    @classmethod
    def from_start(cls, total_steps: int) -> "TrainingPlan":
        """The whole schedule from step 0: the dense level, and trainings from initial weights."""
        return cls(weights=REWIND, start_step=0, steps=total_steps)


# The policies of rewinding after pruning, with the plan each makes (rewind iteration k, training length T).
POLICIES: Registry = Registry("rewind policy", summaries={
    "init": "rewind to the initial weights, k = 0 (Frankle & Carbin 2019)",
    "step": "rewind weights and schedule to iteration k (Frankle et al. 2020)",
    "lr": "keep the trained weights, replay the schedule from k (learning-rate rewinding, Renda et al. 2020)",
    "finetune": "keep the trained weights, train at the final learning rate (fine-tuning)"}, entries={
    "init": lambda k, total, lr: TrainingPlan(weights=REWIND, start_step=0, steps=total),  # Frankle & Carbin 2019
    "step": lambda k, total, lr: TrainingPlan(weights=REWIND, start_step=k, steps=total - k),  # Frankle et al. 2020
    "lr": lambda k, total, lr: TrainingPlan(weights=TRAINED, start_step=k, steps=total - k),  # Renda et al. 2020
    "finetune": lambda k, total, lr: TrainingPlan(weights=TRAINED, start_step=k, steps=total - k, constant_lr=lr),
})


def plan(policy: str, rewind_step: int, total_steps: int, finetune_lr: float | None = None) -> TrainingPlan:
    """The retraining plan of a pruned level under `policy`; level 0 always trains 0..total_steps.

    finetune_lr: the constant learning rate of `finetune` (required by that policy only).
    """
    check_policy(policy, rewind_step, total_steps)
    if policy == "finetune" and finetune_lr is None:
        raise LotteryError("rewind policy 'finetune' needs finetune_lr, the constant learning rate it trains with")
    return POLICIES[policy](rewind_step, total_steps, finetune_lr)


def check_policy(policy: str, rewind_step: int, total_steps: int) -> None:
    POLICIES.check(policy)
    if policy == "init" and rewind_step != 0:
        raise LotteryError(f"rewind policy 'init' rewinds to step 0 but rewind.step={rewind_step}; "
                           "use policy 'step' to rewind to iteration k")
    if not 0 <= rewind_step < total_steps:
        raise LotteryError(f"rewind.step={rewind_step} must be in [0, {total_steps}) (the training length in steps)")


@dataclass(frozen=True)
class Rewinding:
    """An experiment's rewinding: its policy, the rewind iteration k, the training length T and the fine-tuning
    rate; the plan of every training follows from it (checked when it is made)."""

    policy: str
    rewind_step: int  # k
    total_steps: int  # T
    finetune_lr: float

    def __post_init__(self):
        plan(self.policy, self.rewind_step, self.total_steps, self.finetune_lr)

    @property
    def level_plan(self) -> TrainingPlan:
        """How a pruned level retrains, under the experiment's policy."""
        return plan(self.policy, self.rewind_step, self.total_steps, self.finetune_lr)

    @property
    def dense_plan(self) -> TrainingPlan:
        """The whole schedule from step 0: the dense level, and trainings from initial weights."""
        return TrainingPlan.from_start(self.total_steps)

    @property
    def branch_plan(self) -> TrainingPlan:
        """Branches from rewind-point or fresh weights train as a level does when it rewinds, else from step 0."""
        return self.level_plan if self.level_plan.weights == REWIND else self.dense_plan

    def plan_of(self, policy: str) -> TrainingPlan:
        """The plan of a training that rewinds by `policy` instead (e.g. the lr_rewind and finetune branches)."""
        return plan(policy, self.rewind_step, self.total_steps, self.finetune_lr)
