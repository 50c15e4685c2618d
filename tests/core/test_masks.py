import pytest
import torch
from torch import nn

from lottery import LotteryError, MaskManager


def test_default_prunable_is_every_linear_and_conv_weight(tiny):
    assert MaskManager(tiny).names == ["fc1.weight", "fc2.weight"]
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    assert MaskManager(conv).names == ["0.weight", "3.weight"]


def test_prune_by_hand(tiny):
    masks = MaskManager(tiny)
    masks.prune(0.5, "layer_magnitude")
    assert masks.masks["fc1.weight"].tolist() == [[False, True], [True, False], [False, True]]
    assert masks.masks["fc2.weight"].tolist() == [[False, True, True], [True, False, False]]
    assert tiny.fc1.weight[0, 0] == 0 and tiny.fc1.weight[0, 1] == -0.9  # zeros written at once
    assert masks.sparsity() == pytest.approx(0.5)


def test_rates_and_exclusions(tiny):
    masks = MaskManager(tiny, rates={"fc2.weight": 0.5})
    masks.prune(0.5)
    assert masks.counts() == {"fc1.weight": (3, 6), "fc2.weight": (4, 6)}  # fc2 at 25%: round(4.5) = 4
    only = MaskManager(tiny, exclude=["fc2.*"])
    assert only.names == ["fc1.weight"]
    with pytest.raises(LotteryError, match="matches no prunable"):
        MaskManager(tiny, rates={"fc9.weight": 0.5})
    with pytest.raises(LotteryError, match="matches no parameter"):
        MaskManager(tiny, include=["nope*"])


@pytest.mark.parametrize("strategy", ["global_magnitude", "layer_magnitude", "global_random", "layer_random"])
def test_density_after_k_levels_is_one_minus_p_to_the_k(mlp, strategy):
    model = mlp()
    masks = MaskManager(model, rates={"4.weight": 0.5})
    previous = {n: m.clone() for n, m in masks.masks.items()}
    for k in range(1, 13):
        masks.prune(0.2, strategy, torch.Generator().manual_seed(k))
        counts = masks.counts()
        for n, (kept, total) in counts.items():
            assert (masks.masks[n] <= previous[n]).all()  # masks only shrink
            rate = 0.5 if n == "4.weight" else 1.0
            if strategy.startswith("layer") or rate != 1.0:
                assert abs(kept - total * (1 - 0.2 * rate) ** k) <= 1  # within one weight per tensor
        shared = [n for n in counts if n != "4.weight"]
        kept = sum(counts[n][0] for n in shared)
        assert abs(kept - sum(counts[n][1] for n in shared) * 0.8 ** k) <= len(shared)
        previous = {n: m.clone() for n, m in masks.masks.items()}


def _rows_by_norm(weights, masks, density, generator, network):
    """A structured strategy of the test's own (no dependency graph): each tensor's rows by their norm, alone."""
    assert network.module is not None and network.input_shape == (16,)
    new = {}
    for n, w in weights.items():
        rows = w.detach().norm(dim=1).masked_fill(~masks[n].any(1), -1)
        keep = rows.topk(max(1, round(w.shape[0] * density[n]))).indices
        new[n] = masks[n] & torch.zeros(w.shape[0], dtype=torch.bool).index_fill_(0, keep, True)[:, None]
    return new


def test_a_structured_strategy_gets_the_model_and_its_densities_count_units(mlp, tmp_path):
    from lottery.core.files import load_masks, save_masks
    from lottery.core.methods import Strategy

    rows = Strategy(name="rows_by_norm", select=_rows_by_norm, needs_model=True, structured=True, summary="test")
    model = mlp()
    masks = MaskManager(model, rates={"4.weight": 0.5}, input_shape=(16,))
    units = 32
    for _ in range(3):  # each level removes 20% of each tensor's remaining units
        masks.prune(0.2, rows)
        units = round(units * 0.8)
        assert masks.counting == "units"
        assert masks.density == masks.densities("units")
        assert masks.density["0.weight"] == units / 32 != masks.densities("weights")["2.weight"]
    save_masks(tmp_path / "m.safetensors", masks)
    fresh = MaskManager(mlp(1), input_shape=(16,))
    fresh.load_state_dict(load_masks(tmp_path / "m.safetensors"))
    assert fresh.counting == "units" and fresh.density == masks.density
    fresh.prune(0.2, "layer_magnitude")  # an unstructured strategy counts weights again, from the masks
    assert fresh.counting == "weights" and fresh.density["0.weight"] == pytest.approx(0.8 * units / 32)
    with pytest.raises(LotteryError, match="strategy rows_by_norm traces the model: build the MaskManager with input_shape"):
        MaskManager(mlp()).prune(0.2, rows)
    state = masks.state_dict() | {"density": {n: 1.0 for n in masks.names}}
    with pytest.raises(LotteryError, match="density targets .* units kept. contradict its masks"):
        fresh.load_state_dict(state)


