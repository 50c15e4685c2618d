"""The model registry: `create_model(name, num_classes, input_shape)` builds any registered model.

Register a factory with `@register("name")`; it is called as factory(num_classes, input_shape)
where input_shape is (channels, height, width). Names of the form "torchvision:<name>" build
torchvision models, and "hf:<hub name | folder | model type>" Hugging Face ones (lottery.models.hf), with
`options` (the config's model.options) for them.
"""
from __future__ import annotations

from typing import Callable, Mapping

from torch import nn

from lottery.core.errors import LotteryError, Registry

Factory = Callable[[int, tuple[int, int, int]], nn.Module]
TORCHVISION = "torchvision:"  # prefix of torchvision model names
HF = "hf:"  # prefix of Hugging Face model names (hub name, local folder or model type)
MODELS: Registry[Factory] = Registry("model", hint=", or 'torchvision:<name>' for a torchvision model, "
                                               "or 'hf:<hub name or folder>' for a Hugging Face model")
register = MODELS.register


def create_model(name: str, num_classes: int, input_shape: tuple[int, int, int], options: Mapping | None = None
                 ) -> nn.Module:
    """Build model `name` for `num_classes` classes and inputs of shape (C, H, W) (text: (3, L), lottery.data.text).

    options: model.options, for "hf:" models (weights, configuration fields); other models take none.
    """
    if name.startswith(HF):
        from lottery.models.hf import create_hf_model

        return create_hf_model(name.removeprefix(HF), num_classes, tuple(input_shape), **dict(options or {}))
    if options:
        raise LotteryError(f"model.options={dict(options)} apply to 'hf:' models only, not to {name!r}; remove them")
    if name.startswith(TORCHVISION):
        from lottery.models.torchvision_models import create_torchvision_model

        return create_torchvision_model(name.removeprefix(TORCHVISION), num_classes, input_shape)
    return MODELS.lookup(name)(num_classes, tuple(input_shape))


def check_name(name: str) -> None:
    """Raise a LotteryError listing the valid names unless `name` can be built."""
    if not name.startswith((TORCHVISION, HF)):
        MODELS.check(name)


def kaiming_normal_init(model: nn.Module) -> None:
    """He et al. (2015, "Delving deep into rectifiers") normal init of every Conv2d/Linear weight, as in
    OpenLTH's `kaiming_normal`; biases and batch norm keep PyTorch's defaults."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")


def output_layer(model: nn.Module) -> str:
    """Name of the output layer's weight: the last Linear (or Conv) in the module tree."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = f"{name}.weight"
    if last is None:
        raise LotteryError(f"{type(model).__name__} has no Linear or Conv2d layer to call the output layer")
    return last
