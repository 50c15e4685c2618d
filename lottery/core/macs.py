"""What a forward pass costs: multiply-accumulates of a model's Linear and Conv2d layers on an input."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn


def forward_outputs(model: nn.Module, input_shape: Sequence[int], modules: list[nn.Module]) -> list[tuple[nn.Module, torch.Tensor]]:
    """(module, output) of each of `modules` in one eval-mode forward of a single zero example."""
    seen = []
    hooks = [m.register_forward_hook(lambda module, inputs, output: seen.append((module, output))) for m in modules]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return seen


def step_macs(model: nn.Module, input_shape: Sequence[int], batch_size: int) -> int:
    """Multiply-accumulates of one forward pass of a batch through `model`'s Linear and Conv2d layers."""
    total = 0
    for module, output in forward_outputs(model, input_shape, [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]):
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        else:
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return total * batch_size


def layer_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Multiply-accumulates of one example's forward pass through each Linear and Conv2d layer, by the name of its
    weight (as `named_parameters` gives it)."""
    names = {m: f"{n}.weight" if n else "weight" for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    out: dict[str, int] = {}
    for module, output in forward_outputs(model, input_shape, list(names)):
        per_output = module.in_features if isinstance(module, nn.Linear) else (
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1])
        out[names[module]] = out.get(names[module], 0) + output.numel() * per_output
    return out


def training_cost(macs: Mapping[str, int], segments: Sequence[tuple[int, Mapping[str, float]]], end_step: int,
                  full_steps: int, dense_gradient_steps: int = 0, extra_iterations: int = 0) -> float:
    """A training's multiply-accumulates as a multiple of a dense training of `full_steps` iterations (dense = 1x).

    Each iteration costs a forward and a backward pass: 3 x the layers' MACs scaled by their densities (a sparse
    layer costs its density; layers without a mask are dense), as RigL accounts FLOPs (Evci et al. 2020, Appendix H).
    segments: (first iteration, density per masked tensor) in order, each lasting to the next one, the last to
    `end_step`. dense_gradient_steps: iterations that take the gradient of every weight (RigL's updates, every step
    of edge-popup, whose scores need it): their weight gradient is dense. extra_iterations: iterations beyond the
    schedule's steps (RigL's updates taken as iterations of their own), a forward and backward each at the last
    densities.
    """
    dense = 3 * sum(macs.values())
    if not dense or full_steps < 1:
        return 0.0
    total, last = 0.0, None
    bounds = [s for s, _ in segments[1:]] + [end_step]
    for (start, density), stop in zip(segments, bounds):
        total += max(0, stop - start) * sum(3 * m * density.get(n, 1.0) for n, m in macs.items())
        last = density
    if dense_gradient_steps and last is not None:
        total += dense_gradient_steps * sum(m * (1 - last.get(n, 1.0)) for n, m in macs.items())
    if extra_iterations and last is not None:
        total += extra_iterations * sum(3 * m * last.get(n, 1.0) for n, m in macs.items())
    return total / (dense * full_steps)
