"""IMP on a pretrained transformer (docs/pretrained.md): the checkpoint is the rewind point of level 0, the masks lie
on the preset's tensors only, rewound weights are the checkpoint's times the mask, and the classifier head is rewound
to the head drawn at level 0; late rewinding, Wanda and lanes work as for any model. A tiny BERT the test saved
itself, on text files the test wrote (tests/hf_helpers.py)."""
from pathlib import Path

import pytest
import torch

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.cli.plan import plan
from lottery.core import files
from lottery.core.rewind import REWIND
from lottery.models.presets import preset_names
from tests.hf_helpers import text_run

HEAD = ("classifier.weight", "classifier.bias")


def _pretrained_state(folder: Path, names) -> dict:
    saved = files.load_tensors(folder / "model.safetensors")
    return {n: saved[n] if n in saved else saved[n.removeprefix("bert.")] for n in names}


@pytest.mark.slow
def test_two_levels_rewind_to_the_pretrained_weights_on_the_preset_only(tmp_path, hf_assets):
    overrides = text_run(tmp_path, hf_assets, "trainer.gradient_clip_val=1.0", "train.optim.schedule=linear",
                         "train.optim.warmup_steps=2", "branches=[reinit,wanda]", levels=2)
    run_dir = run(load_config(None, overrides), log=lambda *_: None)
    seed = run_dir / "seed_0"
    init = files.load_tensors(seed / "init.safetensors")
    pretrained = _pretrained_state(hf_assets[1], [n for n in init if not n.startswith("classifier")])
    assert all(torch.equal(init[n], v) for n, v in pretrained.items())  # level 0's rewind point is the checkpoint
    preset = set(preset_names("bert", init))
    for level in (1, 2):
        masks = files.load_tensors(seed / f"level_{level:02d}" / "mask.safetensors")
        assert set(masks) == preset  # embeddings, LayerNorm, biases, classifier stay dense
        metrics = files.read_json(seed / f"level_{level:02d}" / "metrics.json")
        assert abs(metrics["density"] - 0.8 ** level) < 1e-3
        assert {"test_f1", "test_mcc"} <= set(metrics) and {"val/f1", "val/mcc"} <= set(metrics["history"][-1])
        assert files.read_json(seed / f"level_{level:02d}" / "branch_wanda" / "metrics.json")["density"] == \
            pytest.approx(metrics["density"], abs=1 / 32)  # each row keeps round(density x 32 or 64 columns)

    # The training of a next level starts from the checkpoint's weights times its mask, and from level 0's head.
    cfg = load_config(None, [*overrides[:-0 or None], "prune.levels=3"])
    (runner,) = plan(cfg).runners
    spec = runner.specs(3)[0]
    assert spec.plan.weights == REWIND and spec.plan.start_step == 0
    start = spec.model.state_dict()
    level3 = spec.masks.masks
    for name, value in pretrained.items():
        expected = value * level3[name] if name in level3 else value
        assert torch.equal(start[name], expected), name
    trained_head = files.load_tensors(seed / "level_02" / "final.safetensors")
    for name in HEAD:
        assert torch.equal(start[name], init[name]) and not torch.equal(start[name], trained_head[name])


@pytest.mark.slow
def test_late_rewinding_to_a_step_of_fine_tuning_and_lanes(tmp_path, hf_assets):
    overrides = text_run(tmp_path, hf_assets, "rewind.policy=step", "rewind.step=3", "branches=[reinit]",
                         "trainer.lanes=2", "model.options={hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}")
    run_dir = run(load_config(None, overrides), log=lambda *_: None)
    seed = run_dir / "seed_0"
    assert (seed / "rewind_step_3.safetensors").exists()
    level1 = files.read_json(seed / "level_01" / "metrics.json")
    assert level1["start_step"] == 3 and level1["steps"] == 12 - 3
    # the level and its control trained as two lanes; alone they reach the same weights (no dropout to differ)
    alone = run(load_config(None, [*overrides, "trainer.lanes=1", f"runs_dir={tmp_path / 'alone'}"]), log=lambda *_: None)
    for folder in ("level_01", "level_01/branch_reinit"):
        lanes = files.load_tensors(seed / folder / "final.safetensors")
        single = files.load_tensors(alone / "seed_0" / folder / "final.safetensors")
        for name, value in lanes.items():
            torch.testing.assert_close(value, single[name], atol=2e-5, rtol=1e-4)
