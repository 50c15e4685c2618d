"""Two CPU processes (gloo) train IMP levels with Lightning's DDP: identical masks, one writer."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    from pathlib import Path
    from lottery.core import files
    from lottery.cli.config import load_config
    from lottery.cli.experiment import run
    from lottery.imp.runner import SeedRunner

    out = Path(sys.argv[1])
    rank = os.environ.get("LOCAL_RANK", "0")
    write_bytes = files.write_bytes

    def logged_write(path, data):  # record which process actually writes
        if files.is_writer():
            with open(out / f"writes_{os.getpid()}.txt", "a") as f:
                f.write(str(path) + "\\n")
        return write_bytes(path, data)

    files.write_bytes = logged_write
    report = SeedRunner.report

    def recording(self, level, results, *rest):  # each rank notes a digest of the masks it trained with
        metrics = report(self, level, results, *rest)
        if level == 0:
            return metrics
        model = self.models.fresh(self.seed)
        masks = self.models.masks_for(model)
        masks.load_state_dict(files.load_masks(self.files.level(level).mask))
        digest = hashlib.sha256(b"".join(m.numpy().tobytes() for m in masks.masks.values())).hexdigest()
        with open(out / f"rank{rank}_seed{self.seed}_level{level}.json", "w") as f:
            json.dump({"digest": digest, "test_acc": metrics["test_acc"]}, f)
        return metrics

    SeedRunner.report = recording
    import lottery.training.single as single
    metrics_of = single.training_metrics

    def final_masks(history, test, spec, updater=None):  # each rank notes the masks a training ended with
        digest = hashlib.sha256(b"".join(m.numpy().tobytes() for m in spec.masks.masks.values())).hexdigest()
        with open(out / f"rank{rank}_{spec.label.replace(' ', '_')}.json", "w") as f:
            json.dump({"digest": digest}, f)
        return metrics_of(history, test, spec, updater)

    single.training_metrics = final_masks
    cfg = load_config(None, [f"runs_dir={out / 'runs'}", f"prune.strategy={sys.argv[2]}", "train.epochs=1",
                             "prune.levels=2", "branches=[]", "trainer.progress=false", "trainer.accelerator=cpu",
                             "trainer.devices=2", "trainer.strategy=ddp", "data.val_size=200", *sys.argv[3:]])
    run(cfg, verbose=True)
''')

def _run_ddp(tmp_path, out, *args):
    """SCRIPT in two processes, writing into `out`, with `args` (the strategy, then overrides); it must succeed."""
    script = tmp_path / "ddp_imp.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(out), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["global_magnitude", "layer_random"])
def test_two_processes_prune_identically_and_one_writes(tmp_path, strategy):
    _run_ddp(tmp_path, tmp_path, strategy)
    for level in (1, 2):
        ranks = [json.loads((tmp_path / f"rank{r}_seed0_level{level}.json").read_text()) for r in (0, 1)]
        assert ranks[0] == ranks[1]  # same masks, and the same (synchronised) test accuracy
    writers = list(tmp_path.glob("writes_*.txt"))
    assert len(writers) == 1  # only rank 0 wrote files
    assert (tmp_path / "runs" / "demo" / "ticket.safetensors").exists()


@pytest.mark.slow
def test_lanes_under_ddp_hold_every_lane_on_each_process_and_match_runs_one_by_one(tmp_path):
    import torch

    from lottery.core.files import load_tensors

    for lanes in (1, 2):
        out = tmp_path / f"lanes{lanes}"
        out.mkdir()
        # SGD: with Adam, training grows the lanes' float rounding (bmm instead of mm, ~1e-8) to ~1e-3 within this
        # epoch on seed 1 (the data of every step is identical); with SGD it stays at rounding, so the test can be tight.
        proc = _run_ddp(tmp_path, out, "global_magnitude", "seeds=[0,1]", "prune.levels=1", "train.optim.optimizer=sgd",
                        "train.optim.lr=0.05", "train.optim.momentum=0.9", f"trainer.lanes={lanes}")
        assert ("2 runs like 'level 0': 2 lanes" in proc.stdout) == (lanes == 2), proc.stdout
        assert len(list(out.glob("writes_*.txt"))) == 1  # only rank 0 wrote files
    for seed in (0, 1):
        ranks = [json.loads((tmp_path / "lanes2" / f"rank{r}_seed{seed}_level1.json").read_text()) for r in (0, 1)]
        alone = json.loads((tmp_path / "lanes1" / f"rank0_seed{seed}_level1.json").read_text())
        assert ranks[0] == ranks[1] and ranks[0]["digest"] == alone["digest"]  # the same masks everywhere
        for level in (0, 1):
            path = f"runs/demo/seed_{seed}/level_{level:02d}/final.safetensors"
            a, b = load_tensors(tmp_path / "lanes1" / path), load_tensors(tmp_path / "lanes2" / path)
            for name in a:
                torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=f"seed {seed} level {level} {name}")


@pytest.mark.slow
def test_rigl_under_ddp_makes_the_same_update_on_every_process(tmp_path):
    _run_ddp(tmp_path, tmp_path, "layer_magnitude", "prune.levels=1", "branches=[rigl]", "sparse.interval_steps=5",
             "sparse.end_step=15")
    ranks = [json.loads((tmp_path / f"rank{r}_level_1_rigl.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the same masks after four updates, on both processes
    from lottery.core.files import read_json

    metrics = read_json(tmp_path / "runs" / "demo" / "seed_0" / "level_01" / "branch_rigl" / "metrics.json")
    assert metrics["layer_density"] == pytest.approx(metrics["target_density"], abs=1e-4)  # exact counts kept


@pytest.mark.slow
def test_the_shadow_methods_under_ddp_make_the_same_masks_on_every_process(tmp_path):
    """Edge-popup and SR-STE recompute their masks at every step from shadows the optimizer trains: the gradients
    are synchronised before the shadows step, so both processes hold the same masks after every one of the steps."""
    _run_ddp(tmp_path, tmp_path, "layer_magnitude", "prune.levels=1", "train.epochs=null", "train.steps=12",
             "branches=[edgepopup,srste]")
    for method in ("edgepopup", "srste"):
        ranks = [json.loads((tmp_path / f"rank{r}_level_1_{method}.json").read_text()) for r in (0, 1)]
        assert ranks[0] == ranks[1], method
    from lottery.core.files import read_json

    metrics = read_json(tmp_path / "runs" / "demo" / "seed_0" / "level_01" / "branch_edgepopup" / "metrics.json")
    assert metrics["layer_density"] == pytest.approx(metrics["target_density"], abs=1e-4)  # exactly k per layer
