"""Units removed for real: Torch-Pruning's pruner cuts every tensor of a group (rows, columns, BatchNorm entries,
biases) at once, and `check_removal` proves on a copy of a model that this is what its masks mean.

A structured mask zeroes a unit's rows in the layers that produce it and its columns in the layers that read it; the
unit then adds nothing to the logits, and removing it gives the same logits. When Torch-Pruning's graph misses a
tensor that shares a unit (an operation it does not know, a weight used outside its layer), the removed model
computes something else, or fails to run: `check_removal` finds the first such group and names its layer, before
anything trains.
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.structured.units import UnitGroup, dependency_graph, example_input


@torch.no_grad()
def remove_units(model: nn.Module, input_shape: Iterable[int], groups: list[UnitGroup],
                 gone: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Remove from `model`, in place, the units `gone[group.root]` (bool [units]) of each group, with Torch-Pruning's
    pruner. Returns {root layer: (units kept, units before)} for every group that can lose units."""
    modules = dict(model.named_modules())
    with torch.enable_grad():
        dg = dependency_graph(model, input_shape)
    kept = {}
    for g in groups:
        if g.fixed:
            continue
        units = gone.get(g.root, torch.zeros(g.units, dtype=torch.bool))
        kept[g.root] = (g.units - int(units.sum()), g.units)
        if units.any():
            root = modules[g.root]
            group = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels,
                                         g.positions(units.nonzero().flatten()))
            group.prune()
    return kept


def _randomize(model: nn.Module) -> None:
    """Nonzero biases and BatchNorm statistics, so that a unit left behind shows in the logits."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        for name, p in m.named_parameters(recurse=False):
            if name == "bias" or isinstance(m, nn.modules.batchnorm._BatchNorm):
                p.copy_(torch.randn(p.shape, generator=g).to(p.dtype))


def _differs(model: nn.Module, input_shape, groups: list[UnitGroup]) -> str:
    """Why removing unit 0 of each of `groups` is not the same as masking it ("" when it is)."""
    x = example_input(model, input_shape)
    masked, removed = copy.deepcopy(model), copy.deepcopy(model)
    params = dict(masked.named_parameters())
    for g in groups:
        first = torch.zeros(g.units, dtype=torch.bool)
        first[0] = True
        for m in g.members:
            m.cut(params[m.name].data, first)  # a float tensor: index_fill_ writes the zeros
    try:
        remove_units(removed, input_shape, groups, {g.root: torch.arange(g.units) == 0 for g in groups})
        got = removed(x)
    except Exception as e:  # a shape the graph got wrong fails anywhere in the forward
        return (f"the model without one of its units fails to run ({type(e).__name__}: "
                f"{(str(e).splitlines() or [''])[0][:120]})")
    want = masked(x)
    got, want = (getattr(t, "logits", t) for t in (got, want))
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5 * (1 + want.abs().max().item())):
        gap = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
        return (f"removing one of its units with the tensors the graph couples to it changes the logits (by up to "
                f"{gap:.3g}) where masking it does not: an operation reorders or mixes its channels (torch.flip, roll, a "
                "mean over channels), or the graph misses a tensor that reads them")
    return ""


@torch.no_grad()
def check_removal(model: nn.Module, input_shape: Iterable[int], groups: list[UnitGroup]) -> None:
    """Raise a LotteryError naming the first layer whose units the dependency graph does not follow: removing one of
    them (on a copy, eval mode, with random biases and BatchNorm statistics) must give the logits of masking it."""
    prunable = [g for g in groups if not g.fixed]
    if not prunable:
        return
    base = copy.deepcopy(model).eval()
    _randomize(base)
    if not _differs(base, input_shape, prunable):
        return
    for g in prunable:  # one of them is wrong: name it
        if why := _differs(base, input_shape, [g]):
            raise LotteryError(f"the dependency graph of {type(model).__name__} does not follow layer {g.root!r}: {why}; "
                               "a structured strategy cannot prune this model: choose an unstructured one, or leave the "
                               "layer out (prune.exclude)")
    raise LotteryError(f"the dependency graph of {type(model).__name__}: removing one unit of every layer together "
                       "changes the logits, though each alone does not; choose an unstructured strategy")
