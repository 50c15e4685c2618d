"""bf16 mixed precision and torch.compile keep the masks applied through a real IMP run."""
import pytest

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core import files


def _tiny(tmp_path, *overrides):
    return load_config(None, [f"runs_dir={tmp_path}", "train.epochs=1", "prune.levels=2", "branches=[]",
                              "trainer.progress=false", "trainer.accelerator=cpu", *overrides])


LANES = {"one by one": [], "as lanes": ["seeds=[0,1]", "trainer.lanes=2"]}


def _check_zero(run_dir, seeds=(0,)):
    for seed, level in ((s, l) for s in seeds for l in (1, 2)):
        folder = run_dir / f"seed_{seed}" / f"level_{level:02d}"
        masks, final = files.load_tensors(folder / "mask.safetensors"), files.load_tensors(folder / "final.safetensors")
        assert all((final[n][~m] == 0).all() for n, m in masks.items())
        assert files.read_json(folder / "metrics.json")["test_acc"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("lanes", LANES)
def test_bf16_mixed_precision(tmp_path, lanes):
    lines = []
    _check_zero(run(_tiny(tmp_path, "trainer.precision=bf16-mixed", *LANES[lanes]), log=lines.append, verbose=True),
                seeds=(0, 1) if LANES[lanes] else (0,))
    assert ("2 lanes" in "\n".join(lines)) == bool(LANES[lanes])


@pytest.mark.slow
@pytest.mark.parametrize("lanes", LANES)
def test_torch_compile_does_not_recompile_every_level(tmp_path, lanes):
    import torch._dynamo

    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    lines = []
    _check_zero(run(_tiny(tmp_path, "trainer.compile=true", *LANES[lanes]), log=lines.append, verbose=True),
                seeds=(0, 1) if LANES[lanes] else (0,))
    assert ("2 lanes" in "\n".join(lines)) == bool(LANES[lanes])
    # Three levels (+ evaluation) of the same architecture: compiled frames stay a handful, not one per level.
    assert 0 < counters["stats"]["unique_graphs"] <= 6, dict(counters["stats"])
