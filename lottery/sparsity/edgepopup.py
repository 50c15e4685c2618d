"""Strong tickets by edge-popup (Ramanujan, Wortsman, Kembhavi, Farhadi & Rastegari 2020, "What's Hidden in a Randomly
Weighted Neural Network?", Section 3; Zhou et al. 2019's supermasks): a subnetwork of a randomly weighted network,
found without training any weight.

Every weight keeps its initial value. A real score s per weight is trained by the run's optimizer instead, and the
forward pass uses the weights of each layer whose |s| are among its k highest (the reference code, allenai/
hidden-networks `GetSubnet`, ranks |s|), k = round(n x density) with the layer's density from the level's and
sparse.distribution, as every sparse-training method. The gradient goes straight through the top-k to the scores:

    w_eff = w x mask(|s|),   dL/ds = dL/dw_eff x w x sign(s)

The prune rate, defined once: `density` is the fraction of each layer's weights KEPT, the paper's k% ("% of weights
remaining"); the reference code's `prune_rate` means that in its mask and the fraction removed in its scaled
initialisation (`fan * (1 - prune_rate)`, allenai/hidden-networks issue #9), which `scale_fan` here does with the
density kept, as the paper writes it (Section 4: the standard deviation scaled by sqrt(1/k)).

The weights (methods.edgepopup.weights): the dense level's initial weights, so that the strong ticket and IMP's weak
one are drawn from the same network weight for weight, scaled per layer to the Kaiming standard deviation
σ = sqrt(2 / fan_in) (`kaiming_normal`, the paper's "Kaiming Normal" for the normal initialisations of the models
here), as they are (`init`), or σ x their sign (`signed_constant`, the paper's "Signed Kaiming Constant", as the
reference code builds it: `weight.sign() * std`). The scores start as the reference code's, kaiming_uniform(a=sqrt(5)):
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn on the CPU per lane from its seed. Every other parameter (biases, norms)
keeps its initial value, as the paper's networks (no bias, non-affine norms): nothing but the mask is learned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from lottery.core import seeds as seeding
from lottery.core.errors import LotteryError
from lottery.core.methods import SparseTraining, register
from lottery.sparsity.shadow import ShadowUpdater
from lottery.sparsity.updaters import Rows, _keep_top

WEIGHTS = ("kaiming_normal", "signed_constant", "init")


@dataclass(frozen=True)
class EdgePopupOptions:
    """methods.edgepopup.*: the frozen weights, and a density of its own."""

    weights: str = "kaiming_normal"  # kaiming_normal | signed_constant | init: the initial weights, see the module
    scale_fan: bool = False  # σ / sqrt(density): the paper's scaled variants (its main results are unscaled)
    density: float | None = None  # a density kept (0, 1) instead of each level's: trained once, off level 1

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise LotteryError(f"methods.edgepopup.weights={self.weights!r} must be one of {', '.join(WEIGHTS)}")
        if self.density is not None and not 0.0 < self.density < 1.0:
            raise LotteryError(f"methods.edgepopup.density={self.density} must be in (0, 1): the fraction of the weights "
                               "kept (1 would keep the random network whole, 0 nothing); null: each level's density")


def kaiming_std(shape: tuple[int, ...]) -> float:
    """σ = sqrt(2 / fan_in) of a weight of `shape` (out, in, *kernel): He et al. 2015 for ReLU, mode fan_in."""
    return math.sqrt(2.0 / math.prod(shape[1:]))


def frozen_weights(weight: torch.Tensor, shape: tuple[int, ...], density: float, options: EdgePopupOptions) -> torch.Tensor:
    """The weights edge-popup keeps: one run's initial `weight` of `shape`, or K lanes' stacked [K, *shape]; a pure
    function of them (lottery.export.supermask regenerates a strong ticket with it)."""
    if options.weights == "init":
        return weight.clone()
    sigma = kaiming_std(shape) / (math.sqrt(density) if options.scale_fan else 1.0)
    rows = weight.reshape(-1, math.prod(shape))
    if options.weights == "signed_constant":
        return (rows.sign() * sigma).view_as(weight)
    return (rows * (sigma / rows.std(dim=1, keepdim=True).clamp_min(1e-12))).view_as(weight)


def score_init(shape: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
    """One run's initial scores: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from (seed, tensor)."""
    bound = 1.0 / math.sqrt(math.prod(shape[1:]))
    generator = torch.Generator().manual_seed(seeding.batch(seed, -1, index))
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class EdgePopup(ShadowUpdater):
    """Edge-popup: scores trained in the weights' place, the top-k of each layer's |scores| as its mask, the weights
    frozen (module docstring). A step costs a forward at the density and a backward to every score: the weights'
    gradient is dense at every step."""

    freezes_others = True

    def __init__(self, schedule, density: Mapping[str, float], seeds=(0,), options: EdgePopupOptions | None = None):
        super().__init__(schedule, density, seeds, options or EdgePopupOptions())
        self.frozen: dict[str, torch.Tensor] = {}

    def first_shadow(self, index: int, name: str, weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        self.frozen[name] = frozen_weights(weight, shape, self.density[name], self.options)
        scores = torch.stack([score_init(shape, s, index) for s in self.seeds])
        return scores.view_as(weight).to(device=weight.device, dtype=weight.dtype)

    def shadow_grad(self, name: str, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return grad * self._frozen(name, grad) * self.shadow[name].sign()

    def effective(self, name: str, mask: torch.Tensor) -> torch.Tensor:
        frozen = self._frozen(name, self.shadow[name])
        return frozen * mask.to(frozen.dtype)

    def new_mask(self, step: int, rows: Rows) -> torch.Tensor:
        return _keep_top(rows.weight.abs().float(), rows.count)

    def dense_gradient_steps(self, total_steps: int) -> int:
        return total_steps  # every step takes the gradient of every weight: the scores' straight-through gradient

    @staticmethod
    def regenerate(init: Mapping[str, torch.Tensor], density: Mapping[str, float],
                   options: EdgePopupOptions) -> dict[str, torch.Tensor]:
        """The weights a strong ticket keeps, from the initial weights of one run it was drawn from: what its mask
        selects from (lottery.export.supermask writes a seed and the mask, and regenerates them)."""
        return {n: frozen_weights(init[n], tuple(init[n].shape), d, options) if d < 1.0 else init[n].clone()
                for n, d in density.items()}

    def _frozen(self, name: str, like: torch.Tensor) -> torch.Tensor:
        frozen = self.frozen[name]
        if frozen.device != like.device or frozen.dtype != like.dtype:
            frozen = self.frozen[name] = frozen.to(device=like.device, dtype=like.dtype)
        return frozen

    def state_dict(self) -> dict:
        return super().state_dict() | {"frozen": {n: t.detach().cpu().clone() for n, t in self.frozen.items()}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "frozen" in state:
            self.frozen = {n: t.clone() for n, t in state["frozen"].items()}


def edgepopup_densities(masks, share, options: EdgePopupOptions):
    """methods.edgepopup.density, shared out by the distribution; None: each level's."""
    return None if options.density is None else share(options.density)


register(SparseTraining(
    name="edgepopup", updater=EdgePopup, options=EdgePopupOptions, starts_dense=True, densities=edgepopup_densities,
    reads=("sparse.distribution", "sparse.dense_layers"), label="strong ticket (edge-popup)",
    summary="a subnetwork of the frozen random weights, top-k scores trained straight-through (Ramanujan et al. 2020)"))
