"""Sparsity distributions: how a target density is shared among layers (Evci et al. 2020, "Rigging the Lottery",
Section 3; Mocanu et al. 2018 for Erdős–Rényi).

    uniform  every layer at the target density
    er       Erdős–Rényi: a layer's density ∝ (n_in + n_out) / (n_in · n_out)
    erk      Erdős–Rényi-Kernel: ∝ sum(shape) / prod(shape), the kernel's size included (the RigL default)

Both Erdős–Rényi variants scale one ε so that the layers keep, in all, the weights the uniform distribution keeps;
a layer whose density would exceed 1 is made dense and ε is found again for the others (the reference
implementations' loop: google-research/rigl `sparse_utils.get_sparsities_erdos_renyi`, jaxpruner
`sparsity_distributions.get_sparsities_erdos_renyi`, whose test values tests/sparsity/test_distributions.py checks).
Shapes are PyTorch's: a Linear weight is [out, in], a Conv weight [out, in, kh, kw]. Layers named in `dense`
(e.g. the first or the output layer) stay at density 1 and count towards the total.
"""
from __future__ import annotations

import fnmatch
import math
from typing import Callable, Collection, Mapping, Sequence

from lottery.core.errors import LotteryError, Registry

Shapes = Mapping[str, Sequence[int]]


def _n_zeros(size: int, sparsity: float) -> int:
    return math.floor(sparsity * size)  # the references' get_n_zeros


def _check(shapes: Shapes, density: float) -> None:
    if not shapes:
        raise LotteryError("a sparsity distribution needs at least one prunable tensor, got none")
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
        raise LotteryError(f"density={density!r} must be in (0, 1]: the fraction of prunable weights kept")


def uniform(shapes: Shapes, density: float, dense: Collection[str] = ()) -> dict[str, float]:
    """Every tensor at `density`, but those in `dense` at 1 (which then count towards the total, as in ER)."""
    if not dense:
        _check(shapes, density)
        return {n: float(density) for n in shapes}
    return _erdos_renyi(shapes, density, dense, lambda shape: 1.0)


def erdos_renyi(shapes: Shapes, density: float, dense: Collection[str] = ()) -> dict[str, float]:
    """Erdős–Rényi: density ∝ (n_in + n_out) / (n_in · n_out) of each weight matrix (Mocanu et al. 2018)."""
    return _erdos_renyi(shapes, density, dense, lambda shape: (shape[0] + shape[1]) / (shape[0] * shape[1]))


def erdos_renyi_kernel(shapes: Shapes, density: float, dense: Collection[str] = (), power: float = 1.0) -> dict[str, float]:
    """Erdős–Rényi-Kernel: density ∝ (sum(shape) / prod(shape)) ** power (Evci et al. 2020)."""
    return _erdos_renyi(shapes, density, dense, lambda shape: (sum(shape) / math.prod(shape)) ** power)


def _erdos_renyi(shapes: Shapes, density: float, dense: Collection[str], raw: Callable) -> dict[str, float]:
    """Densities raw(shape) · ε, ε such that the tensors keep as many weights as `density` uniformly; tensors whose
    density would exceed 1 become dense, largest raw probability first, until ε is valid."""
    _check(shapes, density)
    sparsity, dense = 1.0 - density, set(dense)
    if unknown := dense - set(shapes):
        raise LotteryError(f"dense layers {sorted(unknown)} are not among the prunable tensors {sorted(shapes)}")
    while True:
        rhs, divisor, probabilities = 0.0, 0.0, {}
        for name, shape in shapes.items():
            size = math.prod(shape)
            zeros = _n_zeros(size, sparsity)
            if name in dense:
                rhs -= zeros  # a dense layer keeps the weights the uniform distribution would remove there
            else:
                rhs += size - zeros
                probabilities[name] = raw(shape)
                divisor += probabilities[name] * size
        if not probabilities or rhs <= 0:
            raise LotteryError(f"density {density:g} cannot be met: the tensors kept dense ({sorted(dense)}) already hold "
                               "more weights than that; lower the number of dense layers or raise the density")
        eps = rhs / divisor
        highest = max(probabilities.values())
        if highest * eps <= 1:
            break
        dense |= {name for name, p in probabilities.items() if p == highest}
    return {name: 1.0 if name in dense else eps * probabilities[name] for name in shapes}


DISTRIBUTIONS: Registry[Callable[..., dict[str, float]]] = Registry("sparsity distribution", {
    "uniform": uniform, "er": erdos_renyi, "erk": erdos_renyi_kernel,
})


def layer_densities(distribution: str, shapes: Shapes, density: float, dense: Collection[str] = ()) -> dict[str, float]:
    """The density of each tensor when `density` of all their weights is kept, shared out by `distribution`."""
    return DISTRIBUTIONS.lookup(distribution)(shapes, density, dense)


def dense_layers(names: Sequence[str], patterns: Sequence[str], key: str = "sparse.dense_layers") -> list[str]:
    """The tensors of `names` (in the model's order) that `patterns` keep dense: "first" and "output" (the first and
    the last of them), or parameter-name patterns (sparse.dense_layers, methods.srste.dense_layers: `key`, named when
    a pattern matches nothing)."""
    keep = set()
    for pattern in patterns:
        chosen = {"first": names[:1], "output": names[-1:]}.get(pattern)
        chosen = chosen if chosen is not None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not chosen:
            raise LotteryError(f"{key} pattern {pattern!r} matches no prunable tensor; prunable: "
                               f"{list(names[:6])}{' ...' if len(names) > 6 else ''} (or first, output)")
        keep |= set(chosen)
    return [n for n in names if n in keep]
