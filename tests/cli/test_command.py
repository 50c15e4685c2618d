"""The `lottery` command: every user mistake is one clear line and exit code 2, never a traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from lottery.cli.command import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "experiments" / "configs" / "demo.yaml")
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
