"""Optimizers and the learning rate as a pure function of the step."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lottery.core.errors import LotteryError
from lottery.training.optimizers import OPTIMIZERS, make_optimizer
from lottery.core.schema import OptimConfig


def test_warmup_then_step_decay():
    optim = OptimConfig(lr=0.1, warmup_steps=4, milestone_steps=(10, 20), gamma=0.5)
    assert [optim.lr_at(s) for s in (0, 1, 3, 9, 10, 19, 20, 1000)] == pytest.approx(
        [0.025, 0.05, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert optim.final_lr == pytest.approx(0.025)
    assert optim.finetuning_lr == pytest.approx(0.025)  # no train.optim.finetune_lr: the schedule's last rate
    assert OptimConfig(finetune_lr=3e-4).finetuning_lr == 3e-4


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_are_fused_and_step_as_torchs_default_does(name):
    optim = OptimConfig(optimizer=name, lr=0.1, momentum=0.9, nesterov=name == "sgd", weight_decay=1e-3)
    fused_net, plain_net = _net(), _net()
    fused = make_optimizer(fused_net.parameters(), optim)
    reference = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                 "adam": lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=1e-3),
                 "adamw": lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=1e-3)}[name](plain_net.parameters())
    assert fused.defaults["fused"] is True
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g)
    for _ in range(3):
        for net, opt in ((fused_net, fused), (plain_net, reference)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(fused_net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(a, b)  # the same update, up to rounding


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(LotteryError, match="unknown optimizer 'lion'; choose one of: adam, adamw, sgd"):
        make_optimizer(_net().parameters(), OptimConfig(optimizer="lion"))


def test_linear_schedule_warms_up_then_decays_to_zero_at_the_end():
    optim = OptimConfig(lr=0.1, warmup_steps=2, schedule="linear", decay_steps=10)
    # warm-up as the step schedule's ((step + 1) / warmup), then (T - step) / (T - warmup): BERT's schedule
    assert [optim.lr_at(s) for s in (0, 1, 2, 6, 9, 10, 50)] == pytest.approx(
        [0.05, 0.1, 0.1, 0.05, 0.0125, 0.0, 0.0])
    assert optim.final_lr == pytest.approx(0.0125)  # the last step's rate (finetune policy), not zero


def test_linear_decay_ends_with_the_training_unless_told():
    from lottery.core.schema import TrainConfig

    resolved = TrainConfig(steps=None, epochs=3, optim=OptimConfig(schedule="linear")).resolve(steps_per_epoch=7)
    assert resolved.decay_steps == 21
    assert TrainConfig(epochs=3).resolve(7) == TrainConfig(epochs=3).resolve(7)  # the step schedule: as before
    assert TrainConfig(epochs=3).resolve(7).decay_steps is None


def test_plain_sgd_is_one_foreach_add_bitwise_the_fused_step():
    """SGD without momentum or decay (OpenLTH's LeNet setting) is PlainSGD on the CPU: the fused step, bit for bit."""
    from lottery.training.optimizers import PlainSGD

    ours, theirs = _net(), _net()
    plain = make_optimizer(ours.parameters(), OptimConfig(optimizer="sgd", lr=0.1, momentum=0.0))
    fused = torch.optim.SGD(theirs.parameters(), lr=0.1, fused=True)
    assert isinstance(plain, PlainSGD)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, y = torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g)
        for net, opt in ((ours, plain), (theirs, fused)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            assert opt.step(lambda: 1.5) == 1.5  # the closure runs (Lightning's hooks are in it)
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
