"""Lanes: K runs trained as one stacked network give each run's own results."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lottery import LotteryError, MaskManager
from lottery.lanes.layers import LaneBatchNorm2d
from lottery.lanes.net import LaneNet, lane_loss, stack_masks, unstack_masks
from lottery.models import MODELS, create_model
from lottery.training.optimizers import make_optimizer
from lottery.core.schema import OptimConfig

SHAPES = {"lenet_300_100": (1, 12, 12), "conv2": (3, 8, 8), "conv4": (3, 8, 8), "conv6": (3, 8, 8),
          "resnet20": (3, 8, 8), "vgg11": (3, 32, 32), "vgg16": (3, 32, 32)}


def _models(name: str, lanes: int, shape=None) -> list[nn.Module]:
    torch.manual_seed(0)
    return [create_model(name, 10, shape or SHAPES[name]) for _ in range(lanes)]


@pytest.mark.parametrize("name, mode", [(n, "packed") for n in sorted(SHAPES)] + [(n, "vmap") for n in ("conv2", "resnet20")])
def test_each_lane_computes_its_own_model(name, mode):
    assert name in MODELS
    models = _models(name, 2)
    net = LaneNet.from_models(models, mode=mode)
    assert net.mode == mode
    x = torch.randn(2, 3, *SHAPES[name])
    for m in models:
        m.eval()
    net.eval()  # running statistics: the output does not depend on the other samples
    torch.testing.assert_close(net(x), torch.stack([m(x[k]) for k, m in enumerate(models)]), rtol=1e-4, atol=1e-5)


def test_unstack_is_bit_exact_and_keeps_the_models_names():
    models = _models("resnet20", 3)
    net = LaneNet.from_models(models)
    assert [n for n, _ in net.named_parameters()] == [n for n, _ in models[0].named_parameters()]
    for k, state in enumerate(net.unstack()):
        reference = models[k].state_dict()
        assert list(state) == list(reference)
        assert all(torch.equal(state[n], reference[n]) and state[n].dtype == reference[n].dtype for n in state)
    net.load_lane(1, models[2].state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.lane_state_dict(1).values(), models[2].state_dict().values()))


def test_batchnorm_keeps_statistics_per_lane():
    bns = [nn.BatchNorm2d(4), nn.BatchNorm2d(4)]
    lane = LaneBatchNorm2d(bns)
    x = torch.randn(2, 8, 4, 5, 5)
    x[1] = x[1] * 3 + 2  # lane 1 sees other data
    out = lane(x)  # [B, K*C, H, W]
    for k, bn in enumerate(bns):
        torch.testing.assert_close(out[:, 4 * k:4 * k + 4], bn(x[k]))
        torch.testing.assert_close(lane.running_mean[k], bn.running_mean)
        torch.testing.assert_close(lane.running_var[k], bn.running_var)
    assert lane.num_batches_tracked.tolist() == [1, 1]
    assert not torch.allclose(lane.running_mean[0], lane.running_mean[1])


def test_masks_apply_to_every_lane_in_one_manager():
    models = _models("conv2", 3)
    own = [MaskManager(m, rates={"classifier.5.weight": 0.5}) for m in models]
    for m in own:
        m.prune(0.6, "layer_magnitude")
    net = LaneNet.from_models(models)
    masks = MaskManager(net, rates={"classifier.5.weight": 0.5})  # the models' own names and patterns
    assert masks.names == own[0].names
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # a "step" that revives pruned weights
    masks.set_masks(stack_masks([m.masks for m in own]))
    for k, m in enumerate(own):
        state = net.lane_state_dict(k)
        for n, mask in m.masks.items():
            assert torch.equal(unstack_masks(masks.masks, k)[n], mask)
            assert (state[n][~mask] == 0).all() and (state[n][mask] != 0).all()
    with pytest.raises(LotteryError, match="prune each run"):
        masks.prune(0.2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_one_optimizer_over_stacked_parameters_is_one_per_lane(optimizer):
    cfg = OptimConfig(optimizer=optimizer, lr=0.05, momentum=0.9, nesterov=optimizer == "sgd", weight_decay=1e-3)
    models = _models("lenet_300_100", 3, (1, 4, 4))
    net = LaneNet.from_models(models)
    stacked, own = make_optimizer(net.parameters(), cfg), [make_optimizer(m.parameters(), cfg) for m in models]
    assert stacked.defaults.get("fused")  # make_optimizer's fused kernels, as training uses them
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        for p in net.parameters():
            p.grad = torch.randn(p.shape, generator=g)
        for k, m in enumerate(models):
            for n, p in m.named_parameters():
                p.grad = net.get_parameter(n).grad[k].clone()
        stacked.step()
        for o in own:
            o.step()
    for k, m in enumerate(models):
        for n, p in m.named_parameters():
            torch.testing.assert_close(net.get_parameter(n)[k], p, rtol=1e-6, atol=1e-7)


def test_lane_loss_gives_each_lane_its_solo_gradient_bit_for_bit():
    """LaneLinear's backward is nn.Linear's per lane (lottery.lanes.layers._LaneProduct): every gradient equals the run's."""
    models = _models("lenet_300_100", 3, (1, 8, 8))
    net = LaneNet.from_models(models)
    x, y = torch.randn(3, 60, 1, 8, 8), torch.randint(0, 10, (3, 60))
    lane_loss(net(x), y)[0].backward()
    for k, m in enumerate(models):
        F.cross_entropy(m(x[k]), y[k]).backward()
        for name, p in m.named_parameters():
            assert torch.equal(net.get_parameter(name).grad[k], p.grad), (k, name)


