"""The CUDA path (run by experiments/gpu_check.sh on a GPU machine; skipped elsewhere)."""
import pytest
import torch

from lottery import MaskManager, files
from lottery.config import load_config
from lottery.experiment import run

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
