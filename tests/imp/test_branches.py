"""Branches off an IMP level (every registered one: controls, rewinding comparisons, pruning at init, sparse training)
and curves over seeds."""
import csv
import statistics

import pytest
import torch

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core import files
from lottery.core.masks import MaskManager
from lottery.core.methods import SparseTraining
from lottery.imp.branches import BRANCHES
from lottery.models import create_model


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"runs_dir={tmp_path}", "train.epochs=1", "prune.levels=2", "trainer.progress=false",
                              "trainer.accelerator=cpu", "data.val_size=200", *overrides])


# The channel early-bird ticket ranks BatchNorm scaling factors, which LeNet-300-100 has none of: its run is
# tests/structured/test_earlybird.py's.
ON_LENET = [name for name in BRANCHES if name != "earlybird_channels"]


@pytest.mark.slow
def test_every_branch_trains_at_the_levels_sparsity(tmp_path):
    run_dir = run(_cfg(tmp_path, f"branches=[{','.join(ON_LENET)}]"), log=lambda *_: None)
    level = run_dir / "seed_0" / "level_02"
    ticket = files.load_tensors(level / "mask.safetensors")
    kept = {n: int(m.sum()) for n, m in ticket.items()}
    masks = MaskManager(create_model("lenet_300_100", 10, (1, 8, 8)))
    fixed = {name: m.call(m.densities, masks, lambda d: dict.fromkeys(masks.names, d)) for name, m in BRANCHES.items()
             if isinstance(m, SparseTraining) and m.densities is not None}  # the methods whose options fix them
    fixed = {name: d for name, d in fixed.items() if d is not None}
    assert "srste" in fixed and {n for n in ON_LENET if not (level / f"branch_{n}").exists()} == set(fixed)
    for name in ON_LENET:
        folder = (level if name not in fixed else run_dir / "seed_0" / "level_01") / f"branch_{name}"  # once, off 1
        metrics = files.read_json(folder / "metrics.json")
        final = files.load_tensors(folder / "final.safetensors")
        if name in fixed:
            assert metrics["target_density"] == fixed[name], name
        else:
            assert abs(metrics["density"] - sum(kept.values()) / sum(m.numel() for m in ticket.values())) < 0.002, name
        if BRANCHES[name].same_mask:  # the ticket's own mask
            assert all(((final[n] != 0) <= m).all() for n, m in ticket.items()), name
        if name == "random_prune":  # per-layer counts kept exactly
            assert {n: metrics["layer_density"][n] * m.numel() for n, m in ticket.items()} == pytest.approx(kept)
        if isinstance(BRANCHES[name], SparseTraining):  # the distribution's exact counts, in the mask they ended with
            ended = files.load_tensors(folder / "mask.safetensors")
            assert {n: int(m.sum()) for n, m in ended.items()} == {
                n: round(m.numel() * metrics["target_density"][n]) for n, m in ended.items()}, name
            assert all(((final[n] != 0) <= m).all() for n, m in ended.items()), name
    report = (run_dir / "report.md").read_text()
    assert report.index("### ticket") < report.index("### reinit") and "### synflow" in report
    assert "### the cheapest network matching on test accuracy, at each sparsity" in report and "### masks at level 2" in report


def test_curves_and_report_aggregate_over_seeds(tmp_path):
    for seed in (0, 1, 2):
        run(_cfg(tmp_path, f"seed={seed}", "prune.levels=1"), log=lambda *_: None)
    run_dir = tmp_path / "demo"
    with open(run_dir / "curve_seeds.csv") as f:
        raw = [r for r in csv.DictReader(f) if r["method"] == "ticket" and r["level"] == "1"]
    with open(run_dir / "curve.csv") as f:
        level1 = next(r for r in csv.DictReader(f) if r["level"] == "1")
    accs = [float(r["test_acc"]) for r in raw]
    assert len(accs) == 3 and int(level1["seeds"]) == 3
    assert float(level1["test_acc"]) == pytest.approx(statistics.fmean(accs))
    assert float(level1["test_acc_std"]) == pytest.approx(statistics.stdev(accs))
    assert "Seeds: [0, 1, 2]" in (run_dir / "report.md").read_text()
    assert all((run_dir / f"seed_{s}" / "level_01" / "branch_reinit" / "metrics.json").exists() for s in (0, 1, 2))
    assert not torch.equal(files.load_tensors(run_dir / "seed_0" / "init.safetensors")["fc1.weight"],
                           files.load_tensors(run_dir / "seed_1" / "init.safetensors")["fc1.weight"])
