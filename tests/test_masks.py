import pytest
import torch
from conftest import mlp
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
def test_density_after_k_levels_is_one_minus_p_to_the_k(strategy):
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


def test_pruned_weights_stay_zero_in_a_plain_training_loop():
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


def test_state_dict_round_trip_through_torch_save(tmp_path):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.5)
    torch.save(masks.state_dict(), tmp_path / "m.pt")
    fresh = MaskManager(mlp(1))
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert all(torch.equal(fresh.masks[n], masks.masks[n]) for n in masks.names)
    assert fresh.density == masks.density
    assert (fresh.model[0].weight[~fresh.masks["0.weight"]] == 0).all()


def test_wrong_shapes_or_names_are_clear_errors():
    masks = MaskManager(mlp())
    other = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 24), nn.ReLU(), nn.Linear(24, 4))
    with pytest.raises(LotteryError, match="shape .*different architecture"):
        masks.load_state_dict(MaskManager(other).state_dict())
    with pytest.raises(LotteryError, match="missing"):
        masks.load_state_dict({"masks": {"0.weight": masks.masks["0.weight"]}})
    with pytest.raises(LotteryError, match="fraction must be in"):
        masks.prune(1.0)


def test_masks_follow_the_model_to_another_device_or_dtype():
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.5)
    model.to(torch.float64)  # moves parameters in place, like .to("cuda") does
    masks.apply()
    assert model[0].weight.dtype == torch.float64
    assert (model[0].weight[~masks.masks["0.weight"]] == 0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_masks_move_with_the_model():
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


def test_the_core_imports_only_torch():
    import subprocess
    import sys

    code = ("import sys, lottery; from lottery import MaskManager, load_ticket, capture; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pytorch_lightning', 'lightning_fabric', "
            "'torchvision', 'torchmetrics', 'omegaconf', 'safetensors', 'matplotlib', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
