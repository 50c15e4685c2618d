"""SR-STE (Zhou et al. 2021) in a plain loop: exactly N of every M at every step, the mask the top-N magnitudes of
each group of the dense weights, the sparse-refined decay of a hand computation, the first and last layer dense, and
bad options (N >= M, M not dividing a layer's rows) one clear error."""
import pytest
import torch
from torch import nn

from lottery import MaskManager
from lottery.core.errors import LotteryError
from lottery.core.methods import Context
from lottery.sparsity.schedule import UpdateSchedule
from lottery.sparsity.srste import SRSTE, SRSTEOptions, check_srste, srste_densities
from tests.sparsity.steps import random_batch, updater_step

SCHEDULE = UpdateSchedule(end_step=0)


class _Net(nn.Module):
    """Linear and 1x1-convolution layers whose rows (16, 32, 24, 8 inputs) all divide into groups of 4 and 8."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.conv, self.out = nn.Linear(16, 32), nn.Linear(32, 24), nn.Conv2d(24, 8, 1), nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.fc2(torch.relu(self.fc1(x))))
        return self.out(self.conv(h[:, :, None, None]).flatten(1))


@pytest.mark.parametrize("n, m", [(2, 4), (4, 8), (1, 4)])
def test_n_of_every_m_at_every_step_from_the_dense_weights(n, m):
    model = _Net()
    masks = MaskManager(model)
    options = SRSTEOptions(n, m, dense_layers=("first",))
    density = srste_densities(masks, None, options)
    assert density == {"fc1.weight": 1.0, "fc2.weight": n / m, "conv.weight": n / m, "out.weight": n / m}
    updater = SRSTE(SCHEDULE, density, [0], options)
    first = model.get_parameter("fc1.weight").detach().clone()
    updater.start(masks)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for step in range(20):
        for name in ("fc2.weight", "conv.weight", "out.weight"):
            mask, dense = masks.masks[name], updater.shadow[name]
            groups = mask.reshape(-1, m)
            assert bool((groups.sum(1) == n).all()), (name, step)  # exactly N of every M
            top = dense.abs().reshape(-1, m).topk(n, dim=1).indices
            assert torch.equal(groups, torch.zeros_like(groups).scatter_(1, top, True)), (name, step)
            assert torch.equal(model.get_parameter(name).detach(), dense * mask)  # the forward's weights: W ⊙ mask
        updater_step(model, masks, opt, updater, step, *random_batch(g))
    assert masks.masks["fc1.weight"].all() and not torch.equal(model.get_parameter("fc1.weight"), first)  # dense, trained


def test_the_decay_of_the_pruned_weights_is_a_hand_computation():
    """Linear(4 -> 1), 2:4, no bias, SGD lr 0.5, λ_W = 0.1: L = 3 * (x · (W ⊙ m)), so dL/dW̃ = 3 x, and
    dL/dW = 3 x + λ_W (1 - m) ⊙ W (Zhou et al. 2021, Eq. 6); the next mask is the top two of |W - lr dL/dW|."""
    layer = nn.Linear(4, 1, bias=False)
    w = torch.tensor([[0.9, -0.1, 0.4, -0.6]])  # top two |w|: 0.9 and -0.6
    with torch.no_grad():
        layer.weight.copy_(w)
    masks = MaskManager(layer)
    updater = SRSTE(SCHEDULE, {"weight": 0.5}, [0], SRSTEOptions(decay=0.1, dense_layers=()))
    updater.start(masks)
    assert torch.equal(masks.masks["weight"], torch.tensor([[True, False, False, True]]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.tensor([1.0, 2.0, -0.5, 0.25])
    opt.zero_grad()
    (3 * layer(x)).sum().backward()
    updater.before_step(0, masks, opt)
    by_hand = torch.tensor([[3 * 1.0, 3 * 2.0 + 0.1 * -0.1, 3 * -0.5 + 0.1 * 0.4, 3 * 0.25]])
    torch.testing.assert_close(layer.weight.grad, by_hand, rtol=0, atol=1e-6)
    opt.step()
    updater.update(0, masks, opt)
    dense = w - 0.5 * by_hand  # [-0.6, -3.095, 1.13, -0.975]: the top two are now -3.095 and 1.13
    torch.testing.assert_close(updater.shadow["weight"], dense, rtol=0, atol=1e-6)
    assert torch.equal(masks.masks["weight"], torch.tensor([[False, True, True, False]]))
    torch.testing.assert_close(layer.weight.detach(), dense * masks.masks["weight"])


def _context(model):
    masks = MaskManager(model)
    return Context(model, masks, None, 100)


@pytest.mark.parametrize("make, message", [
    (lambda: SRSTEOptions(n=4, m=4), r"methods.srste.n=4, m=4: .* needs 0 < N < M"),
    (lambda: SRSTEOptions(n=0, m=4), r"needs 0 < N < M"),
    (lambda: SRSTEOptions(decay=-1.0), r"methods.srste.decay=-1.0 must be >= 0"),
    (lambda: check_srste(_context(nn.Sequential(nn.Linear(6, 10), nn.Linear(10, 3), nn.Linear(3, 2))), SRSTEOptions()),
     r"methods.srste.m=4 does not divide the 10 input weights of each row of 1.weight \(3, 10\)"),
    (lambda: check_srste(_context(nn.Sequential(nn.Linear(6, 3), nn.Linear(3, 2))), SRSTEOptions()),
     r"keeps every prunable tensor dense \(0.weight, 1.weight\)"),
    (lambda: SRSTE(SCHEDULE, {"a": 0.3}), r"SR-STE 2:4 keeps 0.5 of each pruned tensor"),
])
def test_bad_input_is_one_clear_error(make, message):
    with pytest.raises(LotteryError, match=message):
        make()
