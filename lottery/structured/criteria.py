"""Structured pruning strategies for IMP's levels: whole units (output channels, neurons, attention heads) go, with
every tensor that shares them (lottery.structured.units).

    channel_norm       output channels of convolutions and neurons of Linear layers by the L1 (or L2) norm of their
                       weights, each layer apart (Li et al. 2017, "Pruning Filters for Efficient ConvNets", Section 3.1)
    bn_scale           channels by the magnitude of their BatchNorm scaling factor, with its L1 penalty on the factors
                       in every training (network slimming: Liu et al. 2017, "Learning Efficient Convolutional Networks
                       through Network Slimming", Sections 3.1-3.2; here each layer apart, not by one global threshold)
    head_norm          attention heads of Hugging Face transformers by the norm of a head's query, key, value and output
                       weights (the magnitude criterion; Michel et al. 2019, "Are Sixteen Heads Really Better than One?",
                       prune heads by a gradient-based importance instead)
    structured_random  units at random, as many per layer as asked: the random-pruning control of the three

The density contract of a structured strategy: `density[name]` is the fraction of a tensor's units (rows) to keep; a
group keeps round(units x density) of its units (at least one), the density of its producing layers (the largest,
if they differ), and only removes. A residual connection's channels are one group: scores add up over its layers.
The output layer's classes are never removed (the group that gives the output stays), and its columns go with the
units it reads. Masks cover the prunable weights only: a removed channel's bias and BatchNorm entries stay in the
model while it trains (they add a constant that no layer reads), and the shrunk export removes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lottery.core.errors import LotteryError
from lottery.core.methods import Penalty, Strategy, register
from lottery.structured.removal import check_removal
from lottery.structured.units import UnitGroup, unit_groups


@dataclass(frozen=True)
class NormOptions:
    """The norm a unit's weights are scored by (methods.<strategy>.norm)."""

    norm: int = 1  # 1: the sum of |w| (Li et al. 2017); 2: the Euclidean norm

    def __post_init__(self):
        if self.norm not in (1, 2):
            raise LotteryError(f"methods.<strategy>.norm={self.norm!r} (channel_norm, head_norm) must be 1 (L1, Li et al. "
                               "2017) or 2 (L2)")


@dataclass(frozen=True)
class SlimmingOptions:
    """Network slimming's sparsity penalty (methods.bn_scale.penalty), added to every training of the run."""

    penalty: float = 1e-4  # λ of λ·Σ|γ| (Liu et al. 2017: 1e-4 for VGG on CIFAR, 1e-5 for ResNet and DenseNet); 0: off

    def __post_init__(self):
        if not (isinstance(self.penalty, (int, float)) and 0 <= self.penalty < 1):
            raise LotteryError(f"methods.bn_scale.penalty={self.penalty!r} must be in [0, 1): λ of the L1 penalty on the "
                               "BatchNorm scaling factors (Liu et al. 2017: 1e-4 or 1e-5)")


