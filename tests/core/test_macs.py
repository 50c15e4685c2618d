"""Multiply-accumulates of a forward pass, counted by hand for a Linear and a Conv2d network."""
from torch import nn

from lottery.core.macs import step_macs


def test_linear_layers_cost_in_times_out_per_example():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    assert step_macs(mlp, (1, 8, 8), batch_size=60) == 60 * (64 * 300 + 300 * 100 + 100 * 10)


def test_conv_layers_cost_their_kernel_per_output_pixel():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2))
    first = 8 * 32 * 32 * 3 * 3 * 3  # outputs x (in channels x kernel)
    second = 4 * 16 * 16 * (8 // 2) * 3 * 3  # grouped: each output reads in/groups channels
    assert step_macs(net, (3, 32, 32), batch_size=2) == 2 * (first + second)
    assert net.training  # measured in eval mode, the model's mode put back
