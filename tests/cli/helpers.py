"""What the command-line tests share: the demo config shrunk to seconds, and how they run the command."""
import shutil
from pathlib import Path

from lottery.cli.command import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "experiments" / "configs" / "demo.yaml")
# `lottery run` of the demo in a second: level 0 alone, six steps
TINY_RUN = ["train.epochs=null", "train.steps=6", "prune.levels=0", "branches=[]", "trainer.progress=false",
            "trainer.accelerator=cpu"]


def tiny_sweep(runs_dir, steps=10):
    """The demo shrunk for the grid points of a sweep: one pruned level of a few steps."""
    return [f"runs_dir={runs_dir}", f"train.steps={steps}", "prune.levels=1", "branches=[]", "trainer.progress=false",
            "trainer.accelerator=cpu", "data.val_size=200"]


def run_main(capsys, *argv):
    """`lottery ARGV` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, phrase: str) -> None:
    """A user mistake is one line on stderr naming it, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lottery: error: "), err
    assert phrase in lines[0], lines[0]


def copy_run(finished: Path, runs: Path) -> Path:
    """A copy of a finished run folder in `runs`, for a test to damage or move."""
    shutil.copytree(finished, runs / "demo")
    return runs / "demo"


def truncate(path: Path) -> None:
    """Cut a file to half its size, as a crash in the middle of a non-atomic write would."""
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