@pytest.mark.parametrize("batch, fan_in, fan_out", [(128, 784, 300), (128, 100, 10), (60, 64, 300), (7, 5, 3)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_weight_gradients_are_each_runs_mm_whichever_product_computes_them(batch, fan_in, fan_out, contiguous):
    """One bmm where it gives the K mm's bits, K mm where it does not (decided once per layout, on random inputs of
    its own generator): either way lane k's weight gradient is nn.Linear's grad^T @ x of its run alone."""
    from lottery.lanes.layers import _weight_grads

    lanes = 3
    grad = torch.randn(lanes, batch, fan_out)
    x = torch.randn(lanes, batch, fan_in) if contiguous else torch.randn(batch, lanes, fan_in).transpose(0, 1)
    state = torch.get_rng_state()
    for _ in range(2):  # the first call decides, the second uses the decision
        got = _weight_grads(grad, x)
        assert torch.equal(torch.get_rng_state(), state)  # the decision draws from a generator of its own
        for k in range(lanes):
            assert torch.equal(got[k], grad[k].clone().t().mm(x[k].contiguous())), k


@pytest.mark.parametrize("lanes", [3, 5])
def test_lanes_beyond_a_multiple_of_the_threads_get_their_runs_own_products(lanes):
    """On 2 CPU threads, 5 lanes of the study's first layer: 4 in one bmm, the fifth by its run's own addmm/mm
    (lottery.lanes.layers._batched_lanes); forward and every gradient still each run's own, bit for bit."""
    from lottery.lanes import layers

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert layers._batched_lanes(lanes, torch.device("cpu"), 128 * 784 * 300) == lanes - lanes % 2
        assert layers._batched_lanes(lanes, torch.device("cpu"), 60 * 64 * 300) == lanes  # a small product: all
        models = _models("lenet_300_100", lanes, (1, 28, 28))
        net = LaneNet.from_models(models)
        x, y = torch.randn(lanes, 128, 1, 28, 28), torch.randint(0, 10, (lanes, 128))
        logits = net(x)
        lane_loss(logits, y)[0].backward()
        for k, m in enumerate(models):
            alone = m(x[k])
            assert torch.equal(logits[k], alone), k
            F.cross_entropy(alone, y[k]).backward()
            for name, p in m.named_parameters():
                assert torch.equal(net.get_parameter(name).grad[k], p.grad), (k, name)
    finally:
        torch.set_num_threads(threads)


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_untraceable_models_fall_back_to_vmap():
    models = [_Branchy(), _Branchy()]
    net = LaneNet.from_models(models)
    assert net.mode == "vmap" and "fx" in net.fallback
    with pytest.raises(LotteryError, match="cannot trace"):
        LaneNet.from_models(models, mode="packed")


def test_bad_input():
    with pytest.raises(LotteryError, match="K=0"):
        LaneNet.from_models([])
    with pytest.raises(LotteryError, match="architecture"):
        LaneNet.from_models([create_model("lenet_300_100", 10, (1, 8, 8)), create_model("conv2", 10, (1, 8, 8))])
    with pytest.raises(LotteryError, match="fc3"):  # same class, other shapes
        LaneNet.from_models([create_model("lenet_300_100", 10, (1, 8, 8)), create_model("lenet_300_100", 5, (1, 8, 8))])
    with pytest.raises(LotteryError, match="lane mode"):
        LaneNet.from_models(_models("lenet_300_100", 2, (1, 4, 4)), mode="fast")
    with pytest.raises(LotteryError, match="3 lanes"):
        LaneNet.from_models(_models("lenet_300_100", 2, (1, 4, 4)))(torch.randn(3, 2, 1, 4, 4))
    with pytest.raises(LotteryError, match="lane 5"):
        LaneNet.from_models(_models("lenet_300_100", 2, (1, 4, 4))).lane_state_dict(5)


# -- training as lanes vs one by one, with the real Trainer -----------------------------------------------------------




def test_gradient_clipping_per_lane_is_torchs_clipping_of_each_run():
    from lottery.lanes.net import clip_lane_grad_norm_

    torch.manual_seed(0)
    runs = [[torch.randn(4, 3) * s, torch.randn(3) * s] for s in (0.1, 1.0, 10.0)]
    stacked = [torch.stack([r[i] for r in runs]).requires_grad_() for i in range(2)]
    for p in stacked:
        p.grad = p.detach().clone()
    norms = clip_lane_grad_norm_(stacked, 1.0, lanes=3)
    for k, run in enumerate(runs):
        params = [t.clone().requires_grad_() for t in run]
        for p in params:
            p.grad = p.detach().clone()
        torch.testing.assert_close(norms[k], torch.nn.utils.clip_grad_norm_(params, 1.0))
        for p, s in zip(params, stacked):
            torch.testing.assert_close(s.grad[k], p.grad)
