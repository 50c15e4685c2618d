"""Tracing a model into its packed lane network (the "packed" mode of lottery.lanes.net.LaneNet).

The model's forward is traced with torch.fx; Linear, Conv2d and BatchNorm2d become their batched lane
layers (lottery.lanes.layers), flatten becomes a per-lane flatten, and activations, pooling and residual
adds stay as they are: they act per channel or elementwise, so they work unchanged on either layout.
Anything else is a LotteryError naming the node, and LaneNet falls back to vmap.
"""
from __future__ import annotations

import copy
import operator
from typing import Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from lottery.core.errors import LotteryError
from lottery.lanes.layers import (
    LaneBatchNorm2d,
    LaneConv2d,
    LaneFlatten,
    LaneInput,
    LaneLinear,
    to_lanes,
)

_PACKED = {nn.Linear: LaneLinear, nn.Conv2d: LaneConv2d, nn.BatchNorm2d: LaneBatchNorm2d}
# Parameter-free modules and functions that work unchanged on either layout (they act per channel or elementwise).
_PASSTHROUGH_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity,
                        nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout)
_PASSTHROUGH_FUNCTIONS = {operator.add, operator.iadd, operator.mul, operator.sub, torch.add, torch.mul, torch.relu,
                          F.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.max_pool2d, F.avg_pool2d,
                          F.adaptive_avg_pool2d, F.dropout}
_PASSTHROUGH_METHODS = {"add", "add_", "mul", "mul_", "relu", "relu_", "sigmoid", "tanh", "contiguous"}


def _is_flatten(node: torch.fx.Node) -> bool:
    """flatten(1) / flatten(x, 1) / view(x.size(0), -1) / reshape(B, -1): one sample's features in one row."""
    args = list(node.args[1:])
    if node.op == "call_method" and node.target == "flatten" or node.op == "call_function" and node.target is torch.flatten:
        start = args[0] if args else node.kwargs.get("start_dim", 0)
        end = args[1] if len(args) > 1 else node.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    return node.op == "call_method" and node.target in ("view", "reshape") and len(args) == 2 and args[1] == -1


def pack(models: Sequence[nn.Module]) -> torch.fx.GraphModule:
    """The packed network of `models`, or a LotteryError saying which node could not be packed."""
    try:
        graph = torch.fx.symbolic_trace(models[0])
    except Exception as error:  # fx cannot trace data-dependent control flow
        raise LotteryError(f"torch.fx cannot trace {type(models[0]).__name__} ({type(error).__name__}: {error})") from None
    graph = torch.fx.GraphModule(graph, copy.deepcopy(graph.graph))  # own module tree: the models stay untouched
    lanes, modules = len(models), [dict(m.named_modules()) for m in models]
    for node in list(graph.graph.nodes):  # first the flattens, so that shape reads feeding them fall away
        if node.op in ("call_function", "call_method") and _is_flatten(node):
            with graph.graph.inserting_after(node):
                new = graph.graph.call_function(to_lanes, (node.args[0], lanes))
            node.replace_all_uses_with(new)
            graph.graph.erase_node(node)
    graph.graph.eliminate_dead_code()
    readers_of_input = set()
    for node in graph.graph.nodes:
        if node.op == "call_module":
            module = graph.get_submodule(node.target)
            kind = type(module)
            if kind in _PACKED:
                graph.add_submodule(node.target, _PACKED[kind]([m[node.target] for m in modules]))
            elif kind is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
                graph.add_submodule(node.target, LaneFlatten(lanes))
            elif not isinstance(module, _PASSTHROUGH_MODULES) or next(module.parameters(), None) is not None:
                raise LotteryError(f"packed lanes do not support {kind.__name__} ({node.target!r})")
        elif node.op == "call_function" and node.target not in _PASSTHROUGH_FUNCTIONS and node.target is not to_lanes or \
                node.op == "call_method" and node.target not in _PASSTHROUGH_METHODS:
            raise LotteryError(f"packed lanes do not support {node.op} {getattr(node.target, '__name__', node.target)!r}")
        elif node.op == "get_attr":
            raise LotteryError(f"packed lanes do not support tensors read directly in forward ({node.target!r})")
        if node.op != "placeholder" and any(a.op == "placeholder" for a in node.all_input_nodes):
            readers_of_input.add(node)
    if any(not _reads_lane_first(graph, n) for n in readers_of_input):
        _convert_input(graph, lanes)
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _reads_lane_first(graph: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(graph.get_submodule(node.target), (LaneLinear, LaneConv2d, LaneFlatten))
    return node.op == "call_function" and node.target is to_lanes


def _convert_input(graph: torch.fx.GraphModule, lanes: int) -> None:
    placeholder = next(n for n in graph.graph.nodes if n.op == "placeholder")
    graph.add_submodule("_lane_input", LaneInput(lanes))
    with graph.graph.inserting_after(placeholder):
        converted = graph.graph.call_module("_lane_input", (placeholder,))
    placeholder.replace_all_uses_with(converted, delete_user_cb=lambda user: user is not converted)
