"""Units removed for real by Torch-Pruning's pruner, and the check that its graph means what the masks mean: the
operations it does not follow are named with their layer before anything trains (lottery.structured.removal)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.structured.removal import check_removal, remove_units
from lottery.structured.units import unit_groups


class Convs(nn.Module):
    """conv1 -> `between` -> conv2 -> pool -> fc."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 4)

    def between(self, x):
        return x

    def forward(self, x):
        x = self.between(torch.relu(self.conv1(x)))
        return self.fc(F.adaptive_avg_pool2d(torch.relu(self.conv2(x)), 1).flatten(1))


class Flip(Convs):
    def between(self, x):
        return torch.flip(x, dims=[1])  # reorders the channels: Torch-Pruning takes it for an element-wise op


class Shuffle(Convs):
    def between(self, x):  # ShuffleNet's channel shuffle
        b, c, h, w = x.shape
        return x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


class SpatialAttention(Convs):
    def between(self, x):  # CBAM's spatial gate: a mean over the channels, which a zero channel changes
        return x * torch.sigmoid(x.mean(1, keepdim=True))


def _check(model, shape=(3, 8, 8)):
    torch.manual_seed(0)
    check_removal(model, shape, unit_groups(model, shape, MaskManager(model).names))


@pytest.mark.parametrize("model, why", [
    (Flip(), "changes the logits .* where masking it does not"),
    (Shuffle(), "the model without one of its units fails to run"),
    (SpatialAttention(), "changes the logits"),
])
def test_operations_the_graph_does_not_follow_are_named_with_their_layer(model, why):
    with pytest.raises(LotteryError, match=f"does not follow layer 'conv1': .*{why}.*choose an unstructured one"):
        _check(model)


def test_models_it_follows_pass(structured_model):
    _check(Convs())
    for name in ("resnet20", "conv4_bn", "bert"):
        model, masks, shape = structured_model(name)
        check_removal(model, shape, unit_groups(model, shape, masks.names))


def test_removed_units_leave_the_logits_of_their_masks(structured_model):
    model, masks, shape = structured_model("resnet20")
    masks.prune(0.5, "channel_norm")
    groups = unit_groups(model, shape, masks.names)
    small = copy.deepcopy(model).eval()
    kept = remove_units(small, shape, groups, {g.root: g.removable(masks.masks) for g in groups if not g.fixed})
    assert kept["conv"] == (8, 16) and kept["blocks.6.conv1"] == (32, 64)
    assert small.blocks[0].conv1.in_channels == 8 and small.fc.in_features == 32 and small.bn.num_features == 8
    x = torch.randn(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model.eval()(x))
