import pytest
import torch
from torch import nn

from lottery.core.masks import MaskManager
from lottery.models import create_model


class Tiny(nn.Module):
    """A toy model with hand-written weights, so expected masks can be written by hand."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 3)
        self.fc2 = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[0.1, -0.9], [0.5, 0.2], [-0.3, 0.8]]))
            self.fc2.weight.copy_(torch.tensor([[0.05, 0.6, -0.7], [0.4, -0.01, 0.3]]))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def tiny():
    return Tiny()


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))


@pytest.fixture
def mlp():
    """A factory of small seeded MLPs: `mlp(seed)`."""
    return _mlp


# Pruned models for the export tests: real architectures, nonzero biases and BatchNorm statistics
# (so dead units output nonzero constants), and some units killed outright.
SHAPES = {"lenet_300_100": (1, 28, 28), "conv2": (3, 32, 32), "conv4": (3, 32, 32), "resnet20": (3, 32, 32),
          "vgg11": (3, 32, 32), "torchvision:resnet18": (3, 32, 32)}


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Biases and BatchNorm statistics as after training (the defaults are zero and one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
            elif isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def _pruned(name: str, density: float = 0.036, dead: bool = True, seed: int = 0):
    """(model in eval mode, its MaskManager, a batch of inputs) for a registered model pruned to `density`."""
    torch.manual_seed(seed)
    shape = SHAPES[name]
    model = _randomize(create_model(name, 10, shape), seed)
    masks = MaskManager(model)
    masks.prune_to({n: density for n in masks.names}, "global_magnitude")
    if dead:  # whole units without inputs (every 4th) or without outputs (every 5th column), as IMP leaves them
        new = {n: m.clone() for n, m in masks.masks.items()}
        for n in masks.names[:-1]:
            new[n][::4] = False
            new[n][:, 1::5] = False
        masks.set_masks(new)
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(seed))
    return model.eval(), masks, x


@pytest.fixture
def pruned():
    """`pruned(name, density, dead=True, seed=0)` -> (model in eval mode, MaskManager, a batch of inputs)."""
    return _pruned


@pytest.fixture
def randomize():
    """`randomize(model, seed)`: biases and BatchNorm statistics as after training."""
    return _randomize


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch):
    """No test reaches for the Hugging Face hub: a name that is not on disk fails at once (lottery.core.hub)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def hf_assets(tmp_path_factory):
    """(tokenizer folder, tiny pretrained BERT folder, a scratch folder): made by the test, offline (tests/hf_helpers.py)."""
    from tests.hf_helpers import make_assets

    return make_assets(tmp_path_factory.mktemp("hf"))
