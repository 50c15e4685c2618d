import pytest
import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.mode_connectivity import (
    alphas,
    error_barrier,
    error_path,
    interpolate,
)


def _xor(n=256, seed=0):
    """Four Gaussian blobs labelled by XOR of their quadrant: no linear model separates them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g) * 0.25 + torch.tensor([[1.0, 1.0]]) * torch.randint(0, 2, (n, 2), generator=g) * 2 - 1
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    return x, y


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _train(seed, steps=300):
    model, (x, y) = _net(seed), _xor()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _error(model):
    x, y = _xor(seed=1)
    with torch.no_grad():
        return (model(x).argmax(1) != y).float().mean().item()


def test_interpolate_ends_are_the_inputs_bit_for_bit():
    a, b = _net(0).state_dict(), _net(1).state_dict()
    a["0.bias"][0] = -0.0  # arithmetic would turn it into +0.0
    for k, v in interpolate(a, b, 0.0).items():
        assert torch.equal(v, a[k]) and v.dtype == a[k].dtype
    assert torch.equal(torch.signbit(interpolate(a, b, 0.0)["0.bias"]), torch.signbit(a["0.bias"]))
    for k, v in interpolate(a, b, 1.0).items():
        if v.is_floating_point():
            assert torch.equal(v, b[k])


def test_interpolate_midpoint_and_integer_buffers_from_the_first():
    a, b = _net(0).state_dict(), _net(1).state_dict()
    b["1.num_batches_tracked"] += 7
    mid = interpolate(a, b, 0.5)
    torch.testing.assert_close(mid["0.weight"], (a["0.weight"] + b["0.weight"]) / 2)
    assert torch.equal(mid["1.num_batches_tracked"], a["1.num_batches_tracked"])
    assert mid["1.num_batches_tracked"].dtype == torch.long


def test_interpolate_refuses_states_of_different_networks():
    with pytest.raises(LotteryError, match="different networks"):
        interpolate(_net(0).state_dict(), nn.Linear(2, 2).state_dict(), 0.5)


def test_identical_networks_have_zero_barrier():
    model = _train(0, steps=50)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = error_path(model, state, state, _error, points=5)
    assert error_barrier(path) == 0.0


def test_networks_trained_from_different_seeds_have_a_barrier_and_the_model_is_restored():
    a, b = _train(0).state_dict(), _train(3).state_dict()
    model = _net(7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = error_path(model, a, b, _error, points=11)
    assert [alpha for alpha, _ in path] == alphas(11)
    assert path[0][1] < 0.05 and path[-1][1] < 0.05  # both ends solve the task
    assert error_barrier(path) > 0.1
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_reset_bn_hook_runs_at_every_point():
    model, seen = _net(0), []
    state = model.state_dict()
    error_path(model, state, state, lambda m: 0.0, points=4, reset_bn=lambda m: seen.append(m))
    assert len(seen) == 4


def test_barrier_is_max_minus_mean_of_ends():
    assert error_barrier([(0.0, 0.1), (0.5, 0.6), (1.0, 0.3)]) == pytest.approx(0.4)
    assert error_barrier([(1.0, 0.3), (0.0, 0.1), (0.5, 0.2)]) == pytest.approx(0.1)  # order-insensitive
    with pytest.raises(LotteryError):
        error_barrier([(0.0, 0.1)])
    with pytest.raises(LotteryError):
        alphas(1)
