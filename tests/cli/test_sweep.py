"""`lottery sweep`: grids, names, bad input, the real submitit local path (kill, resubmit, same curves) and SLURM arrays."""
import csv
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from lottery.cli import grid
from lottery.cli.command import main
from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.cli.sweep import Sweep

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "experiments" / "configs" / "demo.yaml")


def tiny(runs_dir, steps=10):
    return [f"runs_dir={runs_dir}", f"train.steps={steps}", "prune.levels=1", "branches=[]", "trainer.progress=false",
            "trainer.accelerator=cpu", "data.val_size=200"]


def test_grid_axes_seeds_and_deterministic_names(tmp_path):
    sweep = Sweep(DEMO, [*tiny(tmp_path), "prune.fraction=0.20,0.5", "seeds=[0,1]", "rewind.policy=init,lr",
                         "branches=[reinit],[reinit,random_prune]"])
    assert sweep.seeds == [0, 1] and len(sweep.points) == 8 and len(sweep.jobs) == 16
    names = [p.name for p in sweep.points]
    assert names[0].startswith("demo,") and len(set(names)) == 8
    # 0.20 and 0.2 are the same experiment; a list value does not fit a folder name: a hash of the values
    plain = Sweep(DEMO, ["prune.fraction=0.20,0.5", "seed=3,4", *tiny(tmp_path)])
    assert [p.name for p in plain.points] == ["demo,prune.fraction=0.2", "demo,prune.fraction=0.5"]
    assert [j.cfg.prune.fraction for j in plain.jobs] == [0.2, 0.2, 0.5, 0.5] and plain.seeds == [3, 4]
    hashed = grid.point_name("demo", {"branches": "[reinit,random_prune]"})
    assert hashed == grid.point_name("demo", {"branches": "[reinit,random_prune]"}) and len(hashed) == len("demo,") + 8
    assert Sweep(DEMO, ["prune.fraction=0.2,0.5", *tiny(tmp_path)]).points[1].name == plain.points[1].name  # no spelling in names
    assert grid.split_values("[a,b],[c],'x,y'") == ["[a,b]", "[c]", "'x,y'"]
    assert Sweep(DEMO, tiny(tmp_path)).points[0].name == "demo"  # no axis: the experiment itself


