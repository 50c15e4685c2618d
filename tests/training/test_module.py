"""ClassificationModule's hand-written training step: the schedule it follows, the metrics it logs, the optimizer."""
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from lottery.data.base import TensorDataModule
from lottery.training.callbacks import EpochCheckpoint
from lottery.training.module import ClassificationModule
from lottery.core.schema import OptimConfig, lr_factor

# val_size=0 below (the lr=0 test needs every example in training): Lightning warns of the empty validation set.
pytestmark = pytest.mark.filterwarnings("ignore:Total length of `DataLoader` across ranks is zero")


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g))


class _Blobs(TensorDataModule):
    """The data pipeline lottery trains with (its sampler makes a resumed epoch see the same batches)."""

    num_classes, input_shape = 3, (6,)

    def load(self):
        x, y = _data().tensors
        return x, y, x[:8], y[:8]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


class _RecordLR(pl.Callback):
    def __init__(self):
        self.rates = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.rates.append(optimizer.param_groups[0]["lr"])


def _fit(module, steps, callbacks=(), ckpt_path=None):
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, accelerator="cpu", callbacks=list(callbacks),
                         use_distributed_sampler=False)
    trainer.fit(module, datamodule=_Blobs(batch_size=8, val_size=0), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("offset", [0, 5])
def test_each_step_uses_the_schedules_rate(offset):
    optim = OptimConfig(optimizer="sgd", lr=0.4, momentum=0.9, warmup_steps=4, milestone_steps=(9, 13))
    record = _RecordLR()
    _fit(ClassificationModule(_net(), 3, optim, start_step=offset), steps=15, callbacks=[record])
    assert record.rates == pytest.approx([0.4 * lr_factor(offset + s, optim) for s in range(15)])


def test_resumed_run_continues_the_schedule_and_matches_an_uninterrupted_one(tmp_path):
    optim = OptimConfig(optimizer="sgd", lr=0.4, momentum=0.9, warmup_steps=3, milestone_steps=(8,))
    whole = ClassificationModule(_net(), 3, optim)
    _fit(whole, steps=12)
    # As if stopped after the first epoch (6 batches): the checkpoint lottery writes then, and none later (not due
    # yet; and never after the last epoch).
    _fit(ClassificationModule(_net(), 3, optim), steps=12,
         callbacks=[EpochCheckpoint(tmp_path / "epoch.ckpt", seconds=float("inf"))])
    record = _RecordLR()
    resumed = ClassificationModule(_net(), 3, optim)
    _fit(resumed, steps=12, callbacks=[record], ckpt_path=tmp_path / "epoch.ckpt")
    assert record.rates == pytest.approx([0.4 * lr_factor(s, optim) for s in range(6, 12)])
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_constant_lr_is_used_throughout():
    record = _RecordLR()
    optim = OptimConfig(optimizer="sgd", lr=0.4, warmup_steps=4, milestone_steps=(2,))
    _fit(ClassificationModule(_net(), 3, optim, constant_lr=0.01), steps=7, callbacks=[record])
    assert record.rates == [0.01] * 7


def test_logged_train_metrics_are_the_epochs_loss_and_accuracy():
    # At lr = 0 the weights never move, so the epoch's totals must equal one pass over the data
    # (all 48 examples: val_size=0, and 6 batches of 8 are one epoch).
    net = _net()
    trainer = _fit(ClassificationModule(net, 3, OptimConfig(optimizer="sgd", lr=0.0)), steps=6)
    x, y = _data().tensors
    with torch.no_grad():
        logits = net(x)
    metrics = trainer.callback_metrics
    assert float(metrics["train/loss"]) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert float(metrics["train/acc"]) == pytest.approx(float((logits.argmax(1) == y).float().mean()))
