"""`lottery sweep`: grids, names, bad input, the real submitit local path (kill, resubmit, same curves) and SLURM arrays."""
import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from lottery.cli.command import main
from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.cli.sweep import Sweep
from tests.cli.helpers import DEMO, tiny_sweep


def _curve(run_dir):
    return (run_dir / "curve.csv").read_text()


@pytest.mark.slow
def test_local_sweep_kill_a_job_resubmit_and_get_the_direct_curves(tmp_path, capsys):
    """The real submitit LocalExecutor: 2 experiments x 2 seeds, one job killed mid-level, then the same command again."""
    argv = ["sweep", "--config", DEMO, "prune.fraction=0.2,0.5", "seeds=[0,1]", *tiny_sweep(tmp_path, steps=30)]
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
            cfg = load_config(DEMO, [*tiny_sweep(tmp_path / "direct", steps=30), f"prune.fraction={fraction}", f"name={name}", f"seed={seed}"])
            run(cfg, log=lambda *_: None)
        assert _curve(tmp_path / name) == _curve(tmp_path / "direct" / name)


@pytest.mark.slow
def test_with_lanes_one_job_trains_every_seed_of_a_grid_point(tmp_path, capsys):
    args = ["prune.fraction=0.2,0.5", "seeds=[0,1]", "trainer.lanes=auto", *tiny_sweep(tmp_path, steps=20)]
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
