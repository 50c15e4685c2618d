"""LeNet-300-100, the fully connected network of Frankle & Carbin (2019), Figure 2; and four times as wide,
LeNet-1200-400, for strong tickets, which approach the dense network's accuracy only in wide networks (Ramanujan et
al. 2020)."""
from __future__ import annotations

import math

from torch import nn

from lottery.models.registry import register


class LeNet300100(nn.Module):
    """Two hidden layers of 300 and 100 ReLU units (or `hidden`); 266,610 parameters on 28x28 MNIST."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], hidden: tuple[int, int] = (300, 100)):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)
        self.relu = nn.ReLU()
        # Frankle & Carbin (2019), Figure 2: Gaussian Glorot initialisation, biases at zero as in the
        # paper's TensorFlow code (which draws a truncated normal of the same variance).
        for layer in (self.fc1, self.fc2, self.fc3):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


@register("lenet_300_100", summary="LeNet-300-100: fully connected, 300 and 100 hidden units (Frankle & Carbin 2019)")
def lenet_300_100(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return LeNet300100(num_classes, input_shape)


@register("lenet_1200_400", summary="LeNet-300-100 four times as wide, 1200 and 400 hidden units (strong tickets: "
                                    "Ramanujan et al. 2020)")
def lenet_1200_400(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    return LeNet300100(num_classes, input_shape, hidden=(1200, 400))
