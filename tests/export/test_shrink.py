"""Shrinking removes dead units and never changes the logits (eval mode)."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.export import save_shrunk, shrink


@pytest.mark.parametrize("name", ["lenet_300_100", "conv4", "resnet20", "torchvision:resnet18"])
def test_registered_models_lose_units_not_logits(pruned, name):
    model, masks, x = pruned(name, 0.1 if name == "lenet_300_100" else 0.2)
    small, report = shrink(model, x[:2], masks)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x))
    assert report.params_after < 0.8 * report.params_before
    assert sum(p.numel() for p in small.parameters()) == report.params_after
    lost = {layer: total - kept for layer, (kept, total) in report.units.items()}
    assert sum(lost.values()) > 0 and list(lost.values())[-1] == 0  # the logits keep every class
    assert "units" in str(report)


def test_a_neuron_without_inputs_becomes_a_bias_of_the_next_layer(randomize):
    model = randomize(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), seed=1)
    with torch.no_grad():
        model[0].weight[1] = 0  # neuron 1 outputs relu(bias), the same for every input
        model[0].bias[1] = 0.7
        model[2].weight[:, 2] = 0  # neuron 2 is read by no one
    x = torch.randn(6, 3)
    small, report = shrink(model, x)
    assert report.units == {"0": (2, 4), "2": (2, 2)}
    torch.testing.assert_close(small(x), model(x))


class PaddedConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        x = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_a_constant_channel_into_a_padded_conv_stays_unless_it_is_zero(randomize):
    model = randomize(PaddedConvs(), seed=2).eval()
    with torch.no_grad():
        model.conv1.weight[:2] = 0  # channels 0 and 1 are constant after BN and ReLU
        model.bn.bias[0], model.bn.running_mean[0] = 1.0, 0.0  # relu(1.0 * ...) > 0: a border pattern after padding
        model.bn.bias[1], model.bn.running_mean[1] = -5.0, 0.0  # relu(negative) = 0: nothing to fold
    x = torch.randn(3, 2, 8, 8)
    small, report = shrink(model, x)
    assert report.units["conv1"] == (3, 4)  # only channel 1 goes
    torch.testing.assert_close(small(x), model(x))


class Residual(nn.Module):
    """Two branches that share channels through `a + b`, with BatchNorm on both."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 6, 1, bias=False), nn.BatchNorm2d(6)
        self.b, self.bn_b = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.c = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.a(x)) + self.bn_b(self.b(x)))
        return self.fc(nn.functional.max_pool2d(self.c(y), 2).flatten(1))


def test_residual_channels_go_only_when_dead_in_every_branch(randomize):
    model = randomize(Residual(), seed=3).eval()
    with torch.no_grad():
        model.a.weight[[0, 1]] = 0  # channel 0: dead in a only, so it stays
        model.b.weight[[1, 2]] = 0  # channel 1: no input in either branch; channel 2: dead in b only
        model.c.weight[:, 1] = 0    # ... and no reader except the padded conv c, which ignores it
        model.fc.weight[:, 16 * 5:16 * 6] = 0  # channel 5 of c: read by no one
    x = torch.randn(2, 3, 8, 8)
    small, report = shrink(model, x)
    assert report.units["a"] == report.units["b"] == (5, 6) and report.units["c"] == (5, 6)
    assert small.bn_a.num_features == small.bn_b.num_features == 5 and small.fc.in_features == 5 * 16
    torch.testing.assert_close(small(x), model(x))


RUNNER = """
import sys
sys.modules["lottery"] = None  # torch alone must load and run the program
import torch
from safetensors.torch import load_file
io = load_file(sys.argv[2])
torch.testing.assert_close(torch.export.load(sys.argv[1]).module()(io["x"]), io["y"])
print("ok")
"""


def test_saved_program_runs_with_torch_alone_at_any_batch_size(pruned, tmp_path):
    from safetensors.torch import save_file

    model, masks, x = pruned("lenet_300_100", 0.2)
    path, report = save_shrunk(model, x, tmp_path / "r.pt2", masks, log=lambda *_: None)
    assert [p.name for p in tmp_path.iterdir()] == ["r.pt2"]
    batch = torch.randn(7, *(1, 28, 28))  # not the example's batch size
    with torch.no_grad():
        save_file({"x": batch, "y": model(batch)}, str(tmp_path / "io.safetensors"))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(tmp_path / "io.safetensors")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, groups=4)

    def forward(self, x):
        return self.conv(x).flatten(1)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)  # control flow on values: not traceable


@pytest.mark.parametrize("model, x, message", [
    (Depthwise(), torch.randn(2, 4, 5, 5), "Conv 'conv' has groups=4"),
    (Concat(), torch.randn(2, 4), "its graph has call_function cat"),
    (Branchy(), torch.randn(2, 4), "torch.fx cannot trace its forward"),
])
def test_graphs_it_cannot_follow_say_so_and_suggest_compact(tmp_path, model, x, message):
    with pytest.raises(LotteryError, match=f"cannot shrink {type(model).__name__}: .*{message}.*--format compact"):
        save_shrunk(model, x, tmp_path / "m.pt2")
    assert not any(tmp_path.iterdir())
