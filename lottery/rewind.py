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

from lottery.errors import LotteryError

POLICIES = ("init", "step", "lr", "finetune")


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


@dataclass(frozen=True)
class LevelPlan:
    """How one level after pruning is trained."""

    from_rewind_point: bool  # True: start from the rewind point; False: keep the trained weights
    step_offset: int  # schedule position (and step counter) the retraining starts from
    steps: int  # optimizer steps to train
    constant_lr: bool  # fine-tuning: no schedule, a small constant learning rate


def plan(policy: str, rewind_step: int, total_steps: int) -> LevelPlan:
    """The retraining plan of a pruned level under `policy`; level 0 always trains 0..total_steps."""
    check_policy(policy, rewind_step, total_steps)
    remaining = total_steps - rewind_step
    return {
        "init": LevelPlan(True, 0, total_steps, False),
        "step": LevelPlan(True, rewind_step, remaining, False),
        "lr": LevelPlan(False, rewind_step, remaining, False),
        "finetune": LevelPlan(False, rewind_step, remaining, True),
    }[policy]


def check_policy(policy: str, rewind_step: int, total_steps: int) -> None:
    if policy not in POLICIES:
        raise LotteryError(f"unknown rewind policy {policy!r}; choose one of: {', '.join(POLICIES)}")
    if policy == "init" and rewind_step != 0:
        raise LotteryError(f"rewind policy 'init' rewinds to step 0 but rewind.step={rewind_step}; "
                           "use policy 'step' to rewind to iteration k")
    if not 0 <= rewind_step < total_steps:
        raise LotteryError(f"rewind.step={rewind_step} must be in [0, {total_steps}) (the training length in steps)")
