"""The CUDA path (run by experiments/gpu_check.sh on a GPU machine; skipped elsewhere)."""
import pytest
import torch

from lottery import MaskManager
from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core import files

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_apply_does_not_synchronise_with_the_host():
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).cuda()
    masks = MaskManager(model)
    masks.prune(0.8)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside apply() raises
    try:
        for _ in range(3):
            masks.apply()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (model[0].weight[~masks.masks["0.weight"]] == 0).all()


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_imp_on_the_gpu_with_device_resident_data(tmp_path, precision):
    cfg = load_config(None, [f"runs_dir={tmp_path}", "train.epochs=2", "prune.levels=2", "branches=[reinit]",
                             "trainer.progress=false", "trainer.accelerator=gpu", f"trainer.precision={precision}",
                             "data.options={device_resident: true}"])
    run_dir = run(cfg, log=lambda *_: None)
    for level in (1, 2):
        folder = run_dir / "seed_0" / f"level_{level:02d}"
        masks, final = files.load_tensors(folder / "mask.safetensors"), files.load_tensors(folder / "final.safetensors")
        assert all((final[n][~m] == 0).all() for n, m in masks.items())
        assert files.read_json(folder / "metrics.json")["test_acc"] > 0.5


def test_lanes_apply_masks_without_synchronising_with_the_host():
    from lottery.lanes import LaneNet, stack_masks
    from lottery.models import create_model

    models = [create_model("conv2", 10, (3, 32, 32)).cuda() for _ in range(4)]
    per_run = []
    for m in models:
        masks = MaskManager(m)
        masks.prune(0.5)
        per_run.append(masks.masks)
    net = LaneNet.from_models(models)
    masks = MaskManager(net)
    masks.set_masks(stack_masks(per_run))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        masks.apply()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all((p[~masks.masks[n]] == 0).all() for n, p in net.named_parameters() if n in masks.masks)


def _lane_runs(tmp_path, name, *overrides):
    lines = []
    cfg = load_config(None, [f"runs_dir={tmp_path / name}", "train.epochs=2", "prune.levels=1", "branches=[reinit]",
                             "seeds=[0,1,2]", "trainer.progress=false", "trainer.accelerator=gpu", "trainer.devices=1", *overrides])
    return run(cfg, log=lines.append, verbose=True), "\n".join(lines)


def test_lanes_auto_on_the_gpu_fit_in_memory_and_match_one_by_one(tmp_path):
    alone, _ = _lane_runs(tmp_path, "alone", "trainer.lanes=1")
    lanes, log = _lane_runs(tmp_path, "lanes", "trainer.lanes=auto")
    # 3 seeds' tickets + 3 reinit branches at level 1: all six as lanes, the most that fit in memory.
    assert "6 runs like 'level 1': 6 lanes" in log, log
    for seed in (0, 1, 2):
        for sub in ("level_00", "level_01", "level_01/branch_reinit"):
            a = files.read_json(alone / f"seed_{seed}" / sub / "metrics.json")
            b = files.read_json(lanes / f"seed_{seed}" / sub / "metrics.json")
            assert a["density"] == b["density"] and abs(a["test_acc"] - b["test_acc"]) < 0.03, (seed, sub)


def test_lanes_that_do_not_fit_are_refused_with_the_count_that_fits(tmp_path, monkeypatch):
    import lottery.training.lane_group
    from lottery.core.errors import LotteryError

    monkeypatch.setattr(lottery.training.lane_group, "lane_memory", lambda settings: 64 * 2**20)  # a few LeNet lanes at most
    with pytest.raises(LotteryError, match=r"lanes of ~.* GiB do not fit in the .* GiB free on the device; \d+ fits?: set trainer.lanes="):
        _lane_runs(tmp_path, "big", "trainer.lanes=64", "data.batch_size=4096")


def test_compiled_lanes_on_the_gpu_compile_once_for_every_level(tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    _lane_runs(tmp_path, "compiled", "trainer.lanes=auto", "trainer.compile=true", "prune.levels=2")
    assert 0 < counters["stats"]["unique_graphs"] <= 6, dict(counters["stats"])
