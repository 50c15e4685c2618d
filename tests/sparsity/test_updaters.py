"""Every registered sparse-training method through the same invariants, in a plain PyTorch loop: exact per-layer
counts after each update, pruned weights zero at every step, deterministic from seed and step, no update after the
end step; what SET and RigL grow starts at zero with its optimizer state reset, and what an update step does with
its gradient (skip, apply, or an extra iteration); no update where the drop fraction is 0. The cubic and cosine
schedules have the papers' values."""
import math

import pytest
import torch
import torch.nn.functional as F

from lottery import MaskManager
from lottery.core.errors import LotteryError
from lottery.sparsity.schedule import UpdateSchedule
from lottery.sparsity import edgepopup, srste  # noqa: F401  (their records, among those every test runs)
from lottery.sparsity.updaters import GMP, SET, SPARSE_TRAINING, DropGrowOptions, MethodSpec, RigL
from tests.sparsity.steps import lanes_loss, random_batch, updater_step

SCHEDULE = UpdateSchedule(end_step=30, interval=5, start_step=0, drop_fraction=0.3)


def _setup(mlp, method, seed=0, optimizer="adam", options=None):
    model = mlp(seed)
    masks = MaskManager(model)
    density = {"0.weight": 0.3, "2.weight": 0.5, "4.weight": 0.8}
    record = SPARSE_TRAINING[method]
    if record.densities is not None:  # a method whose options fix its densities (SR-STE's N:M)
        density = record.call(record.densities, masks, lambda d: dict.fromkeys(masks.names, d), options=options) or density
    if not record.starts_dense:
        masks.prune_to(density, "layer_random", torch.Generator().manual_seed(seed))
    opt = (torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    updater = record.call(record.updater, SCHEDULE, density, [seed], options=options)
    masks.initial = {n: m.clone() for n, m in masks.masks.items()}  # what lanes of these runs start from
    updater.start(masks)
    return model, masks, opt, updater, density


def _train(model, masks, opt, updater, steps=40, seed=0, check=None):
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        updater_step(model, masks, opt, updater, step, *random_batch(g))
        if check:
            check(step)


@pytest.mark.parametrize("method", sorted(SPARSE_TRAINING))
def test_every_method_keeps_exact_counts_zeros_and_is_deterministic(mlp, method):
    model, masks, opt, updater, density = _setup(mlp, method)
    history = []

    def check(step):
        for name, mask in masks.masks.items():
            assert not model.get_parameter(name)[~mask].any(), f"{name}: a pruned weight is not zero at step {step}"
        expected = updater.densities_after(max(u for u in SCHEDULE.updates(step + 1)))
        for name, mask in masks.masks.items():
            assert int(mask.sum()) == round(mask.numel() * expected[name]), (name, step)
        history.append({n: m.clone() for n, m in masks.masks.items()})

    _train(model, masks, opt, updater, check=check)
    model2, masks2, opt2, updater2, _ = _setup(mlp, method)
    _train(model2, masks2, opt2, updater2)
    assert all(torch.equal(masks.masks[n], masks2.masks[n]) for n in masks.names)  # same seed, same masks
    if not updater.done(0):
        assert any(not torch.equal(history[5][n], history[4][n]) for n in masks.names)  # step 5 changed the masks
    if updater.done(31):  # a schedule that ends (a static mask never updates; the shadow methods never stop)
        assert updater.done(0) or not updater.done(30)
        assert all(torch.equal(history[-1][n], history[31][n]) for n in masks.names)  # none after the end step


@pytest.mark.parametrize("method", ["set", "rigl"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_grown_weights_start_at_zero_with_their_optimizer_state_reset(mlp, method, optimizer):
    model, masks, opt, updater, _ = _setup(mlp, method, optimizer=optimizer)
    _train(model, masks, opt, updater, steps=9)  # past the update of step 5
    before = {n: m.clone() for n, m in masks.masks.items()}
    weights = {n: model.get_parameter(n).detach().clone() for n in masks.names}
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    updater.before_step(10, masks, opt)  # an update step: the gradients are kept aside
    assert all(p.grad is None for p in model.parameters())
    opt.step()  # changes nothing: no parameter has a gradient
    assert all(torch.equal(model.get_parameter(n), weights[n]) for n in masks.names)
    updater.update(10, masks, opt)
    for name in masks.names:
        grown = masks.masks[name] & ~before[name]
        assert grown.any(), name
        param = model.get_parameter(name)
        assert not param[grown].any()
        for value in opt.state[param].values():
            if value.shape == param.shape:
                assert not value[grown].any()


def test_rigl_grows_where_the_gradient_is_largest(mlp):
    model, masks, opt, updater, _ = _setup(mlp, "rigl")
    before = {n: m.clone() for n, m in masks.masks.items()}
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    grads = {n: model.get_parameter(n).grad.abs().clone() for n in masks.names}
    updater.before_step(0, masks, opt)
    opt.step()
    updater.update(0, masks, opt)
    for name in masks.names:
        grown = masks.masks[name] & ~before[name]
        not_chosen = ~masks.masks[name] & ~before[name]
        if grown.any() and not_chosen.any():
            assert grads[name][grown].min() >= grads[name][not_chosen].max()


def test_the_cubic_and_the_cosine():
    s = UpdateSchedule(end_step=100, interval=10, start_step=20, drop_fraction=0.3)
    assert s.gmp_density(20, 0.1) == 1.0 and s.gmp_density(100, 0.1) == pytest.approx(0.1)
    assert s.gmp_density(60, 0.1) == pytest.approx(1 - 0.9 * (1 - 0.5 ** 3))  # Zhu & Gupta's cubic at half way
    assert s.drop_fraction_at(20) == pytest.approx(0.3) and s.drop_fraction_at(100) == pytest.approx(0.0)
    assert s.drop_fraction_at(60) == pytest.approx(0.15)
    assert s.updates(1000) == [20, 30, 40, 50, 60, 70, 80, 90, 100] and s.updates(55) == [20, 30, 40, 50]
    assert UpdateSchedule(end_step=25, interval=10).updates(100) == [0, 10, 20, 25]  # the end step too


def test_a_spec_builds_its_method_and_carries_what_lanes_share():
    spec = MethodSpec("rigl", (("a.weight", 0.5),), SCHEDULE, seed=3)
    assert type(spec.build()).__name__ == "RigL" and spec.build().seeds == [3] and spec.build([3, 4]).seeds == [3, 4]
    other_seed = MethodSpec("rigl", (("a.weight", 0.5),), SCHEDULE, seed=9)
    assert spec.updater_key == other_seed.updater_key and spec.lane_key == other_seed.lane_key


@pytest.mark.parametrize("make, message", [
    (lambda: UpdateSchedule(end_step=10, interval=0), r"interval_steps=0 must be >= 1"),
    (lambda: UpdateSchedule(end_step=5, start_step=9), "must satisfy 0 <= start <= end"),
    (lambda: UpdateSchedule(end_step=5, drop_fraction=1.0), r"drop_fraction=1.0 must be in \[0, 1\)"),
    (lambda: RigL(SCHEDULE, {"a": 0.0}), r"must be in \(0, 1\]"),
    (lambda: GMP(SCHEDULE, {"a": 1.5}), r"must be in \(0, 1\]"),
    (lambda: SPARSE_TRAINING.lookup("rigl_plus"), "unknown sparse-training method 'rigl_plus'"),
    (lambda: DropGrowOptions("twice"), "update_step='twice' must be one of: skip: .*; apply: .*; extra: "),
])
def test_bad_input_is_one_clear_error(make, message):
    with pytest.raises(LotteryError, match=message):
        make()


def test_cost_follows_the_densities_over_time():
    from lottery.core.macs import training_cost

    gmp = GMP(UpdateSchedule(end_step=50, interval=10), {"a": 0.1})
    segments = gmp.segments(0, 100)
    assert segments[0] == (0, {"a": 1.0}) and segments[-1] == (51, {"a": pytest.approx(0.1)})
    cost = training_cost({"a": 100}, segments, 100, 100)
    assert 0.1 < cost < 1.0
    rigl = RigL(UpdateSchedule(end_step=50, interval=10), {"a": 0.1})
    base = training_cost({"a": 100}, rigl.segments(0, 100), 100, 100)
    assert base == pytest.approx(0.1)
    dense_grads = training_cost({"a": 100}, rigl.segments(0, 100), 100, 100, rigl.dense_gradient_steps(100))
    # five updates, each a dense weight gradient: the end step's, where α is 0, would drop nothing and is not made
    assert rigl.update_steps(100) == [0, 10, 20, 30, 40]
    assert dense_grads == pytest.approx(0.1 + 5 * 0.9 / (3 * 100))
    extra = RigL(UpdateSchedule(end_step=50, interval=10), {"a": 0.1}, options=DropGrowOptions("extra"))
    with_extra = training_cost({"a": 100}, extra.segments(0, 100), 100, 100, extra.dense_gradient_steps(100),
                               extra.extra_iterations(100))
    assert with_extra == pytest.approx(0.1 + 5 * 0.9 / (3 * 100) + 5 * 0.1 / 100)  # and five more sparse iterations
    assert math.isclose(training_cost({"a": 1}, [(0, {"a": 1.0})], 10, 10), 1.0)


@pytest.mark.parametrize("method", sorted(SPARSE_TRAINING))
def test_every_method_as_lanes_makes_each_runs_own_masks(mlp, method):
    """The one rule for lanes: a method sees every tensor as rows [lanes, n] and treats each row as a run of its own,
    so K runs as lanes of one network (lottery.lanes) end with the masks each run reaches alone."""
    from lottery.lanes.net import LaneNet, stack_masks, unstack_masks

    alone = [_setup(mlp, method, seed=s, optimizer="sgd") for s in (0, 1)]
    record = SPARSE_TRAINING[method]
    net = LaneNet.from_models([mlp(s) for s in (0, 1)])
    masks = MaskManager(net)
    masks.set_masks(stack_masks([a[1].initial for a in alone]))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    updater = record.call(record.updater, SCHEDULE, alone[0][4], [0, 1])
    updater.start(masks)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    for step in range(12):
        batches = [random_batch(g) for g in gens]
        for (model, run_masks, run_opt, run_updater, _), (x, y) in zip(alone, batches):
            updater_step(model, run_masks, run_opt, run_updater, step, x, y)
        updater_step(net, masks, opt, updater, step, torch.stack([x for x, _ in batches]),
                     torch.stack([y for _, y in batches]), lanes_loss)
    for k, (_, run_masks, *_) in enumerate(alone):
        lane = unstack_masks(masks.masks, k)
        assert all(torch.equal(lane[n], run_masks.masks[n]) for n in run_masks.names), (method, k)


def _one_step(model, masks, opt, updater, step, seed):
    """One iteration of the plain loop at schedule step `step`: (did the weights move, did the masks change)."""
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    before = {n: m.clone() for n, m in masks.masks.items()}
    updater_step(model, masks, opt, updater, step, *random_batch(torch.Generator().manual_seed(seed)))
    moved = any(not torch.equal(p, weights[n]) for n, p in model.named_parameters() if n.endswith("bias"))
    return moved, any(not torch.equal(masks.masks[n], before[n]) for n in masks.names)


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_what_an_update_step_does_with_its_gradient(mlp, method):
    """skip (jaxpruner): the update step applies no gradient; apply (google-research/rigl's SET): it does, then the
    masks change; extra (google-research/rigl's RigL): the update takes an iteration of its own, and the step is
    taken after it, so that the training still takes all its steps: a loop over iterations i runs step
    i - extra_before(i). The biases, never masked, show whether a gradient was applied."""
    for mode, applied in (("skip", False), ("apply", True)):
        model, masks, opt, updater, _ = _setup(mlp, method, options=DropGrowOptions(mode))
        assert _one_step(model, masks, opt, updater, 0, seed=1) == (applied, True), mode
        assert _one_step(model, masks, opt, updater, 1, seed=2) == (True, False), mode
    model, masks, opt, updater, _ = _setup(mlp, method, options=DropGrowOptions("extra"))
    assert updater.update_steps(40) == [0, 5, 10, 15, 20, 25] and updater.extra_iterations(40) == 6
    seen = []
    for i in range(40 + 6):
        step = i - updater.extra_before(i)
        seen.append((step, *_one_step(model, masks, opt, updater, step, seed=i)))
    update_steps = (0, 5, 10, 15, 20, 25)
    assert [s for s, *_ in seen] == [s for s in range(40) for _ in range(1 + (s in update_steps))]  # updates twice
    updates = [(s, moved, changed) for s, moved, changed in seen if s in update_steps]
    assert updates == [(u, moved, changed) for u in update_steps
                       for moved, changed in ((False, True), (True, False))]  # the update's own iteration, then the step
    assert sum(moved for _, moved, _ in seen) == 40  # 40 gradient steps, and 6 iterations that changed the masks


def test_an_update_whose_drop_fraction_is_zero_is_not_made():
    set_ = SET(UpdateSchedule(end_step=27, interval=10), {"a": 0.5})
    assert set_.update_steps(100) == [0, 10, 20]  # not the end step 27, where α's cosine is 0
    assert GMP(UpdateSchedule(end_step=27, interval=10), {"a": 0.5}).update_steps(100) == [0, 10, 20, 27]
    assert SET(UpdateSchedule(end_step=27, interval=10, drop_fraction=0.0), {"a": 0.5}).update_steps(100) == []
