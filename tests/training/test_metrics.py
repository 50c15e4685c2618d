"""Metrics beside accuracy (lottery/training/metrics.py): F1 and Matthews correlation as scikit-learn computes them,
for a run alone and for each lane; a dataset that asks for none logs what it did before."""
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import f1_score, matthews_corrcoef
from torch import nn

from lottery.data.base import TensorDataModule
from lottery.lanes.net import LaneNet
from lottery.training.lane_data import LaneDataModule
from lottery.training.module import ClassificationModule
from lottery.core.schema import OptimConfig


class _Pairs(TensorDataModule):
    num_classes, input_shape, metrics = 2, (6,), ("f1", "mcc")

    def load(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(80, 6, generator=g)
        y = (x[:, 0] + 0.5 * torch.randn(80, generator=g) > 0).long()
        return x[:60], y[:60], x[60:], y[60:]


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def _trainer():
    return pl.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0)


def _expected(model, data):
    x, y = data._sets["test"].tensors
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1)
    return f1_score(y, predicted), matthews_corrcoef(y, predicted)


def test_f1_and_mcc_of_a_run_and_of_each_lane_are_scikit_learns():
    data = _Pairs(batch_size=10, val_size=10)
    module = ClassificationModule(_net(0), 2, OptimConfig(lr=0.05), metrics=("f1", "mcc"))
    trainer = _trainer()
    trainer.fit(module, datamodule=data)
    test = trainer.test(module, datamodule=data, verbose=False)[0]
    f1, mcc = _expected(module.model, data)
    assert test["test/f1"] == pytest.approx(f1, abs=1e-6) and test["test/mcc"] == pytest.approx(mcc, abs=1e-6)
    assert {"val/f1", "val/mcc"} <= set(module.history[-1])

    models = [_net(k) for k in range(2)]
    lanes = ClassificationModule(LaneNet.from_models(models), 2, OptimConfig(lr=0.05), metrics=("f1", "mcc"))
    trainer = _trainer()
    trainer.fit(lanes, datamodule=LaneDataModule(data, [0, 1]))
    trainer.test(lanes, datamodule=LaneDataModule(data, [0, 1]), verbose=False)
    for k, model in enumerate(models):
        model.load_state_dict(lanes.model.lane_state_dict(k))
        f1, mcc = _expected(model, data)
        assert lanes.results["test"][k]["test/f1"] == pytest.approx(f1, abs=1e-6)
        assert lanes.results["test"][k]["test/mcc"] == pytest.approx(mcc, abs=1e-6)


def test_without_metrics_only_loss_and_accuracy_are_logged():
    data = _Pairs(batch_size=10, val_size=10)
    module = ClassificationModule(_net(0), 2, OptimConfig(lr=0.05))
    trainer = _trainer()
    trainer.fit(module, datamodule=data)
    assert set(trainer.test(module, datamodule=data, verbose=False)[0]) == {"test/loss", "test/acc"}
