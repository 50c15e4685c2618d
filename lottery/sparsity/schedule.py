"""The sparse-training schedule: when masks change while a run trains, and by how much.

Masks change every update interval ΔT steps from `start_step` to `end_step` (both included; the end step also when
it is not a multiple of ΔT, so that gradual pruning reaches its target there). Two shapes of change follow the papers:

    drop_fraction_at  SET and RigL drop a fraction α of each layer's active weights, decayed from α at the start to 0
                      at the end step by a cosine (Evci et al. 2020, Section 3: α = 0.3, ΔT = 100, end at 75% of
                      training); the reference code decays with the global step, which is the same when start = 0
    gmp_density       gradual magnitude pruning to a layer's final density d_f by the cubic of Zhu & Gupta (2017):
                      sparsity s_t = s_f (1 - (1 - (t - t_0) / (t_end - t_0))^3), dense at t_0
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lottery.core.errors import LotteryError


@dataclass(frozen=True)
class UpdateSchedule:
    """Every `interval` steps (ΔT) from `start_step` to `end_step`, with drop fraction α = `drop_fraction` at the
    start. Steps are the schedule's (iteration t: t steps were taken before it)."""

    end_step: int
    interval: int = 100  # ΔT
    start_step: int = 0
    drop_fraction: float = 0.3  # α: share of a layer's active weights SET and RigL replace at the first update

    def __post_init__(self):
        for name in ("end_step", "interval", "start_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LotteryError(f"the sparse-training {name}={value!r} must be a whole number of steps")
        if self.interval < 1:
            raise LotteryError(f"sparse.interval_steps={self.interval} must be >= 1: masks change every ΔT steps")
        if not 0 <= self.start_step <= self.end_step:
            raise LotteryError(f"sparse.start_step={self.start_step} and sparse.end_step={self.end_step} must satisfy "
                               "0 <= start <= end")
        if not 0.0 <= self.drop_fraction < 1.0:
            raise LotteryError(f"sparse.drop_fraction={self.drop_fraction} must be in [0, 1): the share of active "
                               "weights replaced at an update")

    def is_update(self, step: int) -> bool:
        """Whether masks change at iteration `step`."""
        return self.start_step <= step <= self.end_step and (
            (step - self.start_step) % self.interval == 0 or step == self.end_step)

    def done(self, step: int) -> bool:
        """No update from iteration `step` on."""
        return step > self.end_step

    def updates(self, total_steps: int) -> list[int]:
        """The update steps of a training of `total_steps` iterations (0 .. total_steps - 1)."""
        return [t for t in range(self.start_step, min(self.end_step, total_steps - 1) + 1) if self.is_update(t)]

    def progress(self, step: int) -> float:
        """(step - start) / (end - start), clipped to [0, 1] (1 when the two are equal)."""
        if self.end_step == self.start_step:
            return 1.0
        return min(1.0, max(0.0, (step - self.start_step) / (self.end_step - self.start_step)))

    def drop_fraction_at(self, step: int) -> float:
        """α_t: cosine decay of α from the start step to 0 at the end step (Evci et al. 2020)."""
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * self.progress(step)))

    def gmp_density(self, step: int, final_density: float) -> float:
        """A layer's density at `step` under gradual magnitude pruning to `final_density` (Zhu & Gupta 2017)."""
        sparsity = (1 - final_density) * (1 - (1 - self.progress(step)) ** 3)
        return 1 - sparsity
