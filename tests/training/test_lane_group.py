"""Runs of a level trained as lanes write what the same runs write one by one (lottery.training.lane_group)."""
from pathlib import Path

import pytest
import torch

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core.files import load_tensors, read_json
from lottery.core.layout import RunLayout

DEMO = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "demo.yaml"
TINY = ["train.epochs=2", "prune.levels=1", "branches=[reinit,random_prune]", "seeds=[0,1]",
        "trainer.progress=false", "trainer.accelerator=cpu", "data.val_size=200"]


def _files(run_dir: Path) -> set[str]:
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.suffix in (".json", ".safetensors")}


@pytest.mark.slow
def test_seeds_and_branches_as_lanes_match_one_by_one(tmp_path):
    lines = []
    alone = run(load_config(DEMO, [f"runs_dir={tmp_path / 'alone'}", *TINY, "trainer.lanes=1"]), log=lambda *_: None)
    lanes = run(load_config(DEMO, [f"runs_dir={tmp_path / 'lanes'}", *TINY, "trainer.lanes=8"]), log=lines.append, verbose=True)
    assert "6 runs like 'level 1': 6 lanes (trainer.lanes=8)" in "\n".join(lines)  # 2 tickets + 4 branches
    assert _files(alone) == _files(lanes)
    a, b = RunLayout(alone), RunLayout(lanes)
    for seed in (0, 1):
        for level in (0, 1):
            trainings = [a.seed(seed).level(level)] + ([a.seed(seed).level(1).branch(n) for n in ("reinit", "random_prune")]
                                                       if level else [])
            for ta in trainings:
                tb_path = b.path / ta.path.relative_to(a.path)
                wa, wb = load_tensors(ta.final), load_tensors(tb_path / "final.safetensors")
                for name in wa:
                    torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=f"{ta.path} {name}")
                ma, mb = read_json(ta.metrics), read_json(tb_path / "metrics.json")
                assert ma["density"] == mb["density"] and [h["step"] for h in ma["history"]] == [h["step"] for h in mb["history"]]
                assert ma["test_acc"] == pytest.approx(mb["test_acc"], abs=0.01)
        masks_a, masks_b = load_tensors(a.seed(seed).level(1).mask), load_tensors(b.seed(seed).level(1).mask)
        assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)


@pytest.mark.slow
def test_a_lane_group_killed_mid_level_resumes_to_the_same_curve(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    args = [f"runs_dir={tmp_path / 'killed'}", "train.epochs=12", "prune.levels=1", "branches=[reinit]", "seeds=[0,1]",
            "trainer.lanes=4", "trainer.progress=false", "trainer.accelerator=cpu"]
    cmd = [sys.executable, "-m", "lottery", "run", "--config", str(DEMO)]
    proc = subprocess.Popen(cmd + args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "killed" / "demo" / "seed_0" / "level_01" / "checkpoints"
    deadline = time.time() + 240
    while not list(checkpoints.glob("lanes_*.ckpt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)  # inside level 1's lane group, past its first epoch checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(checkpoints.glob("lanes_*.ckpt")), "the run finished or failed before it could be killed mid-level"
    subprocess.run(cmd + args, cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert not checkpoints.exists()  # removed once the group's files are written
    clean = [f"runs_dir={tmp_path / 'clean'}", *args[1:]]
    subprocess.run(cmd + clean, cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert (tmp_path / "killed" / "demo" / "curve.csv").read_text() == (tmp_path / "clean" / "demo" / "curve.csv").read_text()


@pytest.mark.slow
def test_late_rewinding_captures_each_lanes_rewind_point_and_resumes_with_another_lane_setting(tmp_path):
    """Level 0 of two seeds trains as lanes and saves each seed's weights at step k; level 1 then runs one by one."""
    late = [*TINY[:3], "seeds=[0,1]", *TINY[4:], "branches=[]", "rewind.policy=step", "rewind.step=5"]
    lines = []
    alone = run(load_config(DEMO, [f"runs_dir={tmp_path / 'alone'}", *late, "trainer.lanes=1"]), log=lambda *_: None)
    mixed = tmp_path / "mixed"
    run(load_config(DEMO, [f"runs_dir={mixed}", *late, "prune.levels=0", "trainer.lanes=2"]), log=lines.append, verbose=True)
    assert "2 runs like 'level 0': 2 lanes (trainer.lanes=2)" in "\n".join(lines)
    mixed = run(load_config(DEMO, [f"runs_dir={mixed}", *late, "trainer.lanes=1"]), log=lambda *_: None)
    assert _files(alone) == _files(mixed)
    a, b = RunLayout(alone), RunLayout(mixed)
    for seed in (0, 1):
        for sa, sb in ((a.seed(seed).rewind(5), b.seed(seed).rewind(5)), (a.seed(seed).level(1).final, b.seed(seed).level(1).final)):
            wa, wb = load_tensors(sa), load_tensors(sb)
            for name in wa:
                torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=f"{sb} {name}")
        ma, mb = load_tensors(a.seed(seed).level(1).mask), load_tensors(b.seed(seed).level(1).mask)
        assert all(torch.equal(ma[n], mb[n]) for n in ma)
    seed0, seed1 = load_tensors(b.seed(0).rewind(5)), load_tensors(b.seed(1).rewind(5))
    assert not torch.equal(seed0["fc1.weight"], seed1["fc1.weight"])  # each lane saved its own weights


def test_on_a_gpu_lane_counts_follow_the_free_memory(tmp_path, monkeypatch):
    """The CUDA rule, run on a CPU: lane_groups reads free memory as on a GPU (lottery.lanes.count.lane_bytes)."""
    import lottery.training.lane_group as lane_trainer
    from lottery.core.errors import LotteryError
    from lottery.lanes.count import lane_bytes
    from lottery.models import create_model

    one = lane_bytes(create_model("lenet_300_100", 10, (1, 8, 8)), (1, 8, 8), 60)
    monkeypatch.setattr(lane_trainer, "_device", lambda settings: "cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (int(2.5 * one / 0.9), 80 * 2**30))  # 2 lanes fit
    args = [*TINY[:2], "prune.levels=0", "branches=[]", "seeds=[0,1,2]", *TINY[4:]]
    lines = []
    run(load_config(DEMO, [f"runs_dir={tmp_path / 'auto'}", *args, "trainer.lanes=auto"]), log=lines.append, verbose=True)
    assert "3 runs like 'level 0': 2 lanes: the most that fit" in "\n".join(lines)
    with pytest.raises(LotteryError, match=r"trainer.lanes=3: 3 lanes of ~.* do not fit .*; 2 fit: set trainer.lanes=2"):
        run(load_config(DEMO, [f"runs_dir={tmp_path / 'three'}", *args, "trainer.lanes=3"]), log=lambda *_: None)


def test_with_several_gpus_every_process_counts_lanes_from_the_same_memory(monkeypatch):
    """DDP processes group runs before they meet: the count must come from what is the same for all of them."""
    from types import SimpleNamespace

    from lottery.training.lane_group import lane_memory

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=(80, 40)[d] * 2**30))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: pytest.fail("free memory differs from process to process"))
    assert lane_memory(SimpleNamespace(num_nodes=1)) == int(0.8 * 40 * 2**30)  # 80% of the smallest GPU
