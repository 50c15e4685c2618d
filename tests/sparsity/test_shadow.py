"""The methods that train a shadow in the weights' place (edge-popup, SR-STE) under the real Trainer: a training
resumed from its epoch checkpoint ends bit for bit where an uninterrupted one does (the shadows are in the
checkpoint), and with gradient clipping the shadows' gradients are clipped, not masked."""
import pytest
import torch
from torch import nn

from lottery.core.masks import MaskManager
from lottery.core.schema import OptimConfig, TrainerConfig
from lottery.data.base import TensorDataModule
from lottery.sparsity.edgepopup import EdgePopup
from lottery.sparsity.schedule import UpdateSchedule
from lottery.sparsity.srste import SRSTE, SRSTEOptions
from lottery.training import callbacks
from lottery.training.module import ClassificationModule
from lottery.training.trainer import fit_and_test

SETTINGS = TrainerConfig(accelerator="cpu", progress=False)


class _Blobs(TensorDataModule):
    num_classes, input_shape = 3, (8,)

    def load(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
        return x, y, x[:16], y[:16]


def _updater(method):
    density = {"0.weight": 0.5, "2.weight": 0.5}
    if method == "edgepopup":
        return EdgePopup(UpdateSchedule(end_step=0), density)
    return SRSTE(UpdateSchedule(end_step=0), density, options=SRSTEOptions(dense_layers=()))


def _fit(tmp_path, method, steps, clip=None):
    """`steps` steps (6 per epoch) from the same start, resuming from tmp_path's checkpoint when there is one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = MaskManager(model)
    updater = _updater(method)
    module = ClassificationModule(model, 3, OptimConfig(optimizer="sgd", lr=0.2, momentum=0.9), seed=0,
                                  gradient_clip=clip)
    fit_and_test(module, _Blobs(batch_size=8, val_size=16, seed=0), SETTINGS, steps, masks, tmp_path / "last.ckpt",
                 "test", updater=updater)
    return model, masks, updater


@pytest.mark.parametrize("method", ["edgepopup", "srste"])
def test_a_resumed_training_ends_where_an_uninterrupted_one_does(tmp_path, method, monkeypatch):
    model, masks, updater = _fit(tmp_path / "whole", method, 12)
    # As if stopped after its first epoch: the checkpoint written then (the masks, the updater's shadows), none later.
    monkeypatch.setattr(callbacks, "CHECKPOINT_SECONDS", float("inf"))
    _fit(tmp_path / "stopped", method, 12)
    assert (tmp_path / "stopped" / "last.ckpt").exists()
    model2, masks2, updater2 = _fit(tmp_path / "stopped", method, 12)
    for name, param in model.named_parameters():
        assert torch.equal(param, model2.get_parameter(name)), name
    assert all(torch.equal(masks.masks[n], masks2.masks[n]) for n in masks.names)
    assert updater.shadow.keys() == updater2.shadow.keys() == set(masks.names)
    assert all(torch.equal(updater.shadow[n], updater2.shadow[n]) for n in updater.shadow)
    for name in masks.names:
        assert not model.get_parameter(name)[~masks.masks[name]].any()  # zeros where pruned, as always


def test_clipping_clips_the_shadows_gradients_and_masks_none(tmp_path):
    """A tiny clipping norm moves the scores by as little as it allows: scores still move where they are pruned."""
    model, masks, updater = _fit(tmp_path, "edgepopup", 6, clip=1e-3)
    start = _updater("edgepopup")
    start.start(MaskManager(_seeded_model()))
    for name in masks.names:
        moved = (updater.shadow[name] - start.shadow[name]).abs()
        assert moved[~masks.masks[name]].max() > 0  # pruned entries' scores got their gradient
        assert moved.max() < 6 * 0.2 * 1e-3 * 20  # bounded by the clipped steps (momentum sums at most ~ 1/(1-0.9))


def _seeded_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
