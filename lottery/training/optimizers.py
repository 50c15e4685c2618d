"""Optimizers and learning-rate schedules as functions of the training step.

The schedule is a pure function of the step, so a level rewound to step k simply evaluates it
from k onwards (Frankle et al. 2020), and a resumed run needs no extra state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lottery.core.errors import Registry

FUSED_DEVICES = ("cpu", "cuda")  # where torch has fused SGD/Adam/AdamW kernels


@dataclass
class Optim:
    """The optimizer of a training and its learning rate at every step: the config's train.optim section.

    The config gives milestones in steps and epochs (train.milestone_epochs); the trainer reads the copy with
    every milestone in steps (`TrainConfig.resolve`).
    """

    optimizer: str = "adam"  # a name in OPTIMIZERS: sgd | adam | adamw
    lr: float = 1.2e-3  # peak learning rate
    momentum: float = 0.0  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many steps
    schedule: str = "step"  # after warm-up: step (x gamma at each milestone) | linear (decay to 0 at decay_steps, BERT's)
    decay_steps: int | None = None  # linear: the step where lr reaches 0; None: the training length T
    milestone_steps: list[int] = field(default_factory=list)  # steps at which lr *= gamma
    gamma: float = 0.1  # step-decay factor
    finetune_lr: float | None = None  # constant lr of the `finetune` rewind policy; None: the schedule's final lr

    def lr_at(self, step: int) -> float:
        """The learning rate of schedule step `step` (warm-up times step or linear decay)."""
        return self.lr * lr_factor(step, self)

    @property
    def final_lr(self) -> float:
        """The learning rate at the end of the schedule (linear: of its last step, before it reaches 0)."""
        if self.schedule == "linear":
            return self.lr_at(max(self.decay_steps or 1, 1) - 1)
        return self.lr * self.gamma ** len(self.milestone_steps)

    @property
    def finetuning_lr(self) -> float:
        """The constant learning rate of fine-tuning: `finetune_lr`, else the schedule's final one (Renda et al. 2020)."""
        return self.finetune_lr if self.finetune_lr is not None else self.final_lr


def set_lr(optimizer: torch.optim.Optimizer, optim: Optim, step: int) -> None:
    """Write the learning rate of schedule step `step` into every parameter group: one dict write each,
    and no scheduler state, so a resumed run simply continues from its step."""
    lr = optim.lr_at(step)
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_factor(step: int, optim: Optim) -> float:
    """Multiplier of optim.lr at schedule step `step`: warm-up, then step decay, or linear decay to 0 at
    `decay_steps` (the schedule of BERT fine-tuning, Devlin et al. 2019; `get_linear_schedule_with_warmup`)."""
    warm = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
    if optim.schedule == "linear":
        if step < optim.warmup_steps:
            return warm
        end = optim.decay_steps if optim.decay_steps is not None else step + 1
        return max(0.0, (end - step) / max(1, end - optim.warmup_steps))
    return warm * optim.gamma ** sum(step >= m for m in optim.milestone_steps)


SCHEDULES = ("step", "linear")  # train.optim.schedule


OPTIMIZERS: Registry = Registry("optimizer", {
    "sgd": lambda params, o, lr, fused: torch.optim.SGD(params, lr=lr, momentum=o.momentum, nesterov=o.nesterov,
                                                       weight_decay=o.weight_decay, fused=fused),
    "adam": lambda params, o, lr, fused: torch.optim.Adam(params, lr=lr, weight_decay=o.weight_decay, fused=fused),
    "adamw": lambda params, o, lr, fused: torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay, fused=fused),
})


def make_optimizer(params, optim: Optim, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer `optim` names, with torch's fused kernels where the parameters' device has them.

    A fused step is one kernel over all tensors instead of a Python loop over them (docs/speed.md
    has the measurements); the update is the same up to floating-point rounding.
    """
    params = list(params)
    fused = bool(params) and all(p.device.type in FUSED_DEVICES and p.dtype.is_floating_point for p in params)
    return OPTIMIZERS.lookup(optim.optimizer)(params, optim, optim.lr if lr is None else lr, fused)
