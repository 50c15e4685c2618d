"""How a seed builds its models: the same seed gives the same weights, the rewind point is the saved one, and the
experiment's prunable tensors carry the output layer's rate."""
import pytest
import torch

from lottery.cli.config import load_config
from lottery.core.files import save_tensors
from lottery.core.layout import RunLayout
from lottery.core.pruning import get_strategy
from lottery.imp.runner import datamodule
from lottery.imp.seed_models import SeedModels


@pytest.fixture
def models(tmp_path):
    cfg = load_config(None, ["prune.output_rate=0.5", "rewind.policy=step", "rewind.step=5"])
    return SeedModels(cfg, RunLayout.of(tmp_path, "exp").seed(3), datamodule(cfg.data, 3), get_strategy(cfg.prune.strategy))


def test_fresh_models_are_seeded(models):
    a, b, c = models.fresh(3), models.fresh(3), models.fresh(4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_the_rewind_point_and_the_weights_of_a_file_are_what_was_saved(models):
    saved = {k: v + 1 for k, v in models.fresh(0).state_dict().items()}
    save_tensors(models.files.rewind(5), saved)
    point = models.rewind_point()
    assert point.step == 5 and all(torch.equal(point.state[k], saved[k]) for k in saved)
    for model in (models.rewound(), models.with_weights(models.files.rewind(5))):
        assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)


def test_masks_cover_the_configured_tensors_with_the_output_rate(models):
    masks = models.masks_for(models.fresh(3))
    assert masks.names == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert masks.rates == {"fc1.weight": 1.0, "fc2.weight": 1.0, "fc3.weight": 0.5}
    assert models.strategy.name == "layer_magnitude"
