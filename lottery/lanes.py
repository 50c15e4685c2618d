"""Lanes: K models of one architecture as ONE network whose parameters are stacked along a lane dimension.

A level's runs (every seed's ticket, each control of the same architecture and length) are independent
trainings; as lanes they take one forward, one backward and one optimizer step together, so per-step
costs (kernel launches, the Trainer's bookkeeping) are paid once for K runs. Lane k computes what model
k alone computes: its input is its own batch (x[k]), and every parameter, buffer, mask and optimizer
state is its own slice [k] of a stacked tensor.

    net = LaneNet.from_models(models)          # K models, same architecture
    logits = net(x)                            # x: [K, B, ...] -> [K, B, classes]
    lane_loss(logits, y).backward()            # sum over lanes of each lane's mean loss
    masks = MaskManager(net); masks.set_masks(stack_masks([m.masks for m in managers]))
    net.unstack()                              # K state_dicts under the models' own names

Two ways to run the lanes (`mode`), chosen by measurement (experiments/bench_lanes.py):
- "packed": the model's forward traced with torch.fx, with Linear as one `baddbmm` over [K, B, in],
  Conv2d as one grouped convolution (groups=K) over a [B, K*C, H, W] layout and BatchNorm2d over K*C
  channels (per-lane statistics); activations, pooling and residual adds work unchanged in that layout.
- "vmap": `torch.func.vmap` over `functional_call` for any other model (slower on the CPU for convnets).
Parameters keep the models' names with a leading lane dimension, so `MaskManager(net)` masks every lane
in the same fused multiply, and patterns such as ``rates={"fc3.weight": 0.5}`` mean what they mean for one model.
"""
from __future__ import annotations

import copy
import operator
from typing import Mapping, Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from lottery.errors import LotteryError

MODES = ("auto", "packed", "vmap")


# -- layers of the packed network ---------------------------------------------------------------------
# Layouts: a lane-first tensor is [K, B, ...]; a feature map is [B, K*C, H, W] (lane k's channels are
# k*C..(k+1)*C-1), the layout a grouped convolution reads and writes.

def _to_channels(x: torch.Tensor, lanes: int) -> torch.Tensor:
    """[K, B, C, H, W] -> [B, K*C, H, W]; a feature map passes through."""
    if x.dim() == 5:
        return x.transpose(0, 1).reshape(x.shape[1], lanes * x.shape[2], *x.shape[3:])
    return x


def _to_lanes(x: torch.Tensor, lanes: int) -> torch.Tensor:
    """Any layout -> [K, B, F] (flattened features per lane)."""
    if x.dim() == 3:  # already [K, B, F]
        return x
    if x.dim() == 5:  # [K, B, C, H, W], lane-first input
        return x.flatten(2)
    return x.reshape(x.shape[0], lanes, -1).transpose(0, 1)  # [B, K*C, ...] or [B, K*F]


class _LaneFlatten(nn.Module):
    """`flatten(1)` of each lane's tensor, giving [K, B, F] whatever the layout it reads."""

    def __init__(self, lanes: int):
        super().__init__()
        self.lanes = lanes

    def forward(self, x):
        return _to_lanes(x, self.lanes)


class _LaneInput(nn.Module):
    """Puts the lane-first input into the feature-map layout when layers other than conv/flatten/linear read it."""

    def __init__(self, lanes: int):
        super().__init__()
        self.lanes = lanes

    def forward(self, x):
        return _to_channels(x, self.lanes) if x.dim() == 5 else x


