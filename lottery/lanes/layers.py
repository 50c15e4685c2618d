"""The layers of a packed lane network: K Linear, Conv2d or BatchNorm2d layers as one batched layer.

Layouts: a lane-first tensor is [K, B, ...]; a feature map is [B, K*C, H, W] (lane k's channels are
k*C..(k+1)*C-1), the layout a grouped convolution reads and writes. `lottery.lanes.trace` puts these
layers into a traced copy of the model.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.masks import register_prunable


def to_channels(x: torch.Tensor, lanes: int) -> torch.Tensor:
    """[K, B, C, H, W] -> [B, K*C, H, W]; a feature map passes through."""
    if x.dim() == 5:
        return x.transpose(0, 1).reshape(x.shape[1], lanes * x.shape[2], *x.shape[3:])
    return x


def to_lanes(x: torch.Tensor, lanes: int) -> torch.Tensor:
    """Any layout -> [K, B, F] (flattened features per lane)."""
    if x.dim() == 3:  # already [K, B, F]
        return x
    if x.dim() == 5:  # [K, B, C, H, W], lane-first input
        return x.flatten(2)
    return x.reshape(x.shape[0], lanes, -1).transpose(0, 1)  # [B, K*C, ...] or [B, K*F]


class LaneFlatten(nn.Module):
    """`flatten(1)` of each lane's tensor, giving [K, B, F] whatever the layout it reads."""

    def __init__(self, lanes: int):
        super().__init__()
        self.lanes = lanes

    def forward(self, x):
        return to_lanes(x, self.lanes)


class LaneInput(nn.Module):
    """Puts the lane-first input into the feature-map layout when layers other than conv/flatten/linear read it."""

    def __init__(self, lanes: int):
        super().__init__()
        self.lanes = lanes

    def forward(self, x):
        return to_channels(x, self.lanes) if x.dim() == 5 else x


SPLIT_MACS = 1 << 21  # multiply-adds per lane from which a lane's own `mm` beats an idle thread (_batched_lanes)


def _batched_lanes(lanes: int, device: torch.device, macs: int) -> int:
    """How many of the K lanes one batched product (bmm) computes; each lane beyond them gets its run's own `mm`.

    On the CPU a batched product hands whole lanes to the threads, so with K not a multiple of the T threads the last
    lanes run while threads idle: the study's first layer, 5 lanes on 2 threads, takes 3.39 ms in one baddbmm and
    2.88 as a baddbmm of 4 and the fifth lane's own addmm over both threads (its weight gradient 3.32 and 3.10; a
    whole LeNet step 0.92-0.96x; docs/speed.md). All K go in the one product on CUDA, for K <= T or a multiple of T,
    under autocast (the run's own product casts its inputs; a product into a buffer does not), and for products of
    fewer than SPLIT_MACS multiply-adds per lane, where the extra calls cost more than the idle thread (LeNet on the
    8x8 digits, 1-2M per product: a step 1.16x when split)."""
    if torch.compiler.is_compiling() or device.type != "cpu":  # traced: no Python-side decision in the graph
        return lanes
    threads = torch.get_num_threads()
    if lanes <= threads or macs < SPLIT_MACS or torch.is_autocast_enabled(device.type):
        return lanes
    return lanes - lanes % threads


def _lane_products(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a_k @ b_k (+ bias_k) of every lane k, [K, n, m]: `bmm` over `_batched_lanes` of them, the run's `mm`
    (`addmm`) for each of the rest, written in place."""
    lanes = a.shape[0]
    batched = _batched_lanes(lanes, a.device, a.shape[1] * a.shape[2] * b.shape[2])
    if batched == lanes:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)
    out = a.new_empty((lanes, a.shape[1], b.shape[2]))
    if bias is None:
        torch.bmm(a[:batched], b[:batched], out=out[:batched])
        for k in range(batched, lanes):
            torch.mm(a[k], b[k], out=out[k])
    else:
        torch.baddbmm(bias[:batched].unsqueeze(1), a[:batched], b[:batched], out=out[:batched])
        for k in range(batched, lanes):
            torch.addmm(bias[k], a[k], b[k], out=out[k])
    return out


_BMM_IS_MM: dict[tuple, bool] = {}  # (shapes, strides, dtype, device, threads) -> whether one bmm gives the K mm's bits


def _weight_grads(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each lane's weight gradient grad_k^T @ x_k, [K, out, in]: the bits of nn.Linear's `mm` in its run alone.

    One `bmm` over the lanes is up to 1.7x faster than K `mm` calls (the study's first layer on 2 CPU threads,
    docs/speed.md) and gives their bits for most shapes, not all: on the CPU's BLAS the 10-row gradient of an output
    layer rounds apart. Which one a shape gets is decided once per shape (and strides), dtype, device and thread count,
    by both on random inputs of that layout (a BLAS's order of summation depends on the shapes, not on the values).
    The bmm takes `_batched_lanes` of the lanes, the rest their own `mm`."""
    if torch.compiler.is_compiling():  # traced: no Python-side decision in the graph (shapes may be symbolic)
        return _per_lane_weight_grads(grad, x)
    batched = _batched_lanes(grad.shape[0], grad.device, grad.shape[1] * grad.shape[2] * x.shape[2])
    key = (grad.shape, grad.stride(), x.shape, x.stride(), grad.dtype, grad.device, torch.get_num_threads())
    if key not in _BMM_IS_MM:
        g = torch.Generator(grad.device).manual_seed(0)  # its own generator: the training's draws stay the same
        probe_grad, probe_x = (torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).normal_(
            generator=g) for t in (grad, x))
        _BMM_IS_MM[key] = torch.equal(torch.bmm(probe_grad[:batched].transpose(1, 2), probe_x[:batched]),
                                      _per_lane_weight_grads(probe_grad[:batched], probe_x[:batched]))
    if not _BMM_IS_MM[key]:
        return _per_lane_weight_grads(grad, x)
    return _lane_products(grad.transpose(1, 2), x)


def _per_lane_weight_grads(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # written in place: a stack of the K products would copy the gradient once more
    out = grad.new_empty((grad.shape[0], grad.shape[2], x.shape[2]))
    for g, lane, o in zip(grad, x, out):
        torch.mm(g.t(), lane, out=o)
    return out


class _LaneProduct(torch.autograd.Function):
    """x @ W^T (+ b) of every lane in one batched product, with the backward of nn.Linear: each lane's weight gradient
    grad^T @ x, straight into W's [K, out, in] layout (`_weight_grads`). Autograd's own backward of
    baddbmm(b, x, W^T) computes x^T @ grad and copies it transposed, every weight at every step, and rounds it
    differently from a run alone's `mm`; with this one a lane's gradients are its run's, bit for bit (docs/speed.md)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _lane_products(x, weight.transpose(1, 2), bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        x, weight = x.to(grad.dtype), weight.to(grad.dtype)  # under autocast the product ran in a lower precision
        grad_x = _lane_products(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = _weight_grads(grad, x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class LaneLinear(nn.Module):
    """K Linear layers in one batched product: weight [K, out, in], bias [K, out]; input/output [K, B, features]."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.lanes = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers])) if layers[0].bias is not None else None

    def forward(self, x):
        return _LaneProduct.apply(to_lanes(x, self.lanes), self.weight, self.bias)


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
        x = to_channels(x, self.lanes)
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
        x = to_channels(x, self.lanes)
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


register_prunable(LaneLinear, LaneConv2d)  # a MaskManager over a lane network masks their weights by default
