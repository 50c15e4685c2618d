import pytest
import torch
from torch import nn


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