class LaneLinear(nn.Module):
    """K Linear layers in one `baddbmm`: weight [K, out, in], bias [K, out]; input/output [K, B, features]."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.lanes = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers])) if layers[0].bias is not None else None

    def forward(self, x):
        x = _to_lanes(x, self.lanes)
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class LaneConv2d(nn.Module):
    """K Conv2d layers as one grouped convolution: weight [K, out, in/groups, kh, kw] over [B, K*C, H, W]."""

    def __init__(self, layers: Sequence[nn.Conv2d]):
        super().__init__()
        first = layers[0]
        if first.padding_mode != "zeros":
            raise LotteryError(f"packed lanes support Conv2d with padding_mode='zeros', got {first.padding_mode!r}")
        self.lanes = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers])) if first.bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = first.stride, first.padding, first.dilation, first.groups

    def forward(self, x):
        x = _to_channels(x, self.lanes)
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        bias = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups * self.lanes)


class LaneBatchNorm2d(nn.Module):
    """K BatchNorm2d layers as one over K*C channels: each lane keeps its own statistics ([K, C] buffers)."""

    def __init__(self, layers: Sequence[nn.BatchNorm2d]):
        super().__init__()
        first = layers[0]
        self.lanes, self.eps, self.momentum = len(layers), first.eps, first.momentum
        self.track_running_stats = first.track_running_stats
        if first.affine:
            self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
            self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, torch.stack([getattr(m, name) for m in layers]).clone())
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x):
        x = _to_channels(x, self.lanes)
        momentum = self.momentum if self.momentum is not None else 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)  # every lane sees one batch per step
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked[0])
        use_batch = self.training or not self.track_running_stats
        flat = (lambda t: None if t is None else t.reshape(-1))
        # reshape(-1) of a contiguous [K, C] buffer is a view: batch_norm updates each lane's statistics in place.
        return F.batch_norm(x, flat(self.running_mean), flat(self.running_var), flat(self.weight), flat(self.bias),
                            use_batch, momentum, self.eps)


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


def _pack(models: Sequence[nn.Module]) -> torch.fx.GraphModule:
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
                new = graph.graph.call_function(_to_lanes, (node.args[0], lanes))
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
                graph.add_submodule(node.target, _LaneFlatten(lanes))
            elif not isinstance(module, _PASSTHROUGH_MODULES) or next(module.parameters(), None) is not None:
                raise LotteryError(f"packed lanes do not support {kind.__name__} ({node.target!r})")
        elif node.op == "call_function" and node.target not in _PASSTHROUGH_FUNCTIONS and node.target is not _to_lanes or \
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
        return isinstance(graph.get_submodule(node.target), (LaneLinear, LaneConv2d, _LaneFlatten))
    return node.op == "call_function" and node.target is _to_lanes


def _convert_input(graph: torch.fx.GraphModule, lanes: int) -> None:
    placeholder = next(n for n in graph.graph.nodes if n.op == "placeholder")
    graph.add_submodule("_lane_input", _LaneInput(lanes))
    with graph.graph.inserting_after(placeholder):
        converted = graph.graph.call_module("_lane_input", (placeholder,))
    placeholder.replace_all_uses_with(converted, delete_user_cb=lambda user: user is not converted)


def _stack_into(template: nn.Module, models: Sequence[nn.Module]) -> None:
    """Replace every parameter and buffer of `template` by the stack of the models' ones (the vmap mode)."""
    named = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in models]
    for name, module in template.named_modules():
        prefix = f"{name}." if name else ""
        for key, value in list(module._parameters.items()):
            if value is not None:
                stacked = torch.stack([n[prefix + key].detach() for n in named])
                module._parameters[key] = nn.Parameter(stacked, requires_grad=value.requires_grad)
        for key, value in list(module._buffers.items()):
            if value is not None:
                module._buffers[key] = torch.stack([n[prefix + key] for n in named]).clone()


def _check_same_architecture(models: Sequence[nn.Module]) -> None:
    if not models:
        raise LotteryError("lanes need at least one model, got none (K=0)")
    first = models[0]
    shapes = {k: (tuple(v.shape), v.dtype, v.device) for k, v in first.state_dict().items()}
    for k, model in enumerate(models[1:], 1):
        if type(model) is not type(first):
            raise LotteryError(f"lane {k} is a {type(model).__name__} but lane 0 a {type(first).__name__}: "
                               "lanes train runs of one architecture; group the runs by architecture")
        other = {n: (tuple(v.shape), v.dtype, v.device) for n, v in model.state_dict().items()}
        if other != shapes:
            diff = sorted(set(other.items()) ^ set(shapes.items()))[0][0]
            raise LotteryError(f"lane {k} differs from lane 0 at {diff!r} (shape, dtype or device): lanes train runs "
                               "of one architecture on one device; group the runs by architecture")