def test_pruned_weights_stay_zero_in_a_plain_training_loop(mlp):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.7)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(5):
        loss = model(torch.randn(8, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        masks.apply()
        for n in masks.names:
            assert (model.get_parameter(n)[~masks.masks[n]] == 0).all()


def test_state_dict_round_trip_through_torch_save(mlp, tmp_path):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.5)
    torch.save(masks.state_dict(), tmp_path / "m.pt")
    fresh = MaskManager(mlp(1))
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert all(torch.equal(fresh.masks[n], masks.masks[n]) for n in masks.names)
    assert fresh.density == masks.density
    assert (fresh.model[0].weight[~fresh.masks["0.weight"]] == 0).all()


def test_wrong_shapes_or_names_are_clear_errors(mlp):
    masks = MaskManager(mlp())
    other = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 24), nn.ReLU(), nn.Linear(24, 4))
    with pytest.raises(LotteryError, match="shape .*different architecture"):
        masks.load_state_dict(MaskManager(other).state_dict())
    with pytest.raises(LotteryError, match="missing"):
        masks.load_state_dict({"masks": {"0.weight": masks.masks["0.weight"]}})
    with pytest.raises(LotteryError, match="fraction must be in"):
        masks.prune(1.0)


def test_masks_follow_the_model_to_another_device_or_dtype(mlp):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.5)
    model.to(torch.float64)  # moves parameters in place, like .to("cuda") does
    masks.apply()
    assert model[0].weight.dtype == torch.float64
    assert (model[0].weight[~masks.masks["0.weight"]] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_masks_move_with_the_model(mlp):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.5)
    model.cuda()
    masks.apply()
    assert masks.masks["0.weight"].device.type == "cuda"
    assert (model[0].weight[~masks.masks["0.weight"]] == 0).all()
    masks.prune(0.5)
    assert masks.sparsity() == pytest.approx(0.75, abs=0.01)


def test_works_on_a_torchvision_resnet():
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    masks = MaskManager(model, rates={"fc.weight": 0.5})
    masks.prune(0.2)
    assert len(masks.names) == 21  # 20 convolutions + fc
    assert masks.sparsity() == pytest.approx(0.2, abs=0.001)



@pytest.mark.parametrize("replace", ["load_state_dict_assign", "new_parameter", "swap_module"])
def test_replaced_parameters_stay_masked(mlp, replace):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.5)
    masks.apply()
    fresh = {k: torch.randn_like(v) + 10 for k, v in model.state_dict().items()}  # no zeros anywhere
    if replace == "load_state_dict_assign":
        model.load_state_dict(fresh, assign=True)
    elif replace == "new_parameter":
        model[2].weight = nn.Parameter(fresh["2.weight"])
    else:
        model[4] = nn.Linear(24, 4)
    masks.apply()
    for n in masks.names:
        assert (model.get_parameter(n)[~masks.masks[n]] == 0).all(), n
    assert masks.sparsity() == pytest.approx(0.5, abs=0.01)


def test_a_replaced_parameter_of_another_shape_is_an_error(mlp):
    model = mlp()
    masks = MaskManager(model)
    model[2].weight = nn.Parameter(torch.randn(5, 32))
    with pytest.raises(LotteryError, match=r"'2.weight' was replaced by one of shape \(5, 32\)"):
        masks.apply()


def _state(manager, **change):
    state = manager.state_dict()
    state.update(change)
    return state


@pytest.mark.parametrize("call, message", [
    (lambda m: m.prune(1.5), "fraction must be in"),
    (lambda m: m.prune("0.2"), "fraction must be a finite number, got '0.2'"),
    (lambda m: m.prune(True), "fraction must be a finite number, got True"),
    (lambda m: m.prune(float("nan")), "fraction must be a finite number"),
    (lambda m: m.prune(0.2, "magnitude"), "unknown pruning strategy 'magnitude'"),
    (lambda m: m.prune(0.2, 3), "unknown pruning strategy '3'"),
    (lambda m: m.prune(0.2, generator=5), "generator must be a torch.Generator"),
    (lambda m: m.prune_to([0.5, 0.5, 0.5]), "density must be a dict"),
    (lambda m: m.prune_to({"0.weight": 0.5}), r"missing \['2.weight', '4.weight'\]"),
    (lambda m: m.prune_to({**dict.fromkeys(m.names, 0.5), "9.weight": 0.5}), r"unexpected \['9.weight'\]"),
    (lambda m: m.prune_to(dict.fromkeys(m.names, 1.5)), r"fractions kept in \[0, 1\]"),
    (lambda m: MaskManager(m.model, rates={"0.weight": "half"}), "rate for '0.weight' must be a finite number"),
    (lambda m: MaskManager(m.model, rates=[("0.weight", 0.5)]), "rates must be a dict"),
    (lambda m: MaskManager(m.model, rates={"0.weight": -1}), "must be >= 0"),
    (lambda m: MaskManager(m.model, include="0.weight"), "include must be a list of parameter-name patterns"),
    (lambda m: MaskManager(m.model, exclude="4.weight"), "exclude must be a list of parameter-name patterns"),
    (lambda m: MaskManager("model"), "needs an nn.Module"),
    (lambda m: m.load_state_dict(_state(m, density=dict.fromkeys(m.names, 0.1))), "contradict its masks"),
    (lambda m: m.load_state_dict(_state(m, density={"0.weight": 0.5})), "the state's density does not fit"),
    (lambda m: m.load_state_dict(_state(m, masks={n: x.float() * 2 for n, x in m.masks.items()})), "values other than 0 and 1"),
    (lambda m: m.set_masks({n: x.tolist() for n, x in m.masks.items()}), "must be a tensor"),
    (lambda m: m.load_state_dict([1, 2]), "not a MaskManager state"),
])
def test_bad_arguments_are_lottery_errors(mlp, call, message):
    masks = MaskManager(mlp())
    masks.prune(0.5)
    before = {n: m.clone() for n, m in masks.masks.items()}
    with pytest.raises(LotteryError, match=message):
        call(masks)
    assert all(torch.equal(masks.masks[n], before[n]) for n in masks.names)  # nothing changed
