import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.sparsity.pruning_at_init import (
    PAI_METHODS,
    grasp_scores,
    prune_at_init,
    snip_scores,
    synflow_scores,
)
from tests.conftest import Tiny


class ConvBN(nn.Module):
    """Conv + BatchNorm + Linear: exercises eval mode and buffer handling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        with torch.no_grad():  # non-trivial statistics, so that a change would show
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _batches(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _total(masks):
    return sum(m.numel() for m in masks.masks.values())


def test_magnitude_keeps_the_largest_weights_globally(tiny):
    masks = MaskManager(tiny)
    prune_at_init("magnitude", tiny, masks, 0.5)  # keep 6 of 12: |w| >= 0.4
    assert masks.masks["fc1.weight"].tolist() == [[False, True], [True, False], [False, True]]
    assert masks.masks["fc2.weight"].tolist() == [[False, True, True], [True, False, False]]


@pytest.mark.parametrize("method", sorted(PAI_METHODS))
def test_every_method_keeps_the_exact_count_and_only_changes_masks(method):
    model = ConvBN().train()
    before = _snapshot(model)
    masks = MaskManager(model)
    start = {n: torch.rand(m.shape, generator=torch.Generator().manual_seed(5)) > 0.2 for n, m in masks.masks.items()}
    masks.set_masks(start)
    applied = _snapshot(model)
    prune_at_init(method, model, masks, 0.3, batches=_batches(), iterations=3 if method == "synflow" else None,
                  generator=torch.Generator().manual_seed(0))
    kept = sum(int(m.sum()) for m in masks.masks.values())
    assert kept == round(_total(masks) * 0.3)
    for n, m in masks.masks.items():
        assert (m <= start[n]).all()  # pruned weights never come back
        w = model.get_parameter(n)
        assert torch.equal(w[m], applied[n][m]) and (w[~m] == 0).all()  # survivors untouched
    for k, v in model.state_dict().items():
        if k not in masks.masks:
            assert torch.equal(v, before[k]), k  # biases and BatchNorm statistics untouched
    assert model.training and model.bn.training  # mode restored
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("scorer", [snip_scores, grasp_scores, synflow_scores])
def test_scoring_leaves_the_model_bit_identical(scorer):
    model = ConvBN().train()
    before = _snapshot(model)
    masks = {n: torch.ones_like(model.get_parameter(n), dtype=torch.bool) for n in ["conv.weight", "fc.weight"]}
    scorer(model, masks, _batches(), (3, 4, 4))
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_snip_is_gradient_times_weight():
    model, batches = ConvBN().eval(), _batches()
    masks = {"conv.weight": torch.ones(4, 3, 3, 3, dtype=torch.bool), "fc.weight": torch.ones(3, 64, dtype=torch.bool)}
    scores = snip_scores(model, masks, batches)
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
    for n in masks:
        p = model.get_parameter(n)
        torch.testing.assert_close(scores[n], (p.grad * p).abs().detach())


def _two_layer(w1, w2):
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Tanh(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[2].weight.copy_(w2)
    return model


def test_grasp_is_weight_times_hessian_gradient_product_and_keeps_the_highest():
    w1, w2 = torch.tensor([[0.5, -1.0], [0.3, 0.8]]), torch.tensor([[1.2, -0.4], [-0.7, 0.9]])
    x, y = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.2]]), torch.tensor([0, 1, 1])
    model = _two_layer(w1, w2)
    t = 200.0

    def loss(flat):  # the same loss as a function of all weights, for an exact Hessian
        a, b = flat[:4].view(2, 2), flat[4:].view(2, 2)
        return F.cross_entropy(torch.tanh(x @ a.T) @ b.T / t, y)

    flat = torch.cat([w1.flatten(), w2.flatten()])
    g = torch.autograd.functional.jacobian(loss, flat)
    hg = torch.autograd.functional.hessian(loss, flat) @ g
    expected = flat * hg  # the paper's S(-w) is the negative of this; it removes the top of S(-w)
    masks = {"0.weight": torch.ones(2, 2, dtype=torch.bool), "2.weight": torch.ones(2, 2, dtype=torch.bool)}
    scores = grasp_scores(model, masks, [(x, y)], temperature=t)
    got = torch.cat([scores["0.weight"].flatten(), scores["2.weight"].flatten()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-12)

    manager = MaskManager(model)
    prune_at_init("grasp", model, manager, 0.5, batches=[(x, y)])
    kept = torch.cat([manager.masks["0.weight"].flatten(), manager.masks["2.weight"].flatten()])
    assert set(kept.nonzero().flatten().tolist()) == set(torch.topk(expected, 4).indices.tolist())


def test_synflow_matches_the_closed_form_of_a_linear_chain():
    w1, w2 = torch.tensor([[0.5, -1.0], [0.3, 0.8]]), torch.tensor([[1.2, -0.4], [-0.7, 0.9]])
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[1].weight.copy_(w2)
    masks = {"0.weight": torch.ones(2, 2, dtype=torch.bool), "1.weight": torch.ones(2, 2, dtype=torch.bool)}
    scores = synflow_scores(model, masks, input_shape=(2,))
    # R = 1ᵀ|W2||W1|1: a W1 entry (i, j) scores |W1_ij| * sum_k |W2_ki|; a W2 entry (k, i) |W2_ki| * sum_j |W1_ij|.
    torch.testing.assert_close(scores["0.weight"], (w1.abs() * w2.abs().sum(0)[:, None]).double())
    torch.testing.assert_close(scores["1.weight"], (w2.abs() * w1.abs().sum(1)[None, :]).double())
    assert torch.equal(model[0].weight, w1) and torch.equal(model[1].weight, w2)


def test_synflow_reads_the_input_shape_from_batches_and_needs_one_otherwise():
    model = ConvBN()
    prune_at_init("synflow", model, MaskManager(model), 0.5, batches=_batches(1), iterations=2)
    with pytest.raises(LotteryError, match="input_shape"):
        prune_at_init("synflow", model, MaskManager(model), 0.5)


def test_synflow_iterations_reach_the_target_and_avoid_layer_collapse():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 2))
    masks = MaskManager(model)
    prune_at_init("synflow", model, masks, 0.02, input_shape=(20,), iterations=20)
    counts = masks.counts()
    assert sum(k for k, _ in counts.values()) == round(_total(masks) * 0.02)
    assert all(k > 0 for k, _ in counts.values())  # no layer is cut entirely (Tanaka et al. 2020)


def test_pruned_weights_are_not_revived(tiny):
    masks = MaskManager(tiny)
    start = {n: torch.ones_like(m) for n, m in masks.masks.items()}
    start["fc1.weight"][0, 1] = False  # -0.9, the largest weight
    masks.set_masks(start)
    prune_at_init("magnitude", tiny, masks, 0.25)
    assert not masks.masks["fc1.weight"][0, 1]
    assert sum(int(m.sum()) for m in masks.masks.values()) == 3


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(LotteryError, match="grasp, magnitude, random, snip, synflow"):
        PAI_METHODS.lookup("lamp")


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_methods_need_batches(method):
    model = Tiny()
    with pytest.raises(LotteryError, match="batches"):
        prune_at_init(method, model, MaskManager(model), 0.5)


@pytest.mark.parametrize("density", [0.0, 1.5])
def test_density_outside_the_unit_interval_is_an_error(density):
    model = Tiny()
    with pytest.raises(LotteryError, match="density"):
        prune_at_init("magnitude", model, MaskManager(model), density)