class LaneNet(nn.Module):
    """K models of one architecture as one network: parameter `name` is the stack of the models' `name`."""

    def __init__(self, graph: nn.Module, lanes: int, mode: str, fallback: str = ""):
        super().__init__()
        for name, child in graph.named_children():
            if hasattr(self, name):
                raise LotteryError(f"a submodule named {name!r} clashes with LaneNet's own attribute; rename it")
            self.add_module(name, child)
        for name, value in graph._parameters.items():
            self.register_parameter(name, value)
        for name, value in graph._buffers.items():
            self.register_buffer(name, value)
        # The traced (or template) module shares these submodules; kept outside the module tree so
        # that names are the models' own ("fc1.weight", not "graph.fc1.weight").
        self.__dict__["_graph"] = graph
        self.lanes, self.mode, self.fallback = lanes, mode, fallback

    @classmethod
    def from_models(cls, models: Sequence[nn.Module], mode: str = "auto") -> "LaneNet":
        """Stack `models` (same architecture, dtype, device) into lanes; the models themselves are not changed.

        mode: "packed" (fx + batched layers), "vmap", or "auto": packed when fx can trace the model into
        supported layers, else vmap (the reason is kept in `.fallback`).
        """
        models = list(models)
        if mode not in MODES:
            raise LotteryError(f"unknown lane mode {mode!r}; choose one of: {', '.join(MODES)}")
        _check_same_architecture(models)
        if mode != "vmap":
            try:
                return cls(_pack(models), len(models), "packed")
            except LotteryError as error:
                if mode == "packed":
                    raise
                reason = str(error)
        else:
            reason = ""
        template = copy.deepcopy(models[0])
        _stack_into(template, models)
        return cls(template, len(models), "vmap", fallback=reason)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [K, B, ...], lane k's batch at x[k]; returns [K, B, ...] (logits per lane)."""
        if x.shape[0] != self.lanes:
            raise LotteryError(f"input has {x.shape[0]} lanes in its first dimension, the network {self.lanes}")
        if self.mode == "vmap":
            return self._vmapped(x)
        out = self._graph(x)
        return out if out.dim() == 3 and out.shape[0] == self.lanes else _to_lanes(out, self.lanes)

    def _vmapped(self, x: torch.Tensor) -> torch.Tensor:
        params, buffers = dict(self._graph.named_parameters()), dict(self._graph.named_buffers())
        call = lambda p, b, xs: torch.func.functional_call(self._graph, (p, b), (xs,))  # noqa: E731
        return torch.func.vmap(call, randomness="different")(params, buffers, x)

    # -- lanes in and out ---------------------------------------------------------------------------
    def lane_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Lane k as a state_dict of the original model (a copy)."""
        if not 0 <= k < self.lanes:
            raise LotteryError(f"lane {k} does not exist; this network has lanes 0..{self.lanes - 1}")
        return {name: value[k].clone() for name, value in self.state_dict().items()}

    def unstack(self) -> list[dict[str, torch.Tensor]]:
        """One state_dict per lane, loadable into the original models (bit-exact copies)."""
        return [self.lane_state_dict(k) for k in range(self.lanes)]

    @torch.no_grad()
    def load_lane(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        """Overwrite lane k with a state_dict of one model (e.g. its rewind point)."""
        own = self.state_dict()
        missing, unexpected = set(own) - set(state), set(state) - set(own)
        if missing or unexpected:
            raise LotteryError(f"the state does not fit lane {k}: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for name, value in own.items():
            value[k].copy_(state[name])

    def extra_repr(self) -> str:
        return f"lanes={self.lanes}, mode={self.mode!r}"


def stack_masks(masks: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """K per-lane mask dicts (`MaskManager.masks` of each run) -> the lane network's masks ([K, ...] per name)."""
    if not masks:
        raise LotteryError("stack_masks needs one mask dict per lane, got none")
    names = list(masks[0])
    for k, m in enumerate(masks):
        if list(m) != names:
            raise LotteryError(f"lane {k} masks {sorted(m)} but lane 0 masks {sorted(names)}: lanes share prunable tensors")
    return {n: torch.stack([m[n].bool() for m in masks]) for n in names}


def unstack_masks(masks: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Lane k's masks out of the lane network's masks."""
    return {n: m[k].clone() for n, m in masks.items()}


def lane_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over lanes of each lane's mean cross-entropy, per-lane losses [K]).

    The sum makes lane k's gradient exactly its solo gradient: the lanes share no parameter.
    """
    lanes, batch = target.shape
    per_lane = F.cross_entropy(logits.reshape(lanes * batch, -1), target.reshape(-1), reduction="none")
    per_lane = per_lane.view(lanes, batch).mean(1)
    return per_lane.sum(), per_lane.detach()
