"""Any torchvision classification model by name, randomly initialised (never downloads weights)."""
from __future__ import annotations

import torchvision
from torch import nn

from lottery.core.errors import LotteryError


def create_torchvision_model(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """torchvision model `name` (e.g. "resnet18") with `num_classes` outputs and its own default init."""
    # module=torchvision.models lists the classification models only (not detection, video ...),
    # whose constructors all take num_classes.
    valid = torchvision.models.list_models(module=torchvision.models)
    if name not in valid:
        examples = ", ".join(n for n in ("resnet18", "resnet50", "vgg16_bn", "mobilenet_v2", "vit_b_16")
                             if n in valid)
        raise LotteryError(f"unknown torchvision model {name!r}; use a classification model such as "
                           f"{examples} (all {len(valid)}: torchvision.models.list_models(module=torchvision.models))")
    if input_shape[0] != 3:
        # Every torchvision classifier hard-codes 3 input channels in its first layer.
        raise LotteryError(f"torchvision model {name!r} needs 3-channel inputs, got input_shape {tuple(input_shape)}; "
                           "repeat grayscale images to 3 channels or use a lottery model such as 'lenet_300_100'")
    # weights=None: random init, no download; the lottery experiments start from scratch anyway.
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
