"""What a forward pass costs: multiply-accumulates of a model's Linear and Conv2d layers on an input."""
from __future__ import annotations

from typing import Sequence

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