def keep_units(groups: list[UnitGroup], masks, density, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """New masks keeping, in each group that has `scores` (by root layer), the round(units x density) highest-scoring
    units among those alive (at least one); the other groups as they are."""
    new = {n: m.detach().cpu().clone() for n, m in masks.items()}
    for g in groups:
        if g.root not in scores:
            continue
        alive = g.alive(new)
        target = max(density[m.name] for m in g.producers)
        keep = min(int(alive.sum()), max(1, round(g.units * target)))
        ranked = scores[g.root].float().masked_fill(~alive, float("-inf"))
        kept = torch.zeros(g.units, dtype=torch.bool)
        kept[torch.topk(ranked, keep, sorted=False).indices] = True  # deterministic on the CPU, ties by index
        g.remove(new, ~kept)
    return {n: m.to(masks[n].device) for n, m in new.items()}


def _groups(network, masks, kind: str | None) -> list[UnitGroup]:
    """The groups of `kind` ("channel", "head"; None: both) that can lose units."""
    groups = unit_groups(network.module, network.input_shape, list(masks))
    return [g for g in groups if not g.fixed and kind in (None, g.kind)]


def _norm_scores(g: UnitGroup, weights, members, norm: int) -> torch.Tensor:
    """Per unit: the norm of its weights in `members` (for a residual group, over every layer that shares it)."""
    total = torch.zeros(g.units, dtype=torch.float64)
    for m in members:
        w = weights[m.name].detach().cpu().double().abs().pow(norm)
        per_line = w.movedim(m.dim, 0).reshape(w.shape[m.dim], -1).sum(1)
        total.index_add_(0, m.unit, per_line[m.index])
    return total.pow(1 / norm)


def channel_norm(weights, masks, density, generator, network, options: NormOptions):
    """Li et al. 2017: each output channel (neuron) scored by the norm of its filter, the rows that produce it."""
    groups = _groups(network, masks, "channel")
    scores = {g.root: _norm_scores(g, weights, g.producers, options.norm) for g in groups}
    return keep_units(groups, masks, density, scores)


def head_norm(weights, masks, density, generator, network, options: NormOptions):
    """Each attention head scored by the norm of all its weights: query, key and value rows, output columns."""
    groups = _groups(network, masks, "head")
    scores = {g.root: _norm_scores(g, weights, g.members, options.norm) for g in groups}
    return keep_units(groups, masks, density, scores)


def _scale_scores(g: UnitGroup, model) -> torch.Tensor:
    """Per unit: the mean |γ| of the BatchNorm scaling factors on it (one per BatchNorm of a residual group)."""
    params = dict(model.named_parameters())
    total = torch.zeros(g.units, dtype=torch.float64)
    for m in g.norms:
        total.index_add_(0, m.unit, params[m.name].detach().cpu().double().abs()[m.index])
    return total / len(g.norms)


def bn_scale(weights, masks, density, generator, network, options: SlimmingOptions):
    """Network slimming: each channel scored by |γ| of its BatchNorm; channels without a BatchNorm stay."""
    groups = [g for g in _groups(network, masks, "channel") if g.norms]
    return keep_units(groups, masks, density, {g.root: _scale_scores(g, network.module) for g in groups})


def structured_random(weights, masks, density, generator, network):
    """Units at random, in every group (channels and heads), drawn on the CPU from `generator` in the graph's order."""
    groups = _groups(network, masks, None)
    return keep_units(groups, masks, density, {g.root: torch.rand(g.units, generator=generator) for g in groups})


def slimming_penalty(model, options: SlimmingOptions) -> Penalty | None:
    """λ·Σ|γ| over every BatchNorm scaling factor of the model (Liu et al. 2017, Equation 1)."""
    names = tuple(f"{n}.weight" for n, m in model.named_modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None)
    return Penalty(names, float(options.penalty)) if names and options.penalty > 0 else None


# -- the checks, before anything is written --------------------------------------------------------------------------
def _check(kind: str | None, needs_norms: bool = False):
    """The record's `check`: the dependency graph follows the model, and it has units of `kind` to prune."""
    def check(context, options=None) -> None:
        masks = context.masks
        groups = unit_groups(context.model, tuple(context.data.input_shape), masks.names)
        check_removal(context.model, tuple(context.data.input_shape), groups)
        usable = [g for g in groups if not g.fixed and kind in (None, g.kind) and (g.norms or not needs_norms)]
        if not usable:
            what = {"head": "attention heads", "channel": "channels or neurons"}.get(kind, "units")
            what += " with a BatchNorm" if needs_norms else ""
            reasons = "; ".join(sorted({f"{g.root}: {g.fixed}" for g in groups if g.fixed}))[:300]
            raise LotteryError(f"{type(context.model).__name__} has no prunable {what} (kept: {reasons or 'none'}); "
                               "choose channel_norm (channels, neurons), head_norm (heads) or an unstructured strategy")
    return check


for _record in (
    Strategy(name="channel_norm", select=channel_norm, options=NormOptions, needs_model=True, structured=True,
             control="structured_random", check=_check("channel"),
             summary="output channels and neurons by the L1 norm of their weights, each layer apart (Li et al. 2017)"),
    Strategy(name="bn_scale", select=bn_scale, options=SlimmingOptions, needs_model=True, structured=True,
             control="structured_random", check=_check("channel", needs_norms=True), penalty=slimming_penalty,
             summary="channels by |BatchNorm scale|, L1 penalty on the scales while training (network slimming, Liu et al. 2017)"),
    Strategy(name="head_norm", select=head_norm, options=NormOptions, needs_model=True, structured=True,
             control="structured_random", check=_check("head"),
             summary="attention heads of Hugging Face models by the norm of their weights (heads as Michel et al. 2019)"),
    Strategy(name="structured_random", select=structured_random, needs_model=True, structured=True,
             control="structured_random", check=_check(None),
             summary="units (channels, neurons, heads) at random, the per-layer counts asked: the structured control"),
):
    register(_record)
