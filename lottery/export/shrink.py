"""Shrunk export: a smaller dense model with the dead units of a masked model removed, same logits.

A unit (a Linear neuron, a Conv channel) is removed when no layer needs it: every layer that reads
it either has all its weights from it pruned, or sees a constant (the unit's incoming weights are
all pruned, so it outputs f(bias) through BatchNorm, ReLU and pooling) and adds that constant to
its own bias instead. Channels joined by a residual connection go together: a channel is removed
only if it is dead in every tensor that shares it. The producing layer loses the unit's row and
bias, a BatchNorm its entries, the reading layers their columns. Exact in eval mode (BatchNorm
with running statistics), up to float rounding of the folded biases.

A graph torch.fx cannot follow here (attention, concatenations, depthwise convolutions ...) is handed, when masks
are given and Torch-Pruning is installed (the `structured` extra), to its dependency graph (lottery.structured):
it removes the units that are gone in every tensor that shares them (a structured ticket's channels, neurons and
heads), with no constant to fold, so the logits are the masked model's up to float rounding.
"""
from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import fx, nn

from lottery.core.errors import LotteryError, installed
from lottery.core.files import atomic_path
from lottery.export.graph import Graph, analyse, foldable, reads


@dataclass
class ShrinkReport:
    units: dict[str, tuple[int, int]]  # layer -> (units kept, units before): output neurons or channels
    params_before: int
    params_after: int

    def __str__(self) -> str:
        lines = [f"shrunk: {self.params_after:,} of {self.params_before:,} parameters "
                 f"({self.params_after / self.params_before:.1%})"]
        lines += [f"  {name:32s} {kept:6d} of {total:6d} units" + (f"  (-{total - kept})" if kept < total else "")
                  for name, (kept, total) in self.units.items()]
        return "\n".join(lines)


def _removable(g: Graph) -> dict[int, torch.Tensor]:
    """Per space root: which channels no layer needs (the rest stay, as does one channel of each space)."""
    roots = {g.find(s) for s in range(len(g.parent))}
    free = {r: torch.full((g.size[r],), not g.is_fixed(r)) for r in roots}
    for name, node in g.consumers:
        layer, act = g.gm.get_submodule(name), g.acts[node]
        root = g.find(act.space)
        needed = reads(layer).any(0) & ~foldable(layer, act)  # per input feature
        free[root] &= ~needed.view(g.size[root], -1).any(1)  # features of one channel are consecutive
    for mask in free.values():
        if mask.numel() and mask.all():
            mask[0] = False  # an empty layer would break Conv and ONNX; one unit stays
    return free


@torch.no_grad()
def shrink(model: nn.Module, example_input: torch.Tensor, masks=None) -> tuple[fx.GraphModule, ShrinkReport]:
    """A copy of `model` (eval mode) without its dead units, and how many units each layer kept.

    `example_input` is a batch of inputs of the model's shape (values do not matter); `masks` (a
    MaskManager or {param: bool tensor}) are applied to the copy first; without them the weights'
    zeros are the mask. Raises a LotteryError suggesting the compact export for graphs it cannot follow.
    """
    model = copy.deepcopy(model).eval()
    kept = None
    if masks is not None:
        from lottery.export.compact import mask_dict

        kept = mask_dict(model, masks)
        for name, mask in kept.items():
            model.get_parameter(name).mul_(mask.to(model.get_parameter(name).device))
    before = sum(p.numel() for p in model.parameters())
    try:
        g = analyse(model, example_input)
    except LotteryError as refused:
        if kept is None:
            raise
        if not installed("torch_pruning"):
            raise LotteryError(f"{refused} (or pip install -e \".[structured]\": Torch-Pruning's dependency graph "
                               "removes the units a structured ticket prunes)") from None
        try:
            return _remove_units(model, example_input, kept, before)
        except LotteryError:  # its message suggests another strategy; here the way out is another format
            raise LotteryError(f"{refused} (Torch-Pruning's dependency graph cannot follow it either)") from None
    free = _removable(g)
    keep_out = {name: ~free[g.find(space)] for name, space in g.producers}
    for name, node in g.consumers:
        _cut_inputs(g.gm.get_submodule(name), g.acts[node], free[g.find(g.acts[node].space)])
    for name, keep in keep_out.items():
        _cut_outputs(g.gm.get_submodule(name), keep)
    for name, space in g.norms:
        _cut_norm(g.gm.get_submodule(name), ~free[g.find(space)])
    units = {name: (int(keep.sum()), keep.numel()) for name, keep in keep_out.items()}
    return g.gm, ShrinkReport(units, before, sum(p.numel() for p in g.gm.parameters()))


def _remove_units(model: nn.Module, example_input: torch.Tensor, masks: dict, before: int):
    """The units gone in every tensor of their group removed by Torch-Pruning's pruner (one unit of a group stays)."""
    from lottery.structured.removal import remove_units
    from lottery.structured.units import unit_groups

    shape = tuple(example_input.shape[1:])
    groups = unit_groups(model, shape, list(masks))
    gone = {}
    for g in groups:
        if not g.fixed:
            gone[g.root] = g.removable(masks)
            gone[g.root][0] &= not bool(gone[g.root].all())  # an empty layer would break it: one unit stays
    kinds = {g.root: g.kind for g in groups}
    units = {f"{root} (heads)" if kinds[root] == "head" else root: n for root, n in remove_units(model, shape, groups, gone).items()}
    return model, ShrinkReport(units, before, sum(p.numel() for p in model.parameters()))


def _cut_inputs(layer: nn.Module, act, free: torch.Tensor) -> None:
    """Drop the columns of removed units; their constant contribution moves into the bias."""
    gone = free.repeat_interleave(act.per)  # channel -> its features
    weight = layer.weight.detach()
    value = torch.where(act.const & gone, act.value, torch.zeros_like(act.value)).to(weight.dtype)
    per_input = weight if isinstance(layer, nn.Linear) else weight.flatten(2).sum(2)  # a constant map meets the kernel's sum
    shift = per_input[:, gone] @ value[gone]
    if layer.bias is None and shift.ne(0).any():
        layer.bias = nn.Parameter(torch.zeros_like(shift))
    if layer.bias is not None:
        layer.bias.add_(shift)
    layer.weight = nn.Parameter(weight[:, ~gone].clone())
    setattr(layer, "in_features" if isinstance(layer, nn.Linear) else "in_channels", int((~gone).sum()))


def _cut_outputs(layer: nn.Module, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.detach()[keep].clone())
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.detach()[keep].clone())
    setattr(layer, "out_features" if isinstance(layer, nn.Linear) else "out_channels", int(keep.sum()))


def _cut_norm(norm: nn.Module, keep: torch.Tensor) -> None:
    for name in ("weight", "bias"):
        if getattr(norm, name, None) is not None:
            setattr(norm, name, nn.Parameter(getattr(norm, name).detach()[keep].clone()))
    for name in ("running_mean", "running_var"):
        if getattr(norm, name, None) is not None:
            setattr(norm, name, getattr(norm, name)[keep].clone())
    norm.num_features = int(keep.sum())


def save_shrunk(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike,
                masks=None, log=print) -> tuple[Path, ShrinkReport]:
    """Shrink `model` and save it as a `torch.export` program (.pt2): `torch.export.load(path).module()`
    runs it with torch alone, for any batch size."""
    shrunk, report = shrink(model, example_input, masks)
    log(str(report))
    example = example_input[:1].expand(2, *example_input.shape[1:]).contiguous()  # batch 2: batch 1 would be specialised
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(shrunk, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()  # saved to memory first: the archive is named after the file it is written to
    torch.export.save(program, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path), report
