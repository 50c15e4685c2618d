"""Every registry looks names up the same way and names the valid ones when a name is unknown."""
from pathlib import Path

import pytest
import torch

from lottery.core.errors import LotteryError, Registry
from lottery.core.methods import Kind
from lottery.core.pruning import STRATEGIES
from lottery.core.rewind import POLICIES
from lottery.data import DATASETS
from lottery.imp.branches import BRANCHES
from lottery.models import MODELS, check_name
from lottery.sparsity.pruning_at_init import PAI_METHODS
from lottery.training.optimizers import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[2]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


# -- unknown names -----------------------------------------------------------------------------------
REGISTRIES = {"model": MODELS, "dataset": DATASETS, "pruning strategy": STRATEGIES, "branch": BRANCHES,
              "pruning-at-init method": PAI_METHODS, "optimizer": OPTIMIZERS, "rewind policy": POLICIES}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_one_lookup_and_one_error_for_every_registry(kind):
    registry = REGISTRIES[kind]
    assert isinstance(registry, (Registry, Kind)) and registry.kind == kind and len(registry) >= 2
    first = sorted(registry)[0]
    assert registry.lookup(first) is registry[first]
    with pytest.raises(LotteryError, match=f"unknown {kind} 'nope'; choose one of: {first}, "):
        registry.lookup("nope")


def test_register_adds_an_entry_and_torchvision_names_pass_the_model_check():
    r = Registry("widget")

    @r.register("w1")
    def w1():
        return 1

    assert r.lookup("w1") is w1
    check_name("torchvision:resnet18")  # built by torchvision, not registered
    with pytest.raises(LotteryError, match="or 'torchvision:<name>'"):
        check_name("resnet7")
