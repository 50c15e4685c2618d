import pytest
import torch

from lottery import LotteryError, MaskManager, capture, restore
from lottery.core.rewind import REWIND, TRAINED, TrainingPlan, plan


def test_rewound_weights_equal_the_snapshot_times_the_mask(mlp):
    model = mlp()
    point = capture(model, step=0)
    with torch.no_grad():  # "training"
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    masks = MaskManager(model)
    masks.prune(0.6)
    restore(model, point, masks)
    for name, value in model.state_dict().items():
        expected = point.state[name] * masks.masks[name] if name in masks.masks else point.state[name]
        assert torch.equal(value, expected)


def test_capture_is_a_copy(mlp):
    model = mlp()
    point = capture(model, step=7)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert point.step == 7 and not torch.equal(point.state["0.weight"], model[0].weight)


def test_policies():
    assert plan("init", 0, 100) == TrainingPlan.from_start(100) == TrainingPlan(weights=REWIND, start_step=0, steps=100)
    assert plan("step", 10, 100) == TrainingPlan(weights=REWIND, start_step=10, steps=90)
    assert plan("lr", 10, 100) == TrainingPlan(weights=TRAINED, start_step=10, steps=90)
    assert plan("finetune", 10, 100, finetune_lr=1e-4) == TrainingPlan(weights=TRAINED, start_step=10, steps=90, constant_lr=1e-4)
    with pytest.raises(LotteryError, match="needs finetune_lr"):
        plan("finetune", 0, 100)


@pytest.mark.parametrize("policy, step, match", [("rewind", 0, "unknown rewind policy"),
                                                 ("init", 5, "use policy 'step'"), ("step", 100, r"must be in \[0, 100\)")])
def test_bad_policies(policy, step, match):
    with pytest.raises(LotteryError, match=match):
        plan(policy, step, 100)
