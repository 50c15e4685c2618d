"""Optimizers, and the learning rate of every step set by hand (the train.optim section: lottery.core.schema).

The schedule is a pure function of the step (`OptimConfig.lr_at`), so a level rewound to step k simply evaluates
it from k onwards (Frankle et al. 2020), and a resumed run needs no extra state.
"""
from __future__ import annotations

import torch

from lottery.core.errors import Registry
from lottery.core.schema import OptimConfig
from lottery.lanes.optimizer import LaneOptimizer

FUSED_DEVICES = ("cpu", "cuda")  # where torch has fused SGD/Adam/AdamW kernels


def set_lr(optimizer: torch.optim.Optimizer, optim: OptimConfig, step: int) -> None:
    """Write the learning rate of schedule step `step` into every parameter group: one dict write each,
    and no scheduler state, so a resumed run simply continues from its step."""
    lr = optim.lr_at(step)
    for group in optimizer.param_groups:
        group["lr"] = lr


class PlainSGD(torch.optim.SGD):
    """SGD without momentum or weight decay as one foreach add, p -= lr * g: on the CPU bitwise the fused step
    (tests/training/test_optimizers.py) in ~60% of its time, which a small model's step notices (docs/speed.md).

    It keeps no state, so over a lane network's stacked parameters it is every lane's own optimizer as it is, bit for
    bit: a lane skips a step (`skip_lanes`, as lottery.lanes.optimizer.LaneOptimizer) by a zero gradient."""

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr)
        self._skip: list[int] = []

    def skip_lanes(self, lanes) -> None:
        """At the next step, these rows of every (stacked) parameter stay as they are."""
        self._skip += list(lanes)

    def step(self, closure=None):
        loss = None
        if closure is not None:  # Lightning's closure runs the hooks before the step (masks, mask updaters)
            with torch.enable_grad():
                loss = closure()
        skip, self._skip = self._skip, []
        with torch.no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                if skip:
                    rows = torch.tensor(skip, device=params[0].device)
                    for p in params:
                        p.grad.index_fill_(0, rows, 0.0)
                torch._foreach_add_(params, [p.grad for p in params], alpha=-group["lr"])
        return loss


def _sgd(params, o: OptimConfig, lr: float, fused: bool) -> torch.optim.SGD:
    if fused and o.momentum == 0 and o.weight_decay == 0 and not o.nesterov and all(p.device.type == "cpu" for p in params):
        return PlainSGD(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay,
                           fused=fused)


OPTIMIZERS: Registry = Registry("optimizer", summaries={
    "sgd": "SGD with train.optim.momentum, nesterov, weight_decay", "adam": "Adam (Kingma & Ba 2015)",
    "adamw": "AdamW, decoupled weight decay (Loshchilov & Hutter 2019)"}, entries={
    "sgd": _sgd,
    "adam": lambda params, o, lr, fused: torch.optim.Adam(params, lr=lr, weight_decay=o.weight_decay, fused=fused),
    "adamw": lambda params, o, lr, fused: torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay, fused=fused),
})


def make_optimizer(params, optim: OptimConfig, lr: float | None = None, lanes: int | None = None) -> torch.optim.Optimizer:
    """The optimizer `optim` names, with torch's fused kernels where the parameters' device has them.

    A fused step is one kernel over all tensors instead of a Python loop over them (docs/speed.md
    has the measurements); the update is the same up to floating-point rounding.

    `lanes`: the parameters are stacked over that many lanes (lottery.lanes): each lane gets the optimizer of its
    run alone, with its own state and steps (lottery.lanes.optimizer.LaneOptimizer; plain SGD, which keeps no state,
    is that already).
    """
    params = list(params)
    fused = bool(params) and all(p.device.type in FUSED_DEVICES and p.dtype.is_floating_point for p in params)
    optimizer = OPTIMIZERS.lookup(optim.optimizer)(params, optim, optim.lr if lr is None else lr, fused)
    if lanes is None or isinstance(optimizer, PlainSGD):
        return optimizer
    return LaneOptimizer(params, lanes, lambda views: make_optimizer(views, optim, lr))
