"""Model registry: `create_model(name, num_classes, input_shape)` builds any registered model.

Register a factory with `@register("name")`; it is called as factory(num_classes, input_shape)
where input_shape is (channels, height, width). Names of the form "torchvision:<name>" build
torchvision models.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from lottery.errors import LotteryError

Factory = Callable[[int, tuple[int, int, int]], nn.Module]
MODELS: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        MODELS[name] = factory
        return factory

    return add


def create_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """Build model `name` for `num_classes` classes and inputs of shape (C, H, W)."""
    if name.startswith("torchvision:"):
        from lottery.models.torchvision_models import create_torchvision_model

        return create_torchvision_model(name.split(":", 1)[1], num_classes, input_shape)
    check_name(name)
    return MODELS[name](num_classes, tuple(input_shape))


def check_name(name: str) -> None:
    """Raise a LotteryError listing the valid names unless `name` can be built."""
    if name not in MODELS and not name.startswith("torchvision:"):
        raise LotteryError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}, "
                           "or 'torchvision:<name>' for a torchvision model")


def output_layer(model: nn.Module) -> str:
    """Name of the output layer's weight: the last Linear (or Conv) in the module tree."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = f"{name}.weight"
    if last is None:
        raise LotteryError(f"{type(model).__name__} has no Linear or Conv2d layer to call the output layer")
    return last


from lottery.models import conv, lenet, resnet, vgg  # noqa: E402,F401  (registers their models)
