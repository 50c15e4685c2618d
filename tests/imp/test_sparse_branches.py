"""The sparse-training branches end to end with the real Trainer: as lanes they equal runs alone (the same masks,
weights within rounding; RigL, GMP, edge-popup, SR-STE), a run killed with kill -9 resumes to the same masks and curve
(RigL, edge-popup), a strong ticket exports as its seed and mask, and IMP can share each level's density out by a
distribution."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core.files import load_tensors, read_json
from lottery.core.layout import RunLayout
from lottery.sparsity.distributions import erdos_renyi_kernel

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "experiments" / "configs" / "demo.yaml"
# 40 steps with an update every 10 up to step 30: a few dozen steps, four mask updates.
FAST = ["train.epochs=null", "train.steps=40", "prune.levels=1", "sparse.interval_steps=10", "sparse.end_step=30",
        "trainer.progress=false", "trainer.accelerator=cpu", "data.val_size=200"]


@pytest.mark.slow
def test_rigl_and_gmp_as_lanes_equal_runs_alone(tmp_path):
    lines = []
    common = [*FAST, "branches=[rigl,gmp]", "seeds=[0,1]"]
    alone = RunLayout(run(load_config(DEMO, [f"runs_dir={tmp_path / 'alone'}", *common, "trainer.lanes=1"]),
                          log=lambda *_: None))
    lanes = RunLayout(run(load_config(DEMO, [f"runs_dir={tmp_path / 'lanes'}", *common, "trainer.lanes=6"]),
                          log=lines.append, verbose=True))
    log = "\n".join(lines)  # RigL skips its update steps, on its lanes alone: one network for the level's 6 runs
    assert "6 runs like 'level 1': 6 lanes (trainer.lanes=6)" in log
    for seed in (0, 1):
        for method in ("rigl", "gmp"):
            a, b = alone.seed(seed).level(1).branch(method), lanes.seed(seed).level(1).branch(method)
            masks_a, masks_b = load_tensors(a.mask), load_tensors(b.mask)
            assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a), (seed, method)
            wa, wb = load_tensors(a.final), load_tensors(b.final)
            assert all(torch.equal(wa[name], wb[name]) for name in wa), (seed, method)  # bit for bit
            ma, mb = read_json(a.metrics), read_json(b.metrics)
            assert ma["layer_density"] == mb["layer_density"] and ma["cost"] == mb["cost"]
        assert not torch.equal(load_tensors(alone.seed(0).level(1).branch("rigl").mask)["fc1.weight"],
                               load_tensors(alone.seed(1).level(1).branch("rigl").mask)["fc1.weight"])


@pytest.mark.slow
def test_a_rigl_run_killed_mid_training_resumes_to_the_same_masks(tmp_path):
    args = ["train.epochs=10", "prune.levels=1", "branches=[rigl]", "sparse.interval_steps=20", "trainer.progress=false",
            "trainer.accelerator=cpu"]
    cmd = [sys.executable, "-m", "lottery", "run", "--config", str(DEMO)]
    killed = [*cmd, f"runs_dir={tmp_path / 'killed'}", *args]
    proc = subprocess.Popen(killed, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "demo" / "seed_0" / "level_01" / "branch_rigl" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # inside the rigl branch, right after its first epoch checkpoint
    proc.wait()
    assert checkpoint.exists(), "the run finished or failed before it could be killed mid-training"
    subprocess.run(killed, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*cmd, f"runs_dir={tmp_path / 'clean'}", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    rigl = Path("demo", "seed_0", "level_01", "branch_rigl", "mask.safetensors")
    a, b = load_tensors(tmp_path / "killed" / rigl), load_tensors(tmp_path / "clean" / rigl)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert (tmp_path / "killed" / "demo" / "curve.csv").read_text() == (tmp_path / "clean" / "demo" / "curve.csv").read_text()


def test_imp_shares_each_levels_density_by_a_distribution(tmp_path):
    fast = [k for k in FAST if not k.startswith("sparse.")]  # no sparse-training branch: its keys would be refused
    run_dir = run(load_config(DEMO, [f"runs_dir={tmp_path}", *fast, "prune.levels=2", "branches=[]",
                                     "prune.distribution=erk"]), log=lambda *_: None)
    shapes = {"fc1.weight": (300, 64), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}
    previous = None
    for level in (1, 2):
        masks = load_tensors(RunLayout(run_dir).seed(0).level(level).mask)
        target = erdos_renyi_kernel(shapes, 0.8 ** level)
        for name, mask in masks.items():
            assert int(mask.sum()) == round(mask.numel() * target[name]), (level, name)
            assert previous is None or bool((mask <= previous[name]).all())  # masks only shrink
        previous = masks


@pytest.mark.slow
def test_strong_tickets_and_srste_as_lanes_equal_runs_alone_and_export_as_seed_and_mask(tmp_path):
    """Edge-popup and SR-STE 2:4 off level 1, two seeds, alone and as lanes: the same masks and weights, their cost
    (edge-popup: a forward at its density and a dense backward to the scores; SR-STE: dense), their masks beside IMP's
    in report.md; the strong ticket exported as a seed and its mask loads to the logits it trained to."""
    from lottery.cli.command import main
    from lottery.core.macs import layer_macs
    from lottery.export import load_supermask
    from lottery.models import create_model

    common = [*(k for k in FAST if not k.startswith("sparse.")), "branches=[edgepopup,srste]", "seeds=[0,1]"]  # no schedule
    alone = RunLayout(run(load_config(DEMO, [f"runs_dir={tmp_path / 'alone'}", *common, "trainer.lanes=1"]),
                          log=lambda *_: None))
    lines = []
    lanes = RunLayout(run(load_config(DEMO, [f"runs_dir={tmp_path / 'lanes'}", *common, "trainer.lanes=4"]),
                          log=lines.append, verbose=True))
    said = "srste: densities of its own, trained once off level 1: fc2.weight 50.0%; dense: fc1.weight, fc3.weight"
    assert any(line.endswith(said) for line in lines), lines  # which layers stay dense, in one line at the start
    assert any(line.endswith("2 runs like 'level 1 edgepopup': 2 lanes (trainer.lanes=4)") for line in lines)
    macs = layer_macs(create_model("lenet_300_100", 10, (1, 8, 8)), (1, 8, 8))
    for seed in (0, 1):
        for method in ("edgepopup", "srste"):
            a, b = alone.seed(seed).level(1).branch(method), lanes.seed(seed).level(1).branch(method)
            masks_a, masks_b = load_tensors(a.mask), load_tensors(b.mask)
            assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a), (seed, method)
            wa, wb = load_tensors(a.final), load_tensors(b.final)
            assert all(torch.equal(wa[name], wb[name]) for name in wa), (seed, method)  # bit for bit
            metrics = read_json(a.metrics)
            density = metrics["layer_density"]
            expected = 1.0 if method == "srste" else sum(m * (2 * density[n] + 1) for n, m in macs.items()) / (
                3 * sum(macs.values()))
            assert metrics["cost"] == pytest.approx(expected) and read_json(b.metrics)["cost"] == metrics["cost"]
    report = (lanes.path / "report.md").read_text()
    assert "| edgepopup |" in report and "| srste |" in report  # their masks' overlap with IMP's ticket
    out = tmp_path / "strong.safetensors"
    assert main(["export", str(lanes.path), "--branch", "edgepopup", "--level", "1", "--format", "supermask",
                 "--out", str(out)]) == 0
    model, masks, _ = load_supermask(out)
    trained = create_model("lenet_300_100", 10, (1, 8, 8))
    trained.load_state_dict(load_tensors(lanes.seed(0).level(1).branch("edgepopup").final))
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), trained.eval()(x))


@pytest.mark.slow
def test_a_strong_ticket_killed_mid_training_resumes_to_the_same_masks(tmp_path):
    args = ["train.epochs=8", "prune.levels=1", "branches=[edgepopup]", "trainer.progress=false",
            "trainer.accelerator=cpu"]
    cmd = [sys.executable, "-m", "lottery", "run", "--config", str(DEMO)]
    killed = [*cmd, f"runs_dir={tmp_path / 'killed'}", *args]
    proc = subprocess.Popen(killed, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    branch = tmp_path / "killed" / "demo" / "seed_0" / "level_01" / "branch_edgepopup"
    checkpoint = branch / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # inside the edge-popup branch, right after its first epoch checkpoint
    proc.wait()
    assert checkpoint.exists() and not (branch / "metrics.json").exists(), "not killed mid-training"
    subprocess.run(killed, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*cmd, f"runs_dir={tmp_path / 'clean'}", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    for name in ("mask.safetensors", "final.safetensors"):
        path = Path("demo", "seed_0", "level_01", "branch_edgepopup", name)
        a, b = load_tensors(tmp_path / "killed" / path), load_tensors(tmp_path / "clean" / path)
        assert all(torch.equal(a[n], b[n]) for n in a), name
    assert (tmp_path / "killed" / "demo" / "curve.csv").read_text() == (tmp_path / "clean" / "demo" / "curve.csv").read_text()
