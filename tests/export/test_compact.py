"""Compact export: surviving values + bit-packed mask; the same logits, a tenth of the file or less."""
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from lottery.core.errors import LotteryError
from lottery.core.files import atomic_path
from lottery.export import export, load_compact, save_compact
from lottery.models import create_model


@pytest.mark.parametrize("name", ["lenet_300_100", "conv2", "resnet20"])
def test_at_3_6_percent_the_file_is_at_most_a_tenth_of_the_dense_file(pruned, tmp_path, name):
    model, masks, x = pruned(name, 0.036, dead=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "dense.safetensors"))
    path = save_compact(model, tmp_path / "c.safetensors", masks)
    ratio = path.stat().st_size / (tmp_path / "dense.safetensors").stat().st_size
    assert ratio <= 0.10, f"{name}: compact is {ratio:.1%} of the dense file"
    fresh = create_model(name, 10, tuple(x.shape[1:])).eval()
    loaded = load_compact(path).into(fresh)
    assert all(torch.equal(loaded.masks[n], masks.masks[n]) for n in masks.names)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))  # fp32 values: bit for bit


@pytest.mark.parametrize("dtype, atol", [("fp16", 2e-2), ("bf16", 1e-1)])
def test_half_precision_values_are_smaller_and_close(pruned, tmp_path, dtype, atol):
    model, masks, x = pruned("lenet_300_100", 0.2)
    full = save_compact(model, tmp_path / "32.safetensors", masks)
    half = export(model, "compact", tmp_path / "16.safetensors", masks, dtype=dtype)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    compact = load_compact(half)
    assert compact.metadata["dtype"] == dtype
    fresh = create_model("lenet_300_100", 10, (1, 28, 28)).eval()
    compact.into(fresh)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=atol, rtol=0)


LOADER = '''
import json, sys
sys.modules["lottery"] = None  # importing lottery now fails: the file must load without it
import numpy as np, torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file

model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))
# The recipe of docs/tickets.md:
with safe_open(sys.argv[1], framework="pt") as f:
    shapes = json.loads(f.metadata()["shapes"])
    state = {k[len("dense/"):]: f.get_tensor(k) for k in f.keys() if k.startswith("dense/")}
    for name, shape in shapes.items():
        mask = np.unpackbits(f.get_tensor(f"mask/{name}").numpy(), count=int(np.prod(shape))).astype(bool)
        weight = torch.zeros(int(np.prod(shape)))
        weight[torch.from_numpy(mask)] = f.get_tensor(f"values/{name}").float()
        state[name] = weight.view(shape)
model.load_state_dict(state)
io = load_file(sys.argv[2])
assert torch.equal(model(io["x"]), io["y"]), "logits differ"
print("ok")
'''


def test_loads_with_torch_and_safetensors_only(mlp, tmp_path):
    from lottery.core.masks import MaskManager

    model = mlp(3)
    masks = MaskManager(model)
    masks.prune_to({n: 0.3 for n in masks.names})
    x = torch.randn(5, 16)
    with torch.no_grad():
        save_file({"x": x, "y": model(x)}, str(tmp_path / "io.safetensors"))
    path = save_compact(model, tmp_path / "c.safetensors", masks)
    proc = subprocess.run([sys.executable, "-c", LOADER, str(path), str(tmp_path / "io.safetensors")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_bad_input_is_refused_and_leaves_nothing(pruned, tmp_path):
    model, masks, _ = pruned("lenet_300_100", 0.5, dead=False)
    with pytest.raises(LotteryError, match="compact dtype 'fp8' is not one of fp32, fp16, bf16"):
        save_compact(model, tmp_path / "c.safetensors", masks, dtype="fp8")
    with pytest.raises(LotteryError, match="name no entry"):
        save_compact(model, tmp_path / "c.safetensors", {"nope.weight": torch.ones(3, dtype=torch.bool)})
    save_file({"w": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(LotteryError, match="not a compact export"):
        load_compact(tmp_path / "plain.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.safetensors"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
