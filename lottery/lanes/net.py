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
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lottery.core.errors import LotteryError
from lottery.lanes.layers import to_lanes
from lottery.lanes.trace import pack

MODES = ("auto", "packed", "vmap")


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

    # Read by MaskManager.prune: ranking the stacked weights would mix the lanes' magnitudes.
    refuses_pruning = ("a MaskManager over a LaneNet applies masks but does not prune: prune each run's own "
                       "MaskManager, then set_masks(stack_masks([...])) on this one")

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
                return cls(pack(models), len(models), "packed")
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
        return out if out.dim() == 3 and out.shape[0] == self.lanes else to_lanes(out, self.lanes)

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


@torch.no_grad()
def clip_lane_grad_norm_(params: Sequence[torch.Tensor], max_norm: float, lanes: int) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ per lane: lane k's gradients (slice [k] of each stacked parameter) scaled so
    that their norm is at most `max_norm`, with the same formula; returns the lanes' norms before clipping [K]."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(lanes)
    norms = torch.stack([g.reshape(lanes, -1).float().pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(lanes, *[1] * (g.dim() - 1)).to(g.dtype))
    return norms


def lane_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over lanes of each lane's mean cross-entropy, per-lane losses [K]).

    The sum makes lane k's gradient exactly its solo gradient: the lanes share no parameter.
    """
    lanes, batch = target.shape
    per_lane = F.cross_entropy(logits.reshape(lanes * batch, -1), target.reshape(-1), reduction="none")
    per_lane = per_lane.view(lanes, batch).mean(1)
    return per_lane.sum(), per_lane.detach()
