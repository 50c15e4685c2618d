"""CIFAR ResNets of depth 6n+2 (He et al. 2016, Section 4.2), as used by Frankle et al. (2020).

A 3x3 conv of 16 filters, three stages of n basic blocks with 16, 32 and 64 filters (times
`width`), stride 2 at the first block of stages 2 and 3, global average pooling and a linear layer.

Shortcuts that change shape are 1x1 conv + batch norm projections (He et al.'s option B), not the
parameter-free zero-padding of option A that He et al. used on CIFAR. We follow OpenLTH, the code of
Frankle et al. (2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis"), so parameter
counts (ResNet-20: 272,474, vs 269,722 with option A) and prunable layers match the lottery-ticket
results we reproduce; the projections are prunable convolutions there too.
"""
from __future__ import annotations

import functools

from torch import nn

from lottery.core.errors import LotteryError
from lottery.models.registry import kaiming_normal_init, register


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers around a residual connection (He et al. 2016, Figure 2)."""

    def __init__(self, f_in: int, f_out: int, stride: int):
        super().__init__()
        # No conv biases: the batch norm that follows has its own shift.
        self.conv1 = nn.Conv2d(f_in, f_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or f_in != f_out:
            self.shortcut = nn.Sequential(nn.Conv2d(f_in, f_out, kernel_size=1, stride=stride, bias=False),
                                          nn.BatchNorm2d(f_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; `blocks` is n, `width` multiplies the 16/32/64 filters."""

    def __init__(self, blocks: int, width: int, num_classes: int, input_shape: tuple[int, int, int]):
        super().__init__()
        filters = 16 * width
        self.conv = nn.Conv2d(input_shape[0], filters, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(filters)
        self.relu = nn.ReLU()
        layers = []
        for stage in range(3):
            out = 16 * width * 2 ** stage
            for index in range(blocks):
                layers.append(BasicBlock(filters, out, stride=2 if stage > 0 and index == 0 else 1))
                filters = out
        self.blocks = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(filters, num_classes)
        # (OpenLTH draws BN scales from U(0, 1) by default; we keep the standard 1, as in He et al. 2016.)
        kaiming_normal_init(self)

    def forward(self, x):
        out = self.blocks(self.relu(self.bn(self.conv(x))))
        return self.fc(self.pool(out).flatten(1))


def cifar_resnet(depth: int, width: int, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """ResNet-`depth` of He et al. (2016), Section 4.2; `depth` = 6n + 2 (20, 32, 44, 56, 110 ...)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise LotteryError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth!r}; "
                           "use 20, 32, 44, 56 or 110")
    if not isinstance(width, int) or width < 1:
        raise LotteryError(f"ResNet width multiplier must be a positive integer, got {width!r}; use 1 for "
                           "the 16/32/64 filters of He et al.")
    return CifarResNet((depth - 2) // 6, width, num_classes, input_shape)


for _depth in (20, 32, 44, 56, 110):
    register(f"resnet{_depth}", summary=f"CIFAR ResNet-{_depth}, 16-32-64 channels (He et al. 2016)")(functools.partial(cifar_resnet, _depth, 1))  # (num_classes, input_shape) -> model
