"""The structured strategies, each kind on a real model: whole units go in every tensor that shares them, each level
keeps round(units x density) of each group's units, the random control keeps the per-layer counts, and the smaller
model the export builds has the masked model's logits (lottery.structured.criteria, and the shrunk export of
lottery.export.shrink for their tickets)."""
import copy

import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.core.pruning import STRATEGIES
from lottery.export import shrink
from lottery.structured import criteria, units
from lottery.structured.units import unit_groups
from tests.structured.conftest import inputs

KINDS = [("lenet_300_100", "channel_norm"), ("conv2", "channel_norm"), ("resnet20", "channel_norm"),
         ("conv4_bn", "bn_scale"), ("bert", "head_norm"), ("vit", "head_norm"), ("resnet20", "structured_random")]


def assert_whole_units(groups, masks) -> dict[str, int]:
    """Every unit is gone from all the tensors of its group or from none; returns the units alive per group."""
    alive = {}
    for g in groups:
        used = torch.stack([m.alive(masks[m.name], g.units) for m in g.members])  # [members, units]
        consistent = used.all(0) | ~used.any(0)
        assert consistent.all(), f"{g.root}: units {(~consistent).nonzero().flatten().tolist()} gone from only some tensors"
        alive[g.root] = int(used.all(0).sum())
    return alive


@pytest.mark.parametrize("name, strategy", KINDS, ids=[f"{n}-{s}" for n, s in KINDS])
def test_each_level_removes_whole_units_from_every_tensor_that_shares_them(structured_model, name, strategy):
    model, masks, shape = structured_model(name)
    groups = [g for g in unit_groups(model, shape, masks.names) if not g.fixed]
    expected = {g.root: g.units for g in groups}
    pruned = {g.root for g in groups if strategy == "structured_random" or (g.kind == "head") == (strategy == "head_norm")}
    if strategy == "bn_scale":
        pruned = {g.root for g in groups if g.norms}
    for level in range(1, 4):
        before = {n: m.clone() for n, m in masks.masks.items()}
        masks.prune(0.3, strategy, torch.Generator().manual_seed(level))
        assert all((masks.masks[n] <= before[n]).all() for n in masks.names)  # masks only shrink
        expected = {r: max(1, round(0.7 * n)) if r in pruned else n for r, n in expected.items()}
        assert assert_whole_units(groups, masks.masks) == expected, level
        assert masks.counting == "units" and masks.density == masks.densities("units")
        for n in masks.names:  # the pruned weights are exactly zero
            assert (model.get_parameter(n)[~masks.masks[n]] == 0).all()
    out = [m.name for g in unit_groups(model, shape, masks.names) if g.fixed.endswith("output") for m in g.producers
           if m.name in masks.masks]
    assert all(masks.masks[n].flatten(1).any(1).all() for n in out)  # the output layer keeps its classes


@pytest.mark.parametrize("name, strategy", KINDS[:-1], ids=[f"{n}-{s}" for n, s in KINDS[:-1]])
def test_the_exported_smaller_model_has_the_masked_models_logits(structured_model, name, strategy):
    model, masks, shape = structured_model(name)
    masks.prune(0.5, strategy)
    masks.prune(0.5, strategy)
    x = inputs(name, shape)
    model.eval()
    small, report = shrink(model, x[:2], masks)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) == report.params_after < 0.75 * report.params_before
    assert any(kept < total for kept, total in report.units.values())


def test_the_random_control_keeps_the_tickets_units_per_layer(structured_model):
    model, ticket, shape = structured_model("resnet20")
    for _ in range(2):
        ticket.prune(0.3, "channel_norm")
    groups = [g for g in unit_groups(model, shape, ticket.names) if not g.fixed]
    draws = []
    for seed in (0, 0, 1):
        control = MaskManager(model, input_shape=shape)
        control.prune_to(ticket.densities("units"), STRATEGIES[STRATEGIES["channel_norm"].control],
                         torch.Generator().manual_seed(seed))
        assert assert_whole_units(groups, control.masks) == assert_whole_units(groups, ticket.masks)
        draws.append(control.masks)
    assert all(torch.equal(draws[0][n], draws[1][n]) for n in ticket.names)  # seeded
    assert any(not torch.equal(draws[0][n], draws[2][n]) for n in ticket.names)
    assert any(not torch.equal(draws[0][n], ticket.masks[n]) for n in ticket.names)


def test_channel_norm_removes_the_filters_of_smallest_l1_norm_and_head_norm_the_weakest_heads(structured_model):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1, 1], [0.1, 0.1, 3], [0.5, -0.5, 0.4], [2, 0, 0]]))
    same = copy.deepcopy(model)
    masks = MaskManager(model, input_shape=(3,))
    masks.prune_to({"0.weight": 0.5, "2.weight": 1.0}, "channel_norm")  # L1 norms 3, 3.2, 1.4, 2: keep 0 and 1
    assert masks.masks["0.weight"].all(1).tolist() == [True, True, False, False]
    assert masks.masks["2.weight"].all(0).tolist() == [True, True, False, False]
    l2 = MaskManager(same, input_shape=(3,))
    l2.prune_to({"0.weight": 0.5, "2.weight": 1.0}, STRATEGIES["channel_norm"].with_options(criteria.NormOptions(norm=2)))
    assert l2.masks["0.weight"].all(1).tolist() == [False, True, False, True]  # L2 norms 1.73, 3.0, 0.81, 2
    bert, masks, shape = structured_model("bert")
    with torch.no_grad():
        bert.get_parameter("bert.encoder.layer.0.attention.self.value.weight")[16:24] *= 100  # head 2 of layer 0
    masks.prune_to({n: 0.25 for n in masks.names}, "head_norm")
    value = masks.masks["bert.encoder.layer.0.attention.self.value.weight"]
    assert value.all(1).view(4, 8).all(1).tolist() == [False, False, True, False]


