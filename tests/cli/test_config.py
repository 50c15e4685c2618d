"""Loading a config: YAML, overrides, typed keys, renamed keys; the rules of the keys (lottery.cli.keys)."""

import pytest

from lottery.cli.config import from_yaml, load_config, to_yaml
from lottery.cli.keys import check_keys
from lottery.core.errors import LotteryError
from lottery.core.schema import ExperimentConfig
from tests.cli.helpers import DEMO


def test_defaults_then_file_then_overrides():
    cfg = load_config(DEMO, ["prune.levels=3", "branches=[reinit,random_prune]", "train.optim.lr=0.01"])
    assert isinstance(cfg, ExperimentConfig)
    assert (cfg.prune.levels, cfg.branches, cfg.train.optim.lr, cfg.train.epochs) == (3, ["reinit", "random_prune"], 0.01, 30)
    assert from_yaml(to_yaml(cfg)) == cfg


def test_a_renamed_key_names_its_new_name(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("controls: [reinit]\n")
    with pytest.raises(LotteryError, match=r"`controls` in .*old.yaml is now called `branches`"):
        load_config(old)


@pytest.mark.parametrize("override, message", [
    ("prune.fraction=0", "must be in (0, 1)"), ("train.steps=-3", "train.steps=-3 must be >= 1"),
    ("rewind.policy=late", "unknown rewind policy 'late'"), ("prune.levels=-1", "must be >= 0"),
])
def test_values_out_of_range(override, message):
    with pytest.raises(LotteryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_keys(load_config(DEMO, [override]))
