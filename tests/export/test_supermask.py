"""The supermask export of a strong ticket: a seed and a packed mask (about one bit per weight) from which loading
regenerates the weights and gives the same logits, bit for bit; weights that were trained, and a file whose
weights regenerate differently, are refused."""
import json

import pytest
import torch
import torch.nn.functional as F

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.export import export, load_supermask
from lottery.models import create_model
from lottery.sparsity.edgepopup import EdgePopup, EdgePopupOptions
from lottery.sparsity.schedule import UpdateSchedule

SHAPE = (1, 8, 8)


def _strong_ticket(options=EdgePopupOptions("signed_constant", scale_fan=True), seed=3):
    """LeNet-300-100 at its seeded initialisation, edge-popup for a few steps: the recipe and the trained ticket."""
    torch.manual_seed(seed)
    model = create_model("lenet_300_100", 10, SHAPE)
    masks = MaskManager(model)
    density = {"fc1.weight": 0.3, "fc2.weight": 0.5, "fc3.weight": 1.0}
    updater = EdgePopup(UpdateSchedule(end_step=0), density, [0], options)
    updater.start(masks)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for step in range(10):
        x, y = torch.randn(32, *SHAPE, generator=g), torch.randint(0, 10, (32,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        updater.before_step(step, masks, opt)
        opt.step()
        updater.update(step, masks, opt)
    recipe = {"architecture": "lenet_300_100", "num_classes": 10, "input_shape": list(SHAPE), "seed": seed,
              "branch": "edgepopup", "options": {"weights": options.weights, "scale_fan": options.scale_fan,
                                                 "density": options.density}, "target_density": density}
    return model.eval(), masks, recipe


@pytest.mark.parametrize("weights", ["kaiming_normal", "signed_constant", "init"])
def test_loading_regenerates_the_weights_and_the_logits(tmp_path, weights):
    model, masks, recipe = _strong_ticket(EdgePopupOptions(weights))
    path = export(model, "supermask", tmp_path / "strong.safetensors", masks, metadata=recipe)
    weights_bytes = sum(masks.masks[n].numel() for n in masks.names)
    assert path.stat().st_size < weights_bytes / 8 + 4096  # the bits of the mask and a header: no weight stored
    loaded, loaded_masks, meta = load_supermask(path)
    x = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))  # the same logits, bit for bit
    assert all(torch.equal(loaded_masks.masks[n], masks.masks[n]) for n in masks.names)
    assert meta["seed"] == 3 and meta["branch"] == "edgepopup"


def test_trained_weights_and_other_regenerations_are_refused(tmp_path):
    model, masks, recipe = _strong_ticket()
    with torch.no_grad():
        model.fc2.weight[masks.masks["fc2.weight"]] *= 1.01  # no longer the regenerated weights
    with pytest.raises(LotteryError, match="fc2.weight holds weights other than those regenerated from seed 3"):
        export(model, "supermask", tmp_path / "a.safetensors", masks, metadata=recipe)
    assert not (tmp_path / "a.safetensors").exists()
    with pytest.raises(LotteryError, match="'srste' trains its weights, so they cannot be regenerated"):
        export(model, "supermask", tmp_path / "b.safetensors", masks, metadata={**recipe, "branch": "srste"})
    model, masks, recipe = _strong_ticket()
    path = export(model, "supermask", tmp_path / "c.safetensors", masks, metadata=recipe)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as f:
        header = f.metadata()
    save_file(load_file(str(path)), str(tmp_path / "d.safetensors"), metadata={**header, "seed": json.dumps(4)})
    with pytest.raises(LotteryError, match="the weights regenerated from seed 4 differ from those"):
        load_supermask(tmp_path / "d.safetensors")
