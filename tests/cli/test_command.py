"""The `lottery` command: every user mistake is one clear line and exit code 2, never a traceback."""
import signal
import subprocess
import sys
import time

import pytest

from lottery.cli.command import main
from tests.cli.helpers import DEMO, ROOT, copy_run, one_line_error, run_main

FAST = ["train.epochs=1", "prune.levels=1", "trainer.progress=false", "trainer.accelerator=cpu"]


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("override, message", [
    ("model.name=lenet5", "unknown model 'lenet5'; choose one of:"),
    ("prune.strategy=magnitude", "unknown pruning strategy 'magnitude'"),
    ("rewind.policy=late", "unknown rewind policy 'late'"),
    ("prune.fraction=1.5", "prune.fraction=1.5 must be in (0, 1)"),
    ("prune.fration=0.5", "Key 'fration' not in 'PruneConfig'. Did you mean: 'fraction'"),
    ("train.epochs=many", "could not be converted to Integer"),
    ("data.name=imagenet", "unknown dataset 'imagenet'"),
    ("branches=[shuffle]", "unknown branch 'shuffle'"),
    ("controls=[reinit]", "`controls` in the command line is now called `branches`"),
    ("train.optim.optimizer=lion", "unknown optimizer 'lion'; choose one of: adam, adamw, sgd"),
])
def test_bad_config_values(tmp_path, capsys, override, message):
    code, _, err = _run(capsys, "run", "--config", DEMO, f"runs_dir={tmp_path}", *FAST, override)
    assert code == 2
    assert err.startswith("lottery: error: ") and message in err and "Traceback" not in err


def test_missing_config_file(capsys):
    code, _, err = _run(capsys, "run", "--config", "nope.yaml")
    assert code == 2 and "config file nope.yaml does not exist" in err


def test_run_export_inspect_and_their_errors(tmp_path, capsys):
    assert _run(capsys, "run", "--config", DEMO, f"runs_dir={tmp_path}", *FAST)[0] == 0
    run_dir = tmp_path / "demo"
    code, out, _ = _run(capsys, "export", str(run_dir), "--level", "1", "--out", str(tmp_path / "t.safetensors"))
    assert code == 0 and "level           1" in out and "fc1.weight" in out and "20.00%" in out
    code, out, _ = _run(capsys, "inspect", str(tmp_path / "t.safetensors"))
    assert code == 0 and "architecture    lenet_300_100" in out
    assert _run(capsys, "plot", str(run_dir))[0] == 0

    code, _, err = _run(capsys, "export", str(run_dir), "--level", "9", "--out", str(tmp_path / "x.safetensors"))
    assert code == 2 and "level 9 is not finished" in err
    code, _, err = _run(capsys, "export", str(tmp_path), "--out", str(tmp_path / "x.safetensors"))
    assert code == 2 and "not a lottery run folder" in err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 40)
    code, _, err = _run(capsys, "inspect", str(broken))
    assert code == 2 and "corrupt or truncated" in err
    code, _, err = _run(capsys, "run", "--config", DEMO, f"runs_dir={tmp_path}", *FAST, "train.optim.lr=0.1")
    assert code == 2 and "holds a different experiment" in err and "train.optim.lr" in err
    assert (run_dir / "seed_0" / "level_01" / "metrics.json").exists()  # nothing lost


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lottery", "run", "--config", DEMO, f"runs_dir={tmp_path}", "model.name=x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr


def test_version_and_print_config(tmp_path, capsys):
    import lottery

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lottery {lottery.__version__}"
    code, out, _ = _run(capsys, "run", "--config", DEMO, f"runs_dir={tmp_path / 'runs'}", "prune.levels=3", "--print-config")
    assert code == 0 and not (tmp_path / "runs").exists()  # nothing written
    from lottery.cli.config import from_yaml, load_config

    assert from_yaml(out) == load_config(DEMO, [f"runs_dir={tmp_path / 'runs'}", "prune.levels=3"])
    assert "allow_empty_layers: false" in out and "milestone_steps: []" in out  # every key, defaults included
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--print-config" in capsys.readouterr().out


