"""Every paper preset and every registered model runs a real IMP level, on tiny files in the
datasets' real on-disk formats (no download)."""
from pathlib import Path

import pytest

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core import files
from lottery.models import MODELS
from tests.data.on_disk import write_cifar, write_mnist

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"))
SHRINK = ["train.steps=3", "train.epochs=null", "train.milestone_epochs=[]", "train.optim.warmup_steps=0",
          "prune.levels=1",
          "data.val_size=8", "data.batch_size=8", "trainer.progress=false", "trainer.accelerator=cpu"]


def _tiny_data(root: Path, dataset: str) -> list[str]:
    if dataset in ("mnist", "fashion_mnist"):
        write_mnist(root, {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[dataset])
        return [f"data.options.root={root}", "data.options.download=false"]
    if dataset in ("cifar10", "cifar100"):
        write_cifar(root, dataset)  # tiny honest files cannot match torchvision's checksums: verify=false
        return [f"data.options.root={root}", "data.options.download=false", "data.options.verify=false"]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_preset_runs_a_level(tmp_path, config):
    cfg = load_config(config)
    overrides = [f"runs_dir={tmp_path / 'runs'}", *SHRINK, *_tiny_data(tmp_path / "data", cfg.data.name)]
    if not cfg.branches:  # a preset's own branches stay: its keys (sparse.*, methods.*) are for them
        overrides.append("branches=[reinit]")
    if cfg.rewind.step:
        overrides.append("rewind.step=1")  # k must lie inside the shrunk training
    run_dir = run(load_config(config, overrides), log=lambda *_: None)
    metrics = files.read_json(run_dir / "seed_0" / "level_01" / "metrics.json")
    # Three steps on a few random images: a winning ticket where the dense network beat chance, else it says so.
    chance = "its dense network is at chance" in (run_dir / "report.md").read_text()
    assert metrics["density"] < 1 and (run_dir / "ticket.safetensors").exists() != chance


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS) + ["torchvision:resnet18"])
def test_every_model_runs_an_imp_level(tmp_path, model):
    overrides = [f"runs_dir={tmp_path / 'runs'}", f"model.name={model}", "data.name=cifar10", "prune.strategy=global_magnitude",
                 *SHRINK, "branches=[]", *_tiny_data(tmp_path / "data", "cifar10")]
    run_dir = run(load_config(None, overrides), log=lambda *_: None)
    level1 = files.read_json(run_dir / "seed_0" / "level_01" / "metrics.json")
    assert abs(level1["density"] - 0.8) < 0.02  # 20% of the prunable weights removed (output layer at 10%)
