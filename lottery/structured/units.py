"""Which tensors share each unit of a model: its dependency graph, from Torch-Pruning (the `structured` extra).

A unit is an output channel of a convolution, a neuron of a Linear layer, or an attention head (the block of a head's
channels in the query, key and value projections). Removing one removes, together: the rows of every layer that
produces it (all the layers a residual connection adds up), its BatchNorm entries, and the columns of every layer that
reads it (after a flatten, every position of the channel). Torch-Pruning's `DependencyGraph` traces the model through
autograd and knows residual additions, concatenations, splits, grouped convolutions and attention; `unit_groups` turns
its groups into parameter names and index tensors, so that masks, scores and counts need neither the graph nor the
model afterwards.

A group keeps all its units (`fixed`, with the reason) when removing one would not be a mask of the prunable
tensors: it reaches the model's output (the classes), it touches a tensor that is not prunable (an embedding, a
classifier outside the prunable set, an unwrapped parameter) or a normalisation over the channels (LayerNorm,
GroupNorm: it would see fewer channels, not zeros), or a grouped convolution other than a depthwise one.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError, require

EXTRA = "structured"  # the extra of pyproject.toml that installs torch-pruning
# Attributes of Hugging Face attention modules giving a head's width: their q/k/v projections split into heads.
HEAD_SIZE = ("attention_head_size", "head_dim")
SAFE = (nn.modules.batchnorm._BatchNorm, nn.PReLU)  # modules with per-channel parameters a mask leaves exact


@dataclass(frozen=True)
class Member:
    """One tensor's share of a group: along `dim` (0: its rows, the layer produces the units; 1: its columns, the
    layer reads them), the positions `index`, the `unit` each position belongs to."""

    name: str
    dim: int
    index: torch.Tensor
    unit: torch.Tensor

    def cut(self, mask: torch.Tensor, gone: torch.Tensor) -> None:
        """Clear, in `mask` (the tensor's), the positions of the units where `gone` (bool [units]) is set."""
        drop = self.index[gone[self.unit]]
        if drop.numel():
            mask.index_fill_(self.dim, drop.to(mask.device), False)

    def alive(self, mask: torch.Tensor, units: int) -> torch.Tensor:
        """bool [units]: the units with a weight left in this tensor's slices of them."""
        lines = mask.movedim(self.dim, 0).reshape(mask.shape[self.dim], -1).any(1).cpu()
        out = torch.zeros(units, dtype=torch.bool)
        return out.index_put_((self.unit,), lines[self.index], accumulate=True)


@dataclass(frozen=True)
class UnitGroup:
    """Units that go together, and every tensor that holds them.

    root: the layer (module name) whose output units these are, named in messages.
    kind: "channel" (output channels and neurons) or "head" (attention heads of `width` channels each).
    members: the prunable weights (rows of producers, columns of readers); norms: BatchNorm weights (dim 0), the
        scaling factors of the units. fixed: why the units stay, "" when they can go.
    """

    root: str
    kind: str
    units: int
    width: int
    members: tuple[Member, ...]
    norms: tuple[Member, ...]
    fixed: str = ""

    @property
    def producers(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.dim == 0)

    def alive(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """bool [units]: the units with a weight left in a producer's rows."""
        out = torch.zeros(self.units, dtype=torch.bool)
        for m in self.producers:
            out |= m.alive(masks[m.name], self.units)
        return out

    def removable(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """bool [units]: the units without a weight left in any member (rows and columns): gone for good."""
        used = torch.zeros(self.units, dtype=torch.bool)
        for m in self.members:
            used |= m.alive(masks[m.name], self.units)
        return ~used

    def remove(self, masks: dict[str, torch.Tensor], gone: torch.Tensor) -> None:
        """Clear the units where `gone` is set in every member's mask (in place)."""
        for m in self.members:
            m.cut(masks[m.name], gone)

    def positions(self, units: torch.Tensor) -> list[int]:
        """The root layer's output channels of `units` (indices): what Torch-Pruning removes."""
        return [u * self.width + i for u in units.tolist() for i in range(self.width)]


_CACHE: OrderedDict = OrderedDict()  # architecture -> its groups: a run traces each architecture once


def torch_pruning(what: str):
    return require("torch_pruning", what, EXTRA)


def example_input(model: nn.Module, input_shape: Iterable[int]) -> torch.Tensor:
    """Two inputs of ones (token ids, masks and types alike for text models), on the model's device and dtype."""
    p = next(model.parameters())
    return torch.ones(2, *input_shape, device=p.device, dtype=p.dtype)


def dependency_graph(model: nn.Module, input_shape: Iterable[int]):
    """Torch-Pruning's DependencyGraph of `model`, traced in eval mode (no BatchNorm statistics change)."""
    tp = torch_pruning("structured pruning (prune.strategy=channel_norm, bn_scale, head_norm, structured_random)")
    training = model.training
    try:
        model.eval()
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unwrapped parameters detected": they are reported as fixed groups
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_input(model, input_shape),
                                                         verbose=False)
    except LotteryError:
        raise
    except Exception as e:  # Torch-Pruning raises many types while it traces (AssertionError, KeyError, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise LotteryError(f"Torch-Pruning cannot trace {type(model).__name__} ({type(e).__name__}: {first}); a "
                           "structured strategy needs its dependency graph: choose an unstructured one") from None
    finally:
        model.train(training)


def _signature(model: nn.Module, input_shape, prunable) -> tuple:
    return (type(model).__module__, type(model).__qualname__, tuple(input_shape), tuple(prunable),
            tuple((n, tuple(p.shape)) for n, p in model.named_parameters()))


def unit_groups(model: nn.Module, input_shape: Iterable[int], prunable: Iterable[str]) -> list[UnitGroup]:
    """Every group of units of `model` (inputs of `input_shape`) whose removal the `prunable` weights express, or
    whose units stay (`fixed`). Traced once per architecture; raises a LotteryError naming a prunable layer the graph
    does not hold (a weight used outside its layer's forward, or a layer that never runs)."""
    prunable, input_shape = list(prunable), tuple(input_shape)
    key = _signature(model, input_shape, prunable)
    if key not in _CACHE:
        _CACHE[key] = _groups(model, input_shape, prunable)
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def _groups(model: nn.Module, input_shape: tuple, prunable: list[str]) -> list[UnitGroup]:
    tp = torch_pruning("structured pruning")
    dg = dependency_graph(model, input_shape)
    names = {module: name for name, module in model.named_modules()}
    layers = {f"{name}.weight" if name else "weight": m for m, name in names.items() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    for name in prunable:
        if name not in layers:
            raise LotteryError(f"{name!r} is not the weight of a Linear or Conv layer: a structured strategy removes "
                               "units of those; leave it out (prune.exclude) or choose an unstructured strategy")
        if layers[name] not in dg.module2node:
            raise LotteryError(f"the dependency graph of {type(model).__name__} has no layer {name.removesuffix('.weight')!r}: "
                               "its weight is used outside the layer's forward (or the layer never runs), so Torch-Pruning "
                               "cannot say which tensors share its units; choose an unstructured strategy")
    heads = _head_widths(model)
    groups = []
    for group in dg.get_all_groups(root_module_types=(nn.modules.conv._ConvNd, nn.Linear)):
        groups.append(_group(tp, dg, group, names, set(prunable), heads))
    return groups


def _head_widths(model: nn.Module) -> dict[nn.Module, tuple[nn.Module, int]]:
    """The Linear children of Hugging Face attention modules (those with a head size) whose width is a multiple of
    it: candidates for the query, key and value projections, with their attention module and head size."""
    out = {}
    for module in model.modules():
        width = next((getattr(module, a) for a in HEAD_SIZE if isinstance(getattr(module, a, None), int)), None)
        if width:
            for child in module.children():
                if isinstance(child, nn.Linear) and child.out_features % width == 0 and child.out_features > width:
                    out[child] = (module, width)
    return out


def _head_width(dg, items, heads: dict) -> tuple[int, str]:
    """(head size, "") for a group whose output channels are those of two or more projections of one attention module
    (its query, key and value), else (1, "") for channels; a reason to keep it when heads of two sizes meet."""
    by_attention: dict = {}
    for i in items:
        if i.dep.target.module in heads and dg.is_out_channel_pruning_fn(i.dep.handler):
            attention, width = heads[i.dep.target.module]
            by_attention.setdefault(attention, set()).add((i.dep.target.module, width))
    widths = {w for found in by_attention.values() if len(found) >= 2 for _, w in found}
    if len(widths) > 1:
        return 1, "heads of different widths share these channels"
    return (widths.pop() if widths else 1), ""


def _group(tp, dg, group, names: dict, prunable: set[str], heads: dict) -> UnitGroup:
    items = group.items
    root_module = items[0].dep.target.module
    root = names.get(root_module, str(items[0].dep.target.name))
    width, fixed = _head_width(dg, items, heads)
    channels = len(items[0].idxs)
    members, norms = [], []
    for item in items:
        dep, module, node = item.dep, item.dep.target.module, item.dep.target
        out = dg.is_out_channel_pruning_fn(dep.handler)
        unit = torch.as_tensor([int(r) for r in item.root_idxs], dtype=torch.long) // width
        index = torch.as_tensor([int(i) for i in item.idxs], dtype=torch.long)
        label = names.get(module, str(node.name))
        if node.type == tp.ops.OPTYPE.OUTPUT or (out and module in names and not node.outputs):
            fixed = fixed or f"{label} gives the model's output"
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            weight = f"{label}.weight"
            groups = getattr(module, "groups", 1)
            depthwise = groups > 1 and groups == module.in_channels
            if weight not in prunable:
                fixed = fixed or f"{weight} is not prunable"
            elif groups > 1 and not depthwise:
                fixed = fixed or f"{label} is a grouped convolution (groups={groups})"
            members.append(Member(weight, 0 if out or depthwise else 1, index, unit))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.weight is not None:
                norms.append(Member(f"{label}.weight", 0, index, unit))
        elif isinstance(module, nn.Module) and not isinstance(module, SAFE) and any(True for _ in module.parameters(recurse=False)):
            fixed = fixed or f"{label} ({type(module).__name__}) holds these channels"
        elif isinstance(module, nn.Parameter):
            fixed = fixed or f"the parameter {dg._param_to_name.get(module, label)} holds these channels"
    if not any(m.dim == 0 for m in members):
        fixed = fixed or "no prunable layer produces these channels"
    return UnitGroup(root, "head" if width > 1 else "channel", channels // width, width, tuple(members), tuple(norms), fixed)