@pytest.mark.parametrize("override, message", [
    ("prune.fration=0.2,0.5", "unknown grid key 'prune.fration': no 'fration' in prune; did you mean prune.fraction?"),
    ("prune.fraction=", "grid key prune.fraction has an empty value"),
    ("seeds=[]", "grid key seeds has an empty value"),
    ("prune.fraction=0.2,,0.5", "grid key prune.fraction has an empty value"),
    ("name=a,b", "name takes one value for the whole sweep"),
    ("prune.fraction=0.2,1.5", "grid point prune.fraction=1.5: prune.fraction=1.5 must be in (0, 1)"),
    ("trainer.logger=tensorbord", "unknown trainer.logger 'tensorbord'"),
    ("prune", "'prune' is not a key=value override"),
])
def test_bad_grids_are_one_line_and_exit_2(tmp_path, capsys, override, message):
    code = main(["sweep", "--config", DEMO, *tiny(tmp_path), override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("missing, argv, message", [
    ("submitit", [], 'lottery sweep needs the submitit package, which is not installed: pip install -e ".[sweep]"'),
    ("wandb", ["trainer.logger=wandb"], 'needs the wandb package, which is not installed: pip install -e ".[wandb]"'),
    ("mlflow", ["trainer.logger=mlflow"], "trainer.logger=mlflow needs the mlflow package"),
    ("sbatch", ["--launcher", "slurm"], "SLURM is not available here (no sbatch or srun on PATH)"),
])
def test_missing_tools_exit_2_before_anything_is_submitted(tmp_path, capsys, monkeypatch, missing, argv, message):
    if missing == "sbatch":
        monkeypatch.setenv("PATH", str(tmp_path))  # a machine without SLURM
    else:
        monkeypatch.setitem(sys.modules, missing, None)  # as if not installed: `import` raises ImportError
    code = main(["sweep", "--config", DEMO, "prune.fraction=0.2,0.5", *tiny(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("demo*")) and not (tmp_path / "sweeps" / "demo" / "jobs.json").exists()


def _curve(run_dir):
    return (run_dir / "curve.csv").read_text()


@pytest.mark.slow
def test_local_sweep_kill_a_job_resubmit_and_get_the_direct_curves(tmp_path, capsys):
    """The real submitit LocalExecutor: 2 experiments x 2 seeds, one job killed mid-level, then the same command again."""
    argv = ["sweep", "--config", DEMO, "prune.fraction=0.2,0.5", "seeds=[0,1]", *tiny(tmp_path, steps=30)]
    first = {}
    submitter = threading.Thread(target=lambda: first.update(code=main([*argv, "--launcher", "local", "--parallel", "2"])))
    submitter.start()
    victim = tmp_path / "demo,prune.fraction=0.2" / "seed_0"
    deadline = time.time() + 120
    while not (victim / "level_00" / "metrics.json").exists() and submitter.is_alive() and time.time() < deadline:
        time.sleep(0.005)
    os.kill(int((victim / ".lock").read_text()), signal.SIGKILL)  # the job's process, inside level 1
    submitter.join(240)
    out = capsys.readouterr().out
    assert first["code"] == 1
    assert "failed  demo,prune.fraction=0.2/seed_0" in out and "stopped without a result" in out
    assert not (victim / "level_01" / "metrics.json").exists(), "the job finished before it could be killed"

    assert main([*argv, "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(ln for ln in lines if ln.startswith("demo,prune.fraction=0.2/seed_0"))
    assert "1/2" in line and "failed" in line and "_log.err" in line
    log = Path(line.split("log ")[-1])
    assert log.exists() and log.parent.parent == tmp_path / "sweeps" / "demo" / "jobs"
    assert sum(" 2/2  done" in ln for ln in lines) == 3

    level0 = (victim / "level_00" / "metrics.json").stat().st_mtime_ns
    assert main([*argv, "--launcher", "local"]) == 0
    assert "1 of 4 job(s) to run" in capsys.readouterr().out  # only the killed one
    assert (victim / "level_00" / "metrics.json").stat().st_mtime_ns == level0  # its finished level was not retrained
    summary = (tmp_path / "sweeps" / "demo" / "summary.csv").read_text()
    assert summary.count("demo,prune.fraction=") == 4 and (tmp_path / "sweeps" / "demo" / "summary.png").exists()

    for fraction in ("0.2", "0.5"):  # the same experiments, run directly one seed after the other
        name = f"demo,prune.fraction={fraction}"
        for seed in (0, 1):
            cfg = load_config(DEMO, [*tiny(tmp_path / "direct", steps=30), f"prune.fraction={fraction}", f"name={name}", f"seed={seed}"])
            run(cfg, log=lambda *_: None)
        assert _curve(tmp_path / name) == _curve(tmp_path / "direct" / name)


def test_slurm_array_submission(tmp_path, monkeypatch, capsys):
    """Up to sbatch: the real SlurmExecutor with an `sbatch` that records the script instead of queueing it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = ["sweep", "--config", DEMO, "prune.fraction=0.2,0.5", "seeds=[0,1]", *tiny(tmp_path), "launcher.setup=[module load cuda]"]
    slurm = ["--launcher", "slurm", "--partition", "gpu", "--time", "90", "--gpus", "1", "--cpus", "4", "--parallel", "3"]
    assert main(argv + slurm) == 0
    assert "submitted 4 job(s) (SLURM job 4242, 3 at a time)" in capsys.readouterr().out
    script = (tmp_path / "submitted.sh").read_text()
    for flag in ("--array=0-3%3", "--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--ntasks-per-node=1", "--nodes=1", "--job-name=lottery-demo", "--signal=USR2@90"):
        assert f"#SBATCH {flag}\n" in script
    assert "module load cuda\n" in script and f"-m submitit.core._submit {tmp_path}/sweeps/demo/jobs/%j" in script
    assert "srun --unbuffered" in script
    jobs = sorted((tmp_path / "sweeps" / "demo" / "jobs").glob("4242_*/4242_*_submitted.pkl"))
    assert len(jobs) == 4
    commands = sorted(pickle.loads(p.read_bytes()).function.command() for p in jobs)  # what each task runs
    assert commands[0].startswith(f"lottery run --config {DEMO} ")
    assert commands[0].endswith("prune.fraction=0.2 name=demo,prune.fraction=0.2 seed=0")
    assert commands[3].endswith("prune.fraction=0.5 name=demo,prune.fraction=0.5 seed=1")
    assert main(argv + ["--status"]) == 0  # no sacct here: submitted, state unknown
    status = capsys.readouterr().out
    assert status.count("state unknown: sacct unavailable") == 4 and "0/2" in status and "4 submitted" in status


@pytest.mark.slow
def test_with_lanes_one_job_trains_every_seed_of_a_grid_point(tmp_path, capsys):
    args = ["prune.fraction=0.2,0.5", "seeds=[0,1]", "trainer.lanes=auto", *tiny(tmp_path, steps=20)]
    sweep = Sweep(DEMO, args)
    assert [j.key for j in sweep.jobs] == ["demo,prune.fraction=0.2/seeds_0_1", "demo,prune.fraction=0.5/seeds_0_1"]
    assert sweep.run_of(sweep.jobs[0]).command().endswith("'seeds=[0,1]'")  # quoted for the shell
    assert main(["sweep", "--config", DEMO, *args, "--launcher", "local"]) == 0
    assert "2 of 2 job(s) to run" in capsys.readouterr().out
    assert main(["sweep", "--config", DEMO, *args, "--status"]) == 0
    status = capsys.readouterr().out
    assert sum(" 2/2  done" in ln and "/seeds_0_1" in ln for ln in status.splitlines()) == 2, status
    for fraction in ("0.2", "0.5"):
        rows = list(csv.DictReader(open(tmp_path / f"demo,prune.fraction={fraction}" / "curve.csv")))
        assert {r["seeds"] for r in rows} == {"2"}  # both seeds in every level's mean
