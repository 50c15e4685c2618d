"""How jobs reach a scheduler: a SLURM job array through submitit, and the tools a launcher needs."""
import os
import pickle
import sys

import pytest

from lottery.cli.command import main
from tests.cli.helpers import DEMO, tiny_sweep


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
    code = main(["sweep", "--config", DEMO, "prune.fraction=0.2,0.5", *tiny_sweep(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("demo*")) and not (tmp_path / "sweeps" / "demo" / "jobs.json").exists()


def test_slurm_array_submission(tmp_path, monkeypatch, capsys):
    """Up to sbatch: the real SlurmExecutor with an `sbatch` that records the script instead of queueing it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = ["sweep", "--config", DEMO, "prune.fraction=0.2,0.5", "seeds=[0,1]", *tiny_sweep(tmp_path), "launcher.setup=[module load cuda]"]
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
