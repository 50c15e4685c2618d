"""Lanes: K runs trained as one stacked network give each run's own results."""
import copy

import pytorch_lightning as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lottery import LotteryError, MaskManager
from lottery.training.callbacks import MaskCallback
from lottery.data.base import TensorDataModule
from lottery.training.lane_data import LaneDataModule
from lottery.training.lane_module import LaneModule
from lottery.core.macs import step_macs
from lottery.lanes.count import choose_lanes
from lottery.lanes.layers import LaneBatchNorm2d
from lottery.lanes.net import LaneNet, lane_loss, stack_masks, unstack_masks
from lottery.models import MODELS, create_model
from lottery.training.module import ClassificationModule
from lottery.training.optimizers import Optim, make_optimizer

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
    cfg = Optim(optimizer=optimizer, lr=0.05, momentum=0.9, nesterov=optimizer == "sgd", weight_decay=1e-3)
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


def test_lane_loss_gives_each_lane_its_solo_gradient():
    models = _models("lenet_300_100", 2, (1, 4, 4))
    net = LaneNet.from_models(models)
    x, y = torch.randn(2, 5, 1, 4, 4), torch.randint(0, 10, (2, 5))
    lane_loss(net(x), y)[0].backward()
    for k, m in enumerate(models):
        F.cross_entropy(m(x[k]), y[k]).backward()
        torch.testing.assert_close(net.fc1.weight.grad[k], m.fc1.weight.grad)


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


def test_choose_lanes_picks_lanes_only_where_they_pay():
    lenet = step_macs(create_model("lenet_300_100", 10, (1, 28, 28)), (1, 28, 28), 60)
    assert lenet == 60 * (784 * 300 + 300 * 100 + 100 * 10)
    assert choose_lanes(15, "cpu", lenet)[0] == 15
    assert choose_lanes(15, "cpu", lenet, cap=4)[0] == 4
    conv2 = step_macs(create_model("conv2", 10, (3, 32, 32)), (3, 32, 32), 60)
    lanes, reason = choose_lanes(15, "cpu", conv2)
    assert lanes == 1 and "compute-bound" in reason
    assert choose_lanes(15, "cuda", conv2, lane_bytes=2**30, free_bytes=6 * 2**30) == (6, "6 lanes: the most that fit in 6.0 GiB (1.00 GiB each)")
    with pytest.raises(LotteryError, match="GiB are free"):
        choose_lanes(15, "cuda", conv2, lane_bytes=2**31, free_bytes=2**30)


# -- training as lanes vs one by one, with the real Trainer -----------------------------------------------------------

class _Random(TensorDataModule):
    num_classes = 10

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.input_shape = shape

    def load(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(112, *self.input_shape, generator=g), torch.randint(0, 10, (112,), generator=g)
        return x, y, x[:16], y[:16]


def _trainer(steps: int, masks: MaskManager) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
                      use_distributed_sampler=False, callbacks=[MaskCallback(masks)])


class _SmallResNet(nn.Module):
    """Conv, BatchNorm and a residual add in a few thousand weights (ResNet-20 on tiny random data is chaotic:
    two solo runs whose weights differ by 1e-7 end up 1e-2 apart after 26 steps, so it cannot compare runs)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


@pytest.mark.parametrize("name, shape, optim", [
    ("lenet_300_100", (1, 8, 8), Optim(optimizer="adam", lr=1e-3)),
    ("small_resnet", (3, 8, 8), Optim(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, milestone_steps=(15,))),
])
def test_lanes_train_like_runs_alone(name, shape, optim):
    seeds, steps = [0, 1, 2], 26  # 12 steps per epoch: two epochs and two steps, cut by max_steps
    torch.manual_seed(0)
    models = [_SmallResNet() for _ in seeds] if name == "small_resnet" else _models(name, len(seeds), shape)
    masks = []
    for m in models:
        masks.append(MaskManager(m))
        masks[-1].prune(0.5, "layer_magnitude")
    start = [copy.deepcopy(m) for m in models]
    net = LaneNet.from_models(start)
    lane_masks = MaskManager(net)
    lane_masks.set_masks(stack_masks([m.masks for m in masks]))
    module = LaneModule(net, 10, optim)
    trainer = _trainer(steps, lane_masks)
    trainer.fit(module, datamodule=LaneDataModule(_Random(shape, batch_size=8, val_size=16), seeds))
    trainer.test(module, datamodule=LaneDataModule(_Random(shape, batch_size=8, val_size=16), seeds), verbose=False)
    for k, seed in enumerate(seeds):
        solo = ClassificationModule(models[k], 10, optim, seed=seed)
        trainer = _trainer(steps, masks[k])
        data = _Random(shape, batch_size=8, val_size=16, seed=seed)
        trainer.fit(solo, datamodule=data)
        test = trainer.test(solo, datamodule=data, verbose=False)[0]
        lane = net.lane_state_dict(k)
        for n, value in models[k].state_dict().items():
            torch.testing.assert_close(lane[n], value, rtol=1e-4, atol=1e-5, msg=f"lane {k} {n}")
        assert [h["step"] for h in module.history[k]] == [h["step"] for h in solo.history] == [12, 24]
        for mine, theirs in zip(module.history[k], solo.history):
            assert mine["val/acc"] == theirs["val/acc"]
            assert mine["val/loss"] == pytest.approx(theirs["val/loss"], rel=1e-4)
        assert module.results["test"][k]["test/acc"] == pytest.approx(test["test/acc"])
        # Pruned weights stayed zero in every lane; the next level's masks come out identical.
        assert all((lane[n][~m] == 0).all() for n, m in masks[k].masks.items())
        again = copy.deepcopy(models[k])
        again.load_state_dict(lane)
        ours, theirs = MaskManager(again), copy.deepcopy(masks[k])
        ours.set_masks(masks[k].masks)
        ours.prune(0.3, "layer_magnitude")
        theirs.prune(0.3, "layer_magnitude")
        assert all(torch.equal(ours.masks[n], theirs.masks[n]) for n in ours.names)


def test_lane_memory_estimate_and_a_count_that_does_not_fit():
    from lottery.lanes.count import lane_bytes, lanes_that_fit

    model = create_model("lenet_300_100", 10, (1, 28, 28))
    params = sum(p.numel() for p in model.parameters())
    one = lane_bytes(model, (1, 28, 28), 60)
    assert 21 * params < one < 21 * params + 2 * 4 * 60 * 10_000  # weights/grads/moments/masks + kept activations
    assert lane_bytes(model, (1, 28, 28), 120) > one  # activations grow with the batch
    assert lanes_that_fit(8, one, 8 * one) == 8 and lanes_that_fit(8, None, None) == 8
    with pytest.raises(LotteryError, match=r"trainer.lanes=8: 8 lanes of .* do not fit .*; 3 fit: set trainer.lanes=3"):
        lanes_that_fit(8, one, 3 * one + 1)
