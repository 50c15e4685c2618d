"""Edge-popup (Ramanujan et al. 2020) in a plain loop: no weight ever changes (bitwise), each layer keeps exactly k
weights at every step, the scores get the straight-through gradient of a hand computation, the initial weights are
the paper's (Kaiming normal, signed constant, scaled), and bad options are one clear error."""
import math

import pytest
import torch
from torch import nn

from lottery import MaskManager
from lottery.core.errors import LotteryError
from lottery.sparsity.edgepopup import EdgePopup, EdgePopupOptions, frozen_weights, kaiming_std, score_init
from lottery.sparsity.schedule import UpdateSchedule
from tests.sparsity.steps import random_batch, updater_step

SCHEDULE = UpdateSchedule(end_step=0)  # edge-popup updates at every step; the schedule is not read
DENSITY = {"0.weight": 0.3, "2.weight": 0.5, "4.weight": 0.8}


def _run(mlp, options=EdgePopupOptions(), steps=25, check=None):
    model = mlp(0)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = MaskManager(model)
    updater = EdgePopup(SCHEDULE, DENSITY, [0], options)
    updater.start(masks)
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        if check:
            check(step, model, masks, updater, init)
        updater_step(model, masks, opt, updater, step, *random_batch(g))
    return model, masks, updater, init


@pytest.mark.parametrize("weights", ["kaiming_normal", "signed_constant", "init"])
def test_no_weight_ever_changes_and_every_layer_keeps_exactly_k(mlp, weights):
    history = []

    def check(step, model, masks, updater, init):
        for name, density in DENSITY.items():
            mask, param = masks.masks[name], model.get_parameter(name)
            frozen = frozen_weights(init[name], tuple(init[name].shape), density, EdgePopupOptions(weights))
            assert int(mask.sum()) == round(mask.numel() * density), (name, step)  # exactly k, every step
            assert torch.equal(param, frozen * mask), (name, step)  # the frozen weights, bitwise, and zeros
            if weights == "init":
                assert torch.equal(param[mask], init[name][mask])
        for name, param in model.named_parameters():
            if name not in DENSITY:
                assert torch.equal(param, init[name]), name  # biases: never trained either
        history.append({n: m.clone() for n, m in masks.masks.items()})

    _run(mlp, EdgePopupOptions(weights), check=check)
    assert any(not torch.equal(history[-1][n], history[0][n]) for n in DENSITY)  # what is learned is the mask


def test_the_scores_get_the_straight_through_gradient_of_a_hand_computation():
    """One Linear(3 -> 2) layer, no bias, density 0.5 (k = 3 of 6), weights as they are, SGD with lr 0.1:
    L = sum(c * (x @ (w * m).T)), so dL/dw_eff[i, j] = c[i] * x[j] and dL/ds = c[i] * x[j] * w[i, j] * sign(s[i, j])."""
    layer = nn.Linear(3, 2, bias=False)
    w = torch.tensor([[0.5, -1.0, 2.0], [1.5, -0.25, 0.75]])
    s = torch.tensor([[0.3, -0.9, 0.1], [-0.2, 0.8, 0.05]])  # |s| ranks (0,1), (1,1), (0,0) first: k = 3
    with torch.no_grad():
        layer.weight.copy_(w)
    masks = MaskManager(layer)
    updater = EdgePopup(SCHEDULE, {"weight": 0.5}, [0], EdgePopupOptions(weights="init"))
    updater.start(masks)
    updater.shadow["weight"] = s.clone()  # hand-chosen scores instead of the seeded draw
    masks.replace_masks({"weight": torch.tensor([[True, True, False], [False, True, False]])})
    with torch.no_grad():
        layer.weight.copy_(w * masks.masks["weight"])
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x, c = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, -3.0])
    opt.zero_grad()
    (c * layer(x)).sum().backward()
    updater.before_step(0, masks, opt)
    by_hand = torch.tensor([[c[i] * x[j] * w[i, j] * math.copysign(1, s[i, j]) for j in range(3)] for i in range(2)])
    torch.testing.assert_close(layer.weight.grad, by_hand, rtol=0, atol=1e-6)  # pruned entries' scores too
    opt.step()
    updater.update(0, masks, opt)
    scores = s - 0.1 * by_hand
    torch.testing.assert_close(updater.shadow["weight"], scores, rtol=0, atol=1e-6)
    top = torch.zeros(6, dtype=torch.bool)
    top[scores.abs().flatten().topk(3).indices] = True
    assert torch.equal(masks.masks["weight"], top.view(2, 3))
    assert torch.equal(layer.weight.detach(), w * top.view(2, 3))


def test_the_initial_weights_are_the_papers():
    torch.manual_seed(0)
    w = torch.randn(50, 40) * 0.07  # a normal init of another standard deviation (LeNet's is Glorot's)
    sigma = kaiming_std((50, 40))
    assert sigma == pytest.approx(math.sqrt(2 / 40))
    signed = frozen_weights(w, (50, 40), 0.3, EdgePopupOptions("signed_constant"))
    assert torch.equal(signed.abs(), torch.full_like(w, sigma)) and torch.equal(signed.sign(), w.sign())
    normal = frozen_weights(w, (50, 40), 0.3, EdgePopupOptions("kaiming_normal"))
    assert float(normal.std()) == pytest.approx(sigma, rel=1e-5)
    torch.testing.assert_close(normal / w, torch.full_like(w, sigma / float(w.std())))  # weight for weight, rescaled
    scaled = frozen_weights(w, (50, 40), 0.3, EdgePopupOptions("signed_constant", scale_fan=True))
    torch.testing.assert_close(scaled.abs(), torch.full_like(w, sigma / math.sqrt(0.3)))  # σ of fan_in x k
    lanes = frozen_weights(torch.stack([w, 2 * w]), (50, 40), 0.3, EdgePopupOptions("kaiming_normal"))
    torch.testing.assert_close(lanes[1], normal)  # each lane's own standard deviation
    scores = score_init((50, 40), seed=3, index=1)
    assert scores.abs().max() <= 1 / math.sqrt(40) and torch.equal(scores, score_init((50, 40), seed=3, index=1))


@pytest.mark.parametrize("make, message", [
    (lambda: EdgePopupOptions(weights="xavier"), "methods.edgepopup.weights='xavier' must be one of"),
    (lambda: EdgePopupOptions(density=1.0), r"methods.edgepopup.density=1.0 must be in \(0, 1\)"),
    (lambda: EdgePopupOptions(density=0.0), r"methods.edgepopup.density=0.0 must be in \(0, 1\)"),
    (lambda: EdgePopup(SCHEDULE, {"a": 1.5}), r"must be in \(0, 1\]"),
])
def test_bad_options_are_one_clear_error(make, message):
    with pytest.raises(LotteryError, match=message):
        make()


def test_a_step_before_start_and_a_start_on_pruned_weights_are_refused(mlp):
    model = mlp(0)
    masks = MaskManager(model)
    updater = EdgePopup(SCHEDULE, DENSITY)
    with pytest.raises(LotteryError, match=r"start\(masks\) must run before the first step"):
        updater.before_step(0, masks, torch.optim.SGD(model.parameters(), lr=0.1))
    masks.prune_to(DENSITY, "layer_random", torch.Generator().manual_seed(0))
    with pytest.raises(LotteryError, match="needs the dense initial weights"):
        updater.start(masks)