# -- Ctrl-C --------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_resume_line_and_the_same_command_resumes(tmp_path):
    # Batches of 16: ~70 steps an epoch, so that level 0 lasts seconds, not the 2 s of 20 demo epochs, which a
    # reader of its lines on a loaded machine could fall behind (it then read every line after the level ended and
    # its checkpoint was gone).
    cmd = [sys.executable, "-m", "lottery", "run", "--config", DEMO, f"runs_dir={tmp_path}", "train.epochs=20",
           "data.batch_size=16", "prune.levels=1", "branches=[]", "trainer.progress=log", "trainer.accelerator=cpu"]
    # Ctrl-C as a terminal delivers it: the child starts with SIGINT's default action. A process inherits an ignored
    # SIGINT, and Python then never raises KeyboardInterrupt; in a full `make test` the pytest worker's SIGINT was at
    # times ignored (after some earlier test), and the run went on to finish.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = tmp_path / "demo" / "seed_0" / "level_00" / "checkpoints" / "last.ckpt"
    seen = []
    for line in proc.stderr:  # an epoch's line at a time (trainer.progress=log): on a loaded machine too
        seen.append(line)
        if line.startswith("level 0  epoch ") and ckpt.exists():
            break
    assert ckpt.exists(), "".join(seen)  # level 0 still training, its resume checkpoint written
    proc.send_signal(signal.SIGINT)  # inside level 0's training, which Lightning runs
    out, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("lottery: interrupted; finished levels are saved, "
                                            "run the same command again to resume")
    assert "Traceback" not in err and "level  1" not in out  # it did not go on to the next level
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming level 0 from epoch " in again.stdout
    assert (tmp_path / "demo" / "seed_0" / "level_01" / "metrics.json").exists()
    epochs = [ln for ln in again.stderr.splitlines() if ln.startswith("level 1  epoch ")]  # trainer.progress=log
    assert len(epochs) == 20 and epochs[-1].startswith("level 1  epoch 20/20  val/acc ")


@pytest.mark.slow
def test_a_checkpoint_the_file_system_refuses_is_one_line_and_the_rerun_resumes_to_the_same_curve(tmp_path):
    """Mid-run, the process may write no file over 400 KB (its level files are ~200 KB, a resume checkpoint with
    Adam's moments ~700 KB): the next checkpoint fails as on a full disk. The rerun resumes where it stopped."""
    import resource

    cmd = [sys.executable, "-m", "lottery", "run", "--config", DEMO, "train.epochs=2", "prune.levels=2",
           "branches=[]", "trainer.progress=false", "trainer.accelerator=cpu"]
    clean = subprocess.run([*cmd, f"runs_dir={tmp_path / 'clean'}"], cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    run = [*cmd, f"runs_dir={tmp_path / 'full'}"]
    # SIGXFSZ ignored: a write over the limit then fails with an error, as a write to a full disk does.
    proc = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    level_1 = tmp_path / "full" / "demo" / "seed_0" / "level_01" / "mask.safetensors"
    deadline = time.time() + 240
    while not level_1.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (400_000, 400_000))
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 2, err
    one_line_error(err, "File too large (")
    assert "last.ckpt" in err and "check that path, its permissions and the free space" in err
    assert not list((tmp_path / "full").rglob(".*.tmp*")), "a temporary file was left behind"
    level_0 = tmp_path / "full" / "demo" / "seed_0" / "level_00" / "metrics.json"
    stamp = level_0.stat().st_mtime_ns  # level 0 finished before the file system refused
    again = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert level_0.stat().st_mtime_ns == stamp  # read, not trained again
    assert (tmp_path / "full" / "demo" / "curve.csv").read_text() == (tmp_path / "clean" / "demo" / "curve.csv").read_text()


def test_an_os_error_is_one_line(tmp_path, capsys, finished):
    run_dir = copy_run(finished, tmp_path / "runs")
    (run_dir / "curve.csv").unlink()
    (run_dir / "curve.csv").mkdir()  # the plot cannot replace a folder by a file
    code, _, err = run_main(capsys, "plot", run_dir)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "curve.csv" in err


def test_plot_draws_several_runs_on_one_curve(tmp_path, capsys, finished):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(finished, other)
    code, out, _ = run_main(capsys, "plot", finished, other, "--out", tmp_path / "both.png")
    assert code == 0 and (tmp_path / "both.png").stat().st_size > 1000 and "both.png" in out
    code, _, err = run_main(capsys, "plot", finished, other)
    assert code == 2
    one_line_error(err, "draws one curve of several runs: name its picture, --out FILE.png")
