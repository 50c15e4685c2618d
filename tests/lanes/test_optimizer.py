"""LaneOptimizer (lottery.lanes.optimizer): K runs' optimizers as one over stacked parameters, each lane updated bit
for bit as its run alone (Adam, AdamW, SGD with momentum and decay, plain SGD), skipping the steps it is told to skip,
its moments reachable as [K, ...] tensors, its state dict resumable (an older one over the stacked tensors too); plain
SGD, which keeps no state, is every lane's own optimizer over the stacked tensors (PlainSGD)."""
import copy

import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.core.schema import OptimConfig
from lottery.lanes.optimizer import LaneOptimizer
from lottery.training.optimizers import PlainSGD, make_optimizer

SHAPES = [(30, 16), (30,), (4, 30), (4,)]  # odd sizes: a fused kernel's vector tail differs from a stacked tensor's
CONFIGS = {
    "adam": OptimConfig(optimizer="adam", lr=1e-2),
    "adamw": OptimConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1),
    "sgd_momentum": OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3),
    "sgd": OptimConfig(optimizer="sgd", lr=0.1),
}
K = 3


def _grads(steps: int, seed: int = 0) -> list[list[list[torch.Tensor]]]:
    """[step][lane][parameter] gradients."""
    g = torch.Generator().manual_seed(seed)
    return [[[torch.randn(s, generator=g) for s in SHAPES] for _ in range(K)] for _ in range(steps)]


def _runs(cfg):
    g = torch.Generator().manual_seed(1)
    runs = [[torch.randn(s, generator=g).requires_grad_() for s in SHAPES] for _ in range(K)]
    return runs, [make_optimizer(run, cfg) for run in runs]


def _lanes(runs, cfg):
    """The stacked parameters and the lanes' optimizer, as lottery's module makes it (plain SGD: PlainSGD itself)."""
    stacked = [torch.stack([run[i].detach() for run in runs]).requires_grad_() for i in range(len(SHAPES))]
    opt = make_optimizer(stacked, cfg, lanes=K)
    assert isinstance(opt, PlainSGD if cfg.momentum == 0 and cfg.optimizer == "sgd" else LaneOptimizer)
    return stacked, opt


def _step_runs(runs, opts, grads, skip=()):
    """One step of each run alone but those in `skip`, which take none."""
    for k in range(K):
        if k not in skip:
            for p, grad in zip(runs[k], grads[k]):
                p.grad = grad.clone()
            opts[k].step()


def _step_lanes(stacked, opt, grads, skip=()):
    for i, p in enumerate(stacked):
        p.grad = torch.stack([lane[i] for lane in grads])
    opt.skip_lanes(skip)
    opt.step()


def _equal(stacked, runs) -> bool:
    return all(torch.equal(p[k], runs[k][i]) for i, p in enumerate(stacked) for k in range(K))


@pytest.mark.parametrize("name", CONFIGS)
def test_each_lane_is_updated_bit_for_bit_as_its_run_alone(name):
    cfg = CONFIGS[name]
    runs, opts = _runs(cfg)
    stacked, opt = _lanes(runs, cfg)
    for grads in _grads(12):
        _step_runs(runs, opts, grads)
        _step_lanes(stacked, opt, grads)
    assert _equal(stacked, runs)
    if name != "sgd":  # a stacked moment holds each lane's own, where the optimizer reads it
        key = next(iter(opt.state[stacked[0]]))
        assert all(torch.equal(opt.state[stacked[0]][key][k], opts[k].state[runs[k][0]][key]) for k in range(K))


@pytest.mark.parametrize("name", ["adam", "sgd_momentum", "sgd"])
def test_a_skipped_lane_takes_no_step_and_the_others_take_theirs(name):
    cfg = CONFIGS[name]
    runs, opts = _runs(cfg)
    stacked, opt = _lanes(runs, cfg)
    skips = {3: [1], 4: [0, 2], 7: [1]}  # step -> lanes that skip it (SET/RigL's update steps)
    for step, grads in enumerate(_grads(10)):
        _step_runs(runs, opts, grads, skips.get(step, []))
        _step_lanes(stacked, opt, grads, skips.get(step, []))
    assert _equal(stacked, runs)
    if name == "adam":  # each lane counts its own steps (Adam's bias correction)
        assert [int(opt.inner.state[v]["step"]) for v in opt.views[0]] == [9, 8, 9]


def test_resetting_a_lanes_moments_in_the_stacked_state_reaches_the_optimizer():
    cfg = CONFIGS["adam"]
    runs, opts = _runs(cfg)
    stacked, opt = _lanes(runs, cfg)
    for step, grads in enumerate(_grads(6)):
        if step == 3:  # RigL's regrown weights start with zero moments (lottery.sparsity.updaters)
            for value in opt.state[stacked[0]].values():
                value[1, :5].zero_()
            for value in opts[1].state[runs[1][0]].values():
                if value.dim():
                    value[:5].zero_()
        _step_runs(runs, opts, grads)
        _step_lanes(stacked, opt, grads)
    assert _equal(stacked, runs)


def test_a_resumed_optimizer_continues_as_the_uninterrupted_one():
    cfg = CONFIGS["adam"]
    runs, _ = _runs(cfg)
    grads = _grads(8)
    stacked, opt = _lanes(runs, cfg)
    for g in grads[:4]:
        _step_lanes(stacked, opt, g)
    saved = [p.detach().clone() for p in stacked], copy.deepcopy(opt.state_dict())  # as torch.save keeps it
    for g in grads[4:]:
        _step_lanes(stacked, opt, g)
    resumed = [p.clone().requires_grad_() for p in saved[0]]
    again = LaneOptimizer(resumed, K, lambda views: make_optimizer(views, cfg))
    again.load_state_dict(saved[1])
    for g in grads[4:]:
        _step_lanes(resumed, again, g)
    assert all(torch.equal(a, b) for a, b in zip(stacked, resumed))


def test_a_state_dict_over_the_stacked_tensors_is_split_over_the_lanes():
    cfg = CONFIGS["adam"]
    runs, _ = _runs(cfg)
    stacked, _ = _lanes(runs, cfg)
    old = make_optimizer(stacked, cfg)  # one Adam over the stacked parameters: an older lottery's lane checkpoint
    for i, p in enumerate(stacked):
        p.grad = torch.randn(p.shape)
    old.step()
    opt = LaneOptimizer(stacked, K, lambda views: make_optimizer(views, cfg))
    opt.load_state_dict(old.state_dict())
    for p in stacked:
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key], old.state[p][key])
    assert all(int(opt.inner.state[v]["step"]) == 1 for views in opt.views for v in views)


def test_parameters_without_a_lane_dimension_are_refused():
    with pytest.raises(LotteryError, match=r"stacked over 3 lanes"):
        LaneOptimizer([torch.zeros(4, 2, requires_grad=True)], 3, lambda views: torch.optim.SGD(views, lr=0.1))
