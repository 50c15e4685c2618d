"""Sparse kernels: same outputs as dense, chosen per layer only where measured faster."""
import pytest
import torch
from torch import nn

from lottery.core.masks import MaskManager
from lottery.export import CSRLinear, sparsify
from lottery.export.sparse import SemiStructuredLinear, is_n_m


@pytest.mark.parametrize("shape", [(1, 20), (64, 20), (3, 5, 20)])
def test_csr_linear_computes_what_the_dense_layer_does(shape):
    torch.manual_seed(0)
    layer = nn.Linear(20, 7)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) < 0.1)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(CSRLinear(layer)(x), layer(x))


def test_sparsify_measures_every_linear_layer_and_keeps_the_logits(pruned):
    model, masks, x = pruned("lenet_300_100", 0.036)
    lines = []
    fast, choice = sparsify(model, x, threads=1, log=lines.append)
    assert set(choice) == {"fc1", "fc2", "fc3"} and set(choice.values()) <= {"dense", "csr"}
    assert len(lines) == 3 and all(" -> " in line and "dense" in line and "csr" in line for line in lines)
    for name, kind in choice.items():
        assert isinstance(fast.get_submodule(name), CSRLinear if kind == "csr" else nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))


def test_nm_magnitude_masks_fit_2_4_kernels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    masks = MaskManager(model)
    masks.prune(0.3, "nm_magnitude")
    assert not is_n_m(model[0].weight)  # 70% left: not yet 2:4
    for _ in range(3):
        masks.prune(0.3, "nm_magnitude")  # 70% -> 49% -> 34%
    assert all(is_n_m(model.get_parameter(n)) for n in masks.names)
    assert abs(masks.sparsity() - (1 - 0.7 ** 4)) < 0.01


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
                    reason="2:4 semi-structured kernels need CUDA sm80+")
@pytest.mark.cuda
def test_semi_structured_linear_on_cuda():
    torch.manual_seed(0)
    layer = nn.Linear(128, 128).half().cuda()
    masks = MaskManager(layer)
    masks.prune_to({"weight": 0.5}, "nm_magnitude")
    x = torch.randn(64, 128, dtype=torch.half, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(SemiStructuredLinear(layer)(x), layer(x), atol=1e-2, rtol=1e-2)
        _, choice = sparsify(nn.Sequential(layer), x)
    assert choice["0"] in ("dense", "2:4")