def test_bn_scale_keeps_the_largest_scaling_factors_and_penalises_all_of_them(structured_model):
    model, masks, shape = structured_model("conv4_bn")
    with torch.no_grad():
        model.features[1].weight.copy_(torch.linspace(-1, 1, 64))  # |γ| smallest in the middle
    masks.prune(0.5, "bn_scale")
    kept = masks.masks["features.0.weight"].flatten(1).all(1)
    assert kept.sum() == 32 and not kept[16:48].any() and kept[:16].all() and kept[48:].all()
    penalty = STRATEGIES["bn_scale"].training_penalty(model)
    assert penalty.weight == 1e-4 and penalty.names == tuple(f"features.{i}.weight" for i in (1, 4, 8, 11))
    off = STRATEGIES["bn_scale"].with_options(criteria.SlimmingOptions(penalty=0)).training_penalty(model)
    assert off is None and STRATEGIES["channel_norm"].training_penalty(model) is None


def test_the_penalty_adds_lambda_sign_gamma_to_the_gradient(structured_model):
    from lottery.core.schema import OptimConfig
    from lottery.training.module import ClassificationModule

    model, _, _ = structured_model("conv4_bn")
    penalty = STRATEGIES["bn_scale"].training_penalty(model)
    module = ClassificationModule(model, 10, OptimConfig(), penalty=penalty)
    gammas = [model.get_parameter(n) for n in penalty.names]
    term = module.penalty_term()
    assert term.item() == pytest.approx(1e-4 * sum(g.abs().sum().item() for g in gammas), rel=1e-6)
    term.backward()
    assert all(torch.equal(g.grad, 1e-4 * g.detach().sign()) for g in gammas)


def test_a_structured_strategy_needs_the_input_shape_and_says_so_when_the_package_is_missing(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(LotteryError, match=r"strategy channel_norm traces the model: build the MaskManager with input_shape"):
        MaskManager(model).prune(0.5, "channel_norm")
    monkeypatch.setitem(__import__("sys").modules, "torch_pruning", None)
    monkeypatch.setattr(units, "_CACHE", type(units._CACHE)())
    with pytest.raises(LotteryError, match=r"needs the torch_pruning package, which is not installed: pip install -e "
                                           r"\"\.\[structured\]\""):
        MaskManager(model, input_shape=(3,)).prune(0.5, "channel_norm")


def test_every_structured_strategy_is_declared_with_its_control():
    structured = {n: s for n, s in STRATEGIES.items() if s.structured}
    assert set(structured) >= {"channel_norm", "bn_scale", "head_norm", "structured_random"}
    assert all(s.needs_model and STRATEGIES[s.control].structured for s in structured.values())
    assert STRATEGIES["layer_magnitude"].control == "layer_random" and not STRATEGIES["layer_magnitude"].needs_model


class Shuffled(torch.nn.Module):
    """A convnet with ShuffleNet's channel shuffle between its convolutions: a graph Torch-Pruning does not follow."""

    def __init__(self, num_classes, input_shape):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(input_shape[0], 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        b, c, h, w = x.shape
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.fc(torch.relu(self.conv2(x)).mean((2, 3)))


@pytest.mark.parametrize("strategy, phrase", [
    ("channel_norm", "does not follow layer 'conv1': the model without one of its units fails to run"),
    ("head_norm", "has no prunable attention heads"),
    ("bn_scale", "has no prunable channels or neurons with a BatchNorm"),
])
def test_a_model_the_graph_cannot_follow_is_one_line_naming_the_layer_before_anything_is_written(
        tmp_path, capsys, monkeypatch, strategy, phrase):
    from lottery.models import MODELS
    from tests.cli.helpers import DEMO, TINY_RUN, one_line_error, run_main

    monkeypatch.setitem(MODELS, "shuffled", Shuffled)
    model = "model.name=shuffled" if strategy == "channel_norm" else "model.name=lenet_300_100"
    code, _, err = run_main(capsys, "run", "--config", DEMO, f"runs_dir={tmp_path}", *TINY_RUN, model,
                            f"prune.strategy={strategy}")
    assert code == 2
    one_line_error(err, phrase)
    assert not any(tmp_path.iterdir())


def test_as_lanes_each_lanes_scaling_factors_get_their_own_penalty_gradient(structured_model):
    from lottery.core.schema import OptimConfig
    from lottery.lanes import LaneNet
    from lottery.training.module import ClassificationModule

    models = [structured_model("conv4_bn", seed=s)[0] for s in (0, 1)]
    penalty = STRATEGIES["bn_scale"].training_penalty(models[0])
    net = LaneNet.from_models(models)
    ClassificationModule(net, 10, OptimConfig(), penalty=penalty).penalty_term().backward()
    for name in penalty.names:
        stacked = net.get_parameter(name)
        assert stacked.shape[0] == 2 and torch.equal(stacked.grad, 1e-4 * stacked.detach().sign())
