"""IMP end to end with a real Trainer on the embedded digits data, shrunk to seconds."""
import csv
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
from lottery.core import files
from lottery.core.errors import LotteryError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "experiments" / "configs" / "demo.yaml"


def tiny(tmp_path, *overrides):
    return load_config(DEMO, [f"runs_dir={tmp_path}", "train.epochs=2", "prune.levels=2", "trainer.progress=false",
                              "trainer.accelerator=cpu", "data.val_size=200", *overrides])


def _masks(run_dir, level, seed=0):
    return files.load_tensors(run_dir / f"seed_{seed}" / f"level_{level:02d}" / "mask.safetensors")


def _curve(run_dir):
    with open(run_dir / "curve.csv") as f:
        return list(csv.DictReader(f))


def test_imp_levels_controls_curve_and_ticket(tmp_path):
    cfg = tiny(tmp_path, "prune.levels=3")
    run_dir = run(cfg, log=lambda *_: None)
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "curve.csv", "curve.png", "ticket.safetensors", "seed_0"}
    rows = _curve(run_dir)
    assert [int(r["level"]) for r in rows] == [0, 1, 2, 3]
    assert all(float(r["reinit_test_acc"]) > 0 for r in rows[1:]) and rows[0]["reinit_test_acc"] == ""
    for level in range(1, 4):
        prev, now = _masks(run_dir, level - 1), _masks(run_dir, level)
        for name, mask in now.items():
            assert (mask <= prev[name]).all()  # masks only shrink
            rate = 0.5 if name == "fc3.weight" else 1.0  # the output layer at half the rate
            assert abs(int(mask.sum()) - mask.numel() * (1 - 0.2 * rate) ** level) <= 1
        final = files.load_tensors(run_dir / "seed_0" / f"level_{level:02d}" / "final.safetensors")
        assert all((final[n][~m] == 0).all() for n, m in now.items())  # zero at every save
    assert float(rows[0]["test_acc"]) > 0.5  # two epochs already learn the digits


def test_same_seed_gives_the_same_masks_and_metrics(tmp_path):
    a = run(tiny(tmp_path / "a"), log=lambda *_: None)
    b = run(tiny(tmp_path / "b"), log=lambda *_: None)
    assert _curve(a) == _curve(b)
    for name, mask in _masks(a, 2).items():
        assert torch.equal(mask, _masks(b, 2)[name])
    c = run(tiny(tmp_path / "c", "seed=1"), log=lambda *_: None)
    assert _curve(c) != _curve(a)


def test_finished_levels_are_not_recomputed_and_a_run_can_be_extended(tmp_path):
    run_dir = run(tiny(tmp_path, "prune.levels=1"), log=lambda *_: None)
    done = run_dir / "seed_0" / "level_01" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    run(tiny(tmp_path, "prune.levels=2"), log=lambda *_: None)
    assert done.stat().st_mtime_ns == stamp
    assert len(_curve(run_dir)) == 3


def test_a_folder_holding_another_experiment_is_refused(tmp_path):
    run(tiny(tmp_path, "prune.levels=0"), log=lambda *_: None)
    with pytest.raises(LotteryError, match=r"holds a different experiment \(prune.fraction: 0.2 there, 0.5 now"):
        run(tiny(tmp_path, "prune.levels=0", "prune.fraction=0.5"), log=lambda *_: None)


@pytest.mark.parametrize("policy, step", [("step", 5), ("lr", 5), ("finetune", 0)])
def test_rewind_policies(tmp_path, policy, step):
    run_dir = run(tiny(tmp_path, f"rewind.policy={policy}", f"rewind.step={step}", "prune.levels=1", "branches=[]"),
                  log=lambda *_: None)
    level1 = files.read_json(run_dir / "seed_0" / "level_01" / "metrics.json")
    level0 = files.read_json(run_dir / "seed_0" / "level_00" / "metrics.json")
    assert level1["start_step"] == step and level1["steps"] == level0["steps"] - step
    assert level1["history"][-1]["step"] == level0["history"][-1]["step"]  # the schedule ends where level 0's did
    assert (run_dir / "seed_0" / f"rewind_step_{step}.safetensors").exists() == (step > 0)


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_curve(tmp_path):
    args = [f"runs_dir={tmp_path / 'killed'}", "train.epochs=20", "prune.levels=2", "trainer.progress=false",
            "trainer.accelerator=cpu"]
    cmd = [sys.executable, "-m", "lottery", "run", "--config", str(DEMO)]
    proc = subprocess.Popen(cmd + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = tmp_path / "killed" / "demo" / "seed_0" / "level_01" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)  # somewhere inside level 1's training, past its first epoch checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists(), "the run finished or failed before it could be killed mid-level"
    assert not (tmp_path / "killed" / "demo" / "curve.csv").exists()
    subprocess.run(cmd + args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clean = args[:]
    clean[0] = f"runs_dir={tmp_path / 'clean'}"
    subprocess.run(cmd + clean, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _curve(tmp_path / "killed" / "demo") == _curve(tmp_path / "clean" / "demo")


def test_a_second_process_on_the_same_seed_is_refused(tmp_path):
    import fcntl

    run(tiny(tmp_path, "prune.levels=0"), log=lambda *_: None)
    lock = tmp_path / "demo" / "seed_0" / ".lock"
    with open(lock, "w") as held:  # another process running seed 0
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        child = subprocess.run([sys.executable, "-m", "lottery", "run", "--config", str(DEMO), f"runs_dir={tmp_path}",
                                "train.epochs=2", "prune.levels=1", "trainer.progress=false", "trainer.accelerator=cpu",
                                "data.val_size=200"], cwd=ROOT, capture_output=True, text=True)
    assert child.returncode == 2 and "seed 0 of" in child.stderr and "pid 4242" in child.stderr
    run(tiny(tmp_path, "prune.levels=1"), log=lambda *_: None)  # once released, the same seed runs
    assert (tmp_path / "demo" / "seed_0" / "level_01" / "metrics.json").exists()


def test_output_layer_excluded_by_pattern(tmp_path):
    run_dir = run(tiny(tmp_path, "prune.exclude=[fc3.*]", "prune.levels=1", "branches=[]"), log=lambda *_: None)
    masks = _masks(run_dir, 1)
    assert set(masks) == {"fc1.weight", "fc2.weight"}


def test_an_experiment_reads_its_dataset_once_for_every_seed(tmp_path, monkeypatch):
    from lottery.data.base import DigitsDataModule

    reads = []
    monkeypatch.setattr(DigitsDataModule, "load", lambda self, load=DigitsDataModule.load: reads.append(self.seed) or load(self))
    run_dir = run(tiny(tmp_path, "seeds=[0,1,2]", "prune.levels=0", "branches=[]"), log=lambda *_: None)
    assert len(reads) == 1  # by the check before the run; the seeds share what it read
    assert all((run_dir / f"seed_{s}" / "level_00" / "metrics.json").exists() for s in (0, 1, 2))
