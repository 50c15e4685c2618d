"""ClassificationModule over a LaneNet and LaneDataModule under the real Trainer: K runs as lanes train as they
train alone."""
import copy

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lottery import MaskManager
from lottery.data.base import TensorDataModule
from lottery.lanes.net import LaneNet, stack_masks
from lottery.models import create_model
from lottery.training.callbacks import MaskCallback
from lottery.training.lane_data import LaneDataModule
from lottery.training.module import ClassificationModule
from lottery.core.schema import OptimConfig


def _models(name: str, lanes: int, shape) -> list[nn.Module]:
    torch.manual_seed(0)
    return [create_model(name, 10, shape) for _ in range(lanes)]


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
    ("lenet_300_100", (1, 8, 8), OptimConfig(optimizer="adam", lr=1e-3)),
    ("small_resnet", (3, 8, 8), OptimConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, milestone_steps=(15,))),
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
    module = ClassificationModule(net, 10, optim)
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
        assert [h["step"] for h in module.histories[k]] == [h["step"] for h in solo.history] == [12, 24]
        for mine, theirs in zip(module.histories[k], solo.history):
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
