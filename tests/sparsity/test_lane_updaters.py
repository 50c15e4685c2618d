"""Each lane its own method in one network (lottery.sparsity.lane_updaters): lanes of GMP, SET, RigL, static and fixed
masks side by side end with the masks and weights each run reaches alone, SET and RigL that skip their update steps
beside lanes that take them too (each lane stepped on its own: lottery.lanes.optimizer); which methods can share a
network (MethodSpec.lane_key)."""
import pytest
import torch

from lottery import MaskManager
from lottery.core.errors import LotteryError
from lottery.lanes.net import LaneNet, lane_loss, stack_masks, unstack_masks
from lottery.lanes.optimizer import LaneOptimizer
from lottery.sparsity import edgepopup  # noqa: F401  (its record)
from lottery.sparsity.lane_updaters import LaneUpdaters, lane_updaters
from lottery.sparsity.schedule import UpdateSchedule
from lottery.sparsity.updaters import SPARSE_TRAINING, DropGrowOptions, MethodSpec
from tests.sparsity.steps import lanes_loss, updater_step

SCHEDULE = UpdateSchedule(end_step=30, interval=5, start_step=0, drop_fraction=0.3)
DENSITY = (("0.weight", 0.3), ("2.weight", 0.5), ("4.weight", 0.8))


def _run(mlp, method, seed, options=None):
    """(model, masks, optimizer, updater or None) of one run alone; method None: fixed random masks."""
    model = mlp(seed)
    masks = MaskManager(model)
    if method is None or not SPARSE_TRAINING[method].starts_dense:
        masks.prune_to(dict(DENSITY), "layer_random", torch.Generator().manual_seed(seed))
    spec = None if method is None else MethodSpec(method, DENSITY, SCHEDULE, seed, options)
    masks.initial = {n: m.clone() for n, m in masks.masks.items()}
    return model, masks, torch.optim.Adam(model.parameters(), lr=1e-2), spec


@pytest.mark.parametrize("lanes", [
    [("gmp", 0, None), (None, 1, None), ("set", 1, "apply"), ("rigl", 0, "apply"), ("static", 2, None), ("gmp", 1, None)],
    [("set", 0, "skip"), ("rigl", 1, "skip"), ("set", 2, "skip")],
    [("set", 0, "skip"), (None, 1, None), ("rigl", 1, "skip"), ("gmp", 2, None), ("set", 2, "apply")],
])
def test_lanes_of_different_methods_end_with_each_runs_own_masks(mlp, lanes):
    alone = [_run(mlp, m, s, o and DropGrowOptions(o)) for m, s, o in lanes]
    updaters = [spec and spec.build() for *_, spec in alone]
    net = LaneNet.from_models([mlp(s) for _, s, _ in lanes])
    masks = MaskManager(net)
    masks.set_masks(stack_masks([run[1].initial for run in alone]))
    opt = LaneOptimizer(net.parameters(), len(lanes), lambda views: torch.optim.Adam(views, lr=1e-2))
    assert {spec.lane_key for *_, spec in alone if spec is not None} <= {()}  # they may share a network
    updater, of_lane = lane_updaters([spec for *_, spec in alone])
    assert isinstance(updater, LaneUpdaters) and [u is None for u in of_lane] == [m is None for m, *_ in lanes]
    updater.start(masks)
    gens = [torch.Generator().manual_seed(s) for _, s, _ in lanes]
    for step in range(35):
        batches = [(torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)) for g in gens]
        for (model, run_masks, run_opt, _), run_updater, (x, y) in zip(alone, updaters, batches):
            updater_step(model, run_masks, run_opt, run_updater, step, x, y)
        x, y = torch.stack([x for x, _ in batches]), torch.stack([y for _, y in batches])
        updater_step(net, masks, opt, updater if not updater.done(step) else None, step, x, y, lanes_loss)
    for k, (_, run_masks, *_) in enumerate(alone):
        lane = unstack_masks(masks.masks, k)
        assert all(torch.equal(lane[n], run_masks.masks[n]) for n in run_masks.names), (lanes[k], k)
        weights = net.lane_state_dict(k)
        assert all(torch.equal(weights[n], p) for n, p in alone[k][0].state_dict().items()), (lanes[k], k)  # bit for bit
    assert masks.density == pytest.approx({n: float(m.float().mean()) for n, m in masks.masks.items()})


def test_one_method_on_every_lane_is_its_own_updater():
    specs = [MethodSpec("rigl", DENSITY, SCHEDULE, seed) for seed in (3, 4)]
    updater, of_lane = lane_updaters(specs)
    assert type(updater).__name__ == "RigL" and updater.seeds == [3, 4] and updater.lane_rows is None
    assert of_lane == [updater, updater] and lane_updaters([None, None]) == (None, [None, None])


def test_which_methods_share_a_network():
    key = lambda method, mode=None: MethodSpec(method, DENSITY, SCHEDULE, 0, mode and DropGrowOptions(mode)).lane_key  # noqa: E731
    assert key("gmp") == key("static") == key("set", "apply") == key("rigl", "apply") == ()  # with fixed masks too
    assert key("set", "skip") == key("rigl", "skip") == ()  # their lanes alone skip the update steps
    assert key("rigl", "extra") != ()  # iterations of its own, which every lane of a network would take
    assert key("edgepopup") not in ((), key("gmp")) and key("edgepopup")[0] == "shadow"  # with its own method only


def test_lanes_that_withhold_beside_lanes_that_step_need_an_optimizer_that_steps_each_lane(mlp):
    net = LaneNet.from_models([mlp(0), mlp(1)])
    masks = MaskManager(net)
    specs = [MethodSpec("set", DENSITY, SCHEDULE, 0, DropGrowOptions("skip")), None]
    updater, _ = lane_updaters(specs)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    lane_loss(net(torch.randn(2, 8, 16)), torch.randint(0, 4, (2, 8)))[0].backward()
    with pytest.raises(LotteryError, match=r"lanes \[0\] withhold .*LaneOptimizer"):
        updater.before_step(0, masks, opt)
