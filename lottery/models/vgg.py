"""CIFAR VGG-11/13/16/19 with batch norm, as in OpenLTH and Frankle et al. (2020).

VGG (Simonyan & Zisserman 2015, Table 1, configurations A, B, D, E) adapted to 32x32 inputs:
3x3 conv + BN + ReLU stacks with 2x2 max-pooling between stages, no pooling after the last stage,
global average pooling, then a single linear layer 512 -> classes instead of VGG's three FC layers.
Parameters on CIFAR-10: VGG-11 9,231,114; VGG-13 9,416,010; VGG-16 14,728,266; VGG-19 20,040,522.
"""
from __future__ import annotations

import functools

from torch import nn

from lottery.models.registry import kaiming_normal_init, register

# Filters per conv layer; "M" is a 2x2 max-pool. OpenLTH's plans (VGG's A, B, D, E minus the last pool).
PLANS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class CifarVGG(nn.Module):
    """VGG-`depth` with batch norm for small images."""

    def __init__(self, depth: int, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for spec in PLANS[depth]:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            # The conv bias is redundant before BN but kept, as in OpenLTH, so parameter counts
            # match the published ones; biases are not pruned, so it does not change sparsity.
            layers += [nn.Conv2d(channels, spec, kernel_size=3, padding=1), nn.BatchNorm2d(spec), nn.ReLU()]
            channels = spec
        self.features = nn.Sequential(*layers)
        # OpenLTH averages the final 2x2 map of a 32x32 input; adaptive pooling is the same there and
        # also accepts other sizes.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        kaiming_normal_init(self)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


for _depth in PLANS:
    register(f"vgg{_depth}", summary=f"CIFAR VGG-{_depth} with batch norm (Simonyan & Zisserman 2015)")(functools.partial(CifarVGG, _depth))  # (num_classes, input_shape) -> model
