"""How many lanes to train together: the `auto` rule (lanes where a run's step is overhead-bound, as many
as fit in memory) and the memory one lane needs; the work per step is lottery.core.macs."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.macs import forward_outputs

# On a CPU a run's step is overhead-bound (the Trainer's ~1.4 ms of Python per step, launch costs) below about
# this many multiply-accumulates; above it arithmetic dominates and lanes save nothing (grouped convolutions are
# even slower than K single ones there). From experiments/bench_lanes.py: LeNet-300-100 at batch 60 (1.6e7)
# gains 2-4.6x, Conv-2 at batch 60 (2.7e9) and ResNet-20 at batch 128 (5.2e9) do not.
CPU_OVERHEAD_BOUND_MACS = 1e8


def lane_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int) -> int:
    """Training memory one lane needs, estimated: fp32 weights, gradients and two optimizer moments, the
    masks (bool and the multiply's copy), and every leaf module's output kept for the backward pass (twice:
    the output and its gradient). An estimate for choosing a lane count, not an allocator's truth."""
    leaves = [m for m in model.modules() if not list(m.children())]
    kept = sum(out.numel() for _, out in forward_outputs(model, input_shape, leaves) if isinstance(out, torch.Tensor))
    params = sum(p.numel() for p in model.parameters())
    return 4 * 4 * params + 5 * params + 2 * 4 * kept * batch_size


def lanes_that_fit(wanted: int, lane_bytes: int | None, free_bytes: int | None) -> int:
    """`wanted` lanes, or a LotteryError naming the count that fits in `free_bytes` (no check without numbers)."""
    if not lane_bytes or free_bytes is None or wanted * lane_bytes <= free_bytes:
        return wanted
    fits = int(free_bytes // lane_bytes)
    raise LotteryError(f"trainer.lanes={wanted}: {wanted} lanes of ~{lane_bytes / 2**30:.2f} GiB do not fit in the "
                       f"{free_bytes / 2**30:.1f} GiB free on the device; {fits} fit{'s' if fits == 1 else ''}: set "
                       f"trainer.lanes={max(fits, 1)} or trainer.lanes=auto")


def choose_lanes(runs: int, device: str, macs: float, cap: int | None = None,
                 lane_bytes: int | None = None, free_bytes: int | None = None) -> tuple[int, str]:
    """How many of `runs` runs to train as lanes ("auto"), and why.

    macs: one run's forward multiply-accumulates per step (lottery.core.macs.step_macs). Lanes pay when a run's step is bound
    by per-step overhead (kernel launches, the Trainer's Python) rather than arithmetic: on a GPU for these
    models, as many lanes as fit in memory (`lane_bytes` each, `free_bytes` free); on a CPU only below
    CPU_OVERHEAD_BOUND_MACS. A count of the work, not a timing, so a busy machine does not change the choice.
    """
    if runs < 1:
        raise LotteryError(f"choose_lanes needs at least one run, got {runs}")
    if cap is not None and cap < 1:
        raise LotteryError(f"trainer.lanes={cap} must be a positive integer or auto")
    lanes = min(runs, cap or runs)
    if device == "cpu" and macs >= CPU_OVERHEAD_BOUND_MACS:
        return 1, (f"one by one: {macs:.2g} multiply-accumulates per step >= {CPU_OVERHEAD_BOUND_MACS:.0g} is "
                   "compute-bound on a CPU, where lanes save nothing")
    if lane_bytes and free_bytes is not None:
        fits = int(free_bytes // lane_bytes)
        if fits < 1:
            raise LotteryError(f"one lane needs {lane_bytes / 2**30:.2f} GiB but {free_bytes / 2**30:.2f} GiB are free; "
                               "use a smaller batch or another device")
        if fits < lanes:
            return fits, f"{fits} lanes: the most that fit in {free_bytes / 2**30:.1f} GiB ({lane_bytes / 2**30:.2f} GiB each)"
    why = f"{macs:.2g} multiply-accumulates per step, overhead-bound" if device == "cpu" else f"on {device}"
    return lanes, f"{lanes} lanes: {why}" + (f" (capped at {cap})" if cap and cap < runs else "")
