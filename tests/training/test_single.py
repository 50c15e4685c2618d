"""train(): one run spec through a real Lightning Trainer, its files, and what it skips."""

import pytest
import torch
from torch import nn

from lottery.core.files import load_tensors, read_json
from lottery.core.layout import TrainingDir
from lottery.core.masks import MaskManager
from lottery.core.rewind import TrainingPlan
from lottery.data.base import TensorDataModule
from lottery.core.schema import TrainerConfig
from lottery.core.schema import OptimConfig
from lottery.training.single import train
from lottery.training.spec import RunSpec

SETTINGS = TrainerConfig(accelerator="cpu", progress=False)


class _Blobs(TensorDataModule):
    num_classes, input_shape = 3, (6,)

    def load(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)
        return x, y, x[:16], y[:16]


def _spec(out, steps=12, capture=None) -> RunSpec:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = MaskManager(model)
    masks.prune(0.5, "layer_magnitude")
    return RunSpec("test", model, masks, TrainingPlan.from_start(steps), _Blobs(batch_size=8, val_size=16, seed=0),
                   seed=0, out=TrainingDir(out), capture=capture or {})


def test_a_spec_trains_writes_its_files_and_is_not_trained_twice(tmp_path):
    spec = _spec(tmp_path / "t", capture={5: tmp_path / "t" / "step5.safetensors"})
    metrics = train(spec, SETTINGS, OptimConfig(optimizer="sgd", lr=0.1))
    out = spec.out
    assert out.done and out.final.exists() and not out.checkpoints.exists()  # the resume checkpoint is gone
    assert read_json(out.metrics) == metrics and metrics["steps"] == 12 and metrics["start_step"] == 0
    assert metrics["density"] == pytest.approx(0.5, abs=0.01) and 0 <= metrics["test_acc"] <= 1
    final = load_tensors(out.final)
    assert all((final[n][~m] == 0).all() for n, m in spec.masks.masks.items())  # pruned weights are zero on disk
    assert load_tensors(tmp_path / "t" / "step5.safetensors").keys() == final.keys()  # the rewind point of step 5
    mtime = out.final.stat().st_mtime_ns
    again = _spec(tmp_path / "t")
    assert train(again, SETTINGS, OptimConfig(optimizer="sgd", lr=0.1)) == metrics  # read, not retrained
    assert out.final.stat().st_mtime_ns == mtime


def test_constant_learning_rate_and_start_step_are_taken_from_the_plan(tmp_path):
    spec = _spec(tmp_path / "t")
    plan = TrainingPlan(weights="trained", start_step=4, steps=8, constant_lr=0.0)  # lr 0: the weights never move
    before = {k: v.clone() for k, v in spec.model.state_dict().items()}
    metrics = train(RunSpec("ft", spec.model, spec.masks, plan, spec.data, 0, spec.out), SETTINGS, OptimConfig(lr=0.1))
    assert (metrics["start_step"], metrics["steps"]) == (4, 8)
    assert metrics["history"][-1]["step"] == 12  # the schedule position after the last step
    for k, v in spec.model.state_dict().items():
        assert torch.equal(v, before[k])


