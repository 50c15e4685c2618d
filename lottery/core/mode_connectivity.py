"""Linear mode connectivity: the error along the straight line between two trained networks.

Frankle, Dziugaite, Roy & Carbin (2020), "Linear Mode Connectivity and the Lottery Ticket
Hypothesis": two copies of a network trained from the same point with different SGD noise are
*stable* when the error does not rise on the line between them (Section 2: instability is the
error barrier height, the largest error on the path minus the mean error of its two ends).

BatchNorm: at an interpolated point the running statistics are those interpolated, like every
other floating tensor of the state dict, which is the approach of the paper for the networks it
studies. Pass `reset_bn` (e.g. a function that re-estimates them on training data) to recompute
them at each point instead.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError

State = Mapping[str, torch.Tensor]
ErrorPath = list[tuple[float, float]]  # (alpha, error) at points along the line


def _check_same_keys(state_a: State, state_b: State) -> None:
    missing, extra = set(state_a) - set(state_b), set(state_b) - set(state_a)
    if missing or extra:
        raise LotteryError(f"the two states are of different networks: only in the first {sorted(missing)}, "
                           f"only in the second {sorted(extra)}; interpolate checkpoints of one architecture")
    for k in state_a:
        if state_a[k].shape != state_b[k].shape:
            raise LotteryError(f"{k!r} has shape {tuple(state_a[k].shape)} in the first state but "
                               f"{tuple(state_b[k].shape)} in the second: interpolate checkpoints of one architecture")


def interpolate(state_a: State, state_b: State, alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) * a + alpha * b for floating tensors; integer buffers (num_batches_tracked) from a.

    alpha = 0 and alpha = 1 return copies of a and b bit for bit (arithmetic would turn -0.0 into 0.0).
    """
    _check_same_keys(state_a, state_b)
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        if not a.is_floating_point() or alpha == 0.0:
            out[k] = a.clone()
        elif alpha == 1.0:
            out[k] = b.to(device=a.device).clone()
        else:
            out[k] = torch.lerp(a, b.to(device=a.device, dtype=a.dtype), alpha)
    return out


def alphas(points: int) -> list[float]:
    """`points` evenly spaced interpolation weights from 0 to 1, both ends exact."""
    if points < 2:
        raise LotteryError(f"points must be >= 2 to include both networks, got {points}")
    return [i / (points - 1) for i in range(points)]


def error_path(model: nn.Module, state_a: State, state_b: State, evaluate: Callable[[nn.Module], float],
                points: int = 30, reset_bn: Callable[[nn.Module], None] | None = None) -> ErrorPath:
    """[(alpha, error)] at `points` evenly spaced points on the line from a (alpha 0) to b (alpha 1).

    Each interpolated state is loaded into `model`, then `reset_bn(model)` if given, then
    `evaluate(model)` gives its error. The model's own state is restored afterwards, even on failure.
    The paper uses 30 points (Section 2).
    """
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = []
    try:
        for alpha in alphas(points):
            model.load_state_dict(interpolate(state_a, state_b, alpha))
            if reset_bn is not None:
                reset_bn(model)
            path.append((alpha, float(evaluate(model))))
    finally:
        model.load_state_dict(original)
    return path


def error_barrier(path: ErrorPath) -> float:
    """Instability: max error on the path minus the mean of the two end errors (Frankle et al. 2020, Section 2)."""
    if len(path) < 2:
        raise LotteryError(f"an error path needs at least its two ends, got {len(path)} point(s)")
    errors = [e for _, e in sorted(path)]
    return max(errors) - (errors[0] + errors[-1]) / 2
