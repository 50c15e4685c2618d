"""Every registry looks names up the same way and names the valid ones when a name is unknown."""
import pytest

from lottery.branches import BRANCHES
from lottery.data import DATASETS
from lottery.errors import LotteryError
from lottery.models import MODELS, check_name
from lottery.pruning import STRATEGIES
from lottery.pruning_at_init import PAI_METHODS
from lottery.registry import Registry
from lottery.rewind import POLICIES
from lottery.schedule import OPTIMIZERS

REGISTRIES = {"model": MODELS, "dataset": DATASETS, "pruning strategy": STRATEGIES, "branch": BRANCHES,
              "pruning-at-init method": PAI_METHODS, "optimizer": OPTIMIZERS, "rewind policy": POLICIES}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_one_lookup_and_one_error_for_every_registry(kind):
    registry = REGISTRIES[kind]
    assert isinstance(registry, Registry) and registry.kind == kind and len(registry) >= 2
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
