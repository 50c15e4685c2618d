"""N:M sparse training by SR-STE (Zhou, Ma, Zhu, Liu, Zhang, Yuan, Sun & Li 2021, "Learning N:M Fine-grained
Structured Sparse Neural Networks From Scratch", ICLR, Section 4): a network whose pruned layers keep N of every M
consecutive input weights (2:4 is what sparse tensor cores run, Ampere and later), with the mask trained, not imposed.

The dense weights W are kept and trained (the shadow, lottery.sparsity.shadow); the forward pass uses W ⊙ mask with
the mask recomputed at every step from |W|, the top N of every group of M consecutive weights of each row of the
(out, in x kernel) matrix, the layout 2:4 kernels compress (as lottery.core.pruning.nm_magnitude; the reference code
groups a convolution's input channels at each kernel position instead). The gradient reaches W straight through the
mask, plus the sparse-refined decay of the pruned weights (Section 4.2, Eq. 6; aojunzz/NM-sparsity `Sparse.backward`):

    dL/dW = dL/dW̃ + λ_W (1 - mask) ⊙ W,   W̃ = W ⊙ mask,   λ_W = 2e-4 (the paper's default)

so that pruned weights decay towards zero and the mask settles. The first and the last layer stay dense, as in the
paper's networks (methods.srste.dense_layers; the run says which in one line when it starts). N:M fixes every
layer's density, N/M where it prunes and 1 where it does not: the level's density and sparse.distribution do not
apply, and the branch trains once, off the first pruned level. Its cost is dense training, as the paper counts it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from lottery.core.errors import LotteryError
from lottery.core.methods import SparseTraining, register
from lottery.core.pruning import _top_n_of_m
from lottery.sparsity.distributions import dense_layers
from lottery.sparsity.shadow import ShadowUpdater
from lottery.sparsity.updaters import Rows


@dataclass(frozen=True)
class SRSTEOptions:
    """methods.srste.*: the pattern, the decay, the layers kept dense."""

    n: int = 2  # weights kept in every group (2:4, 4:8, 1:4 ...)
    m: int = 4  # the group: M consecutive input weights of a row
    decay: float = 2e-4  # λ_W, the sparse-refined decay of the pruned weights (Zhou et al. 2021: 2e-4)
    dense_layers: tuple[str, ...] = ("first", "output")  # "first" and "output" (the last), or parameter-name patterns

    def __post_init__(self):
        if not 0 < self.n < self.m:
            raise LotteryError(f"methods.srste.n={self.n}, m={self.m}: an N:M pattern keeps N of every M weights and "
                               "needs 0 < N < M (2:4, 4:8, 1:4 ...)")
        if not self.decay >= 0:
            raise LotteryError(f"methods.srste.decay={self.decay} must be >= 0: λ_W of the pruned weights (2e-4 in the paper)")


def srste_densities(masks, share, options: SRSTEOptions) -> dict[str, float]:
    """N/M in every prunable tensor but the dense layers, 1 in those."""
    dense = dense_layers(masks.names, options.dense_layers, "methods.srste.dense_layers")
    return {n: 1.0 if n in dense else options.n / options.m for n in masks.names}


def check_srste(context, options: SRSTEOptions) -> None:
    """Before anything trains: something is left to prune, and M divides the row of every layer it prunes."""
    densities = srste_densities(context.masks, None, options)
    pruned = [n for n, d in densities.items() if d < 1.0]
    if not pruned:
        raise LotteryError(f"methods.srste.dense_layers={list(options.dense_layers)} keeps every prunable tensor dense "
                           f"({', '.join(context.masks.names)}): nothing to prune N:M")
    for name in pruned:
        shape = tuple(context.masks.masks[name].shape)
        row = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else shape[0]
        if row % options.m:
            raise LotteryError(f"methods.srste.m={options.m} does not divide the {row} input weights of each row of "
                               f"{name} {shape}: choose an M that does, or keep it dense (methods.srste.dense_layers)")


class SRSTE(ShadowUpdater):
    """SR-STE: the dense weights trained through the N:M-masked ones, with the sparse-refined decay (module docstring)."""

    def __init__(self, schedule, density: Mapping[str, float], seeds=(0,), options: SRSTEOptions | None = None):
        options = options or SRSTEOptions()
        if bad := {n: d for n, d in density.items() if d != 1.0 and abs(d - options.n / options.m) > 1e-9}:
            raise LotteryError(f"SR-STE {options.n}:{options.m} keeps {options.n / options.m:.4g} of each pruned tensor "
                               f"(1 where dense), not {bad}: its densities come from its pattern (srste_densities)")
        super().__init__(schedule, density, seeds, options)

    def first_shadow(self, index: int, name: str, weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return weight  # the dense initial weights

    def shadow_grad(self, name: str, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return grad + self.options.decay * (~mask).to(grad.dtype) * self.shadow[name]

    def effective(self, name: str, mask: torch.Tensor) -> torch.Tensor:
        return self.shadow[name] * mask.to(self.shadow[name].dtype)

    def new_mask(self, step: int, rows: Rows) -> torch.Tensor:
        return _top_n_of_m(rows.weight.abs().float(), self.options.n, self.options.m)

    def segments(self, start: int, end: int) -> list[tuple[int, dict[str, float]]]:
        return [(start, {n: 1.0 for n in self.density})]  # dense training, as the paper counts its cost


register(SparseTraining(
    name="srste", updater=SRSTE, options=SRSTEOptions, check=check_srste, starts_dense=True, densities=srste_densities,
    reads=(), label="SR-STE N:M",
    summary="N:M sparse training: top N of every M by magnitude at every step, sparse-refined STE (Zhou et al. 2021)"))
