"""Methods from a package outside lottery: the worked example of docs/development.md (a strategy, a branch, a
sparse-training method with an option of its own, a one-shot pruner), written from the page into a temporary
folder, declared through the `lottery.methods` entry points as an installed package is, and run by `lottery run`
(as lanes too) to the curve, report.md and `lottery list`, with no file of lottery/ touched."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import DEMO, ROOT

BLOCK = re.compile(r"```(?:python|toml)\n# (lottery_extras/[^\n]+)\n(.*?)```", re.S)


def _package(site: Path) -> None:
    """The example's files from docs/development.md, and the metadata pip would write for it (its entry points)."""
    files = BLOCK.findall((ROOT / "docs" / "development.md").read_text())
    assert {path for path, _ in files} == {"lottery_extras/pyproject.toml", "lottery_extras/lottery_extras/__init__.py"}
    for path, text in files:
        target = site / Path(path).relative_to("lottery_extras")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    info = site / "lottery_extras-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lottery-extras\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lottery.methods]\nextras = lottery_extras\n")


def _snapshot() -> dict:
    return {p: p.stat().st_mtime_ns for p in (ROOT / "lottery").rglob("*.py")}


def _lottery(site: Path, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "lottery", *argv], capture_output=True, text=True, env=env,
                          cwd=site, timeout=600)


@pytest.mark.slow
def test_methods_of_an_outside_package_run_everywhere_a_method_does(tmp_path):
    site = tmp_path / "site"
    _package(site)
    ours = _snapshot()
    listed = _lottery(site, "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"snfs +\[sparse-training method\] SET growing where the momentum is largest", listed.stdout)
    assert re.search(r"\n  lamp +layer-adaptive magnitude", listed.stdout)
    assert "sign_flip" in listed.stdout and "taylor" in listed.stdout

    runs = tmp_path / "runs"
    done = _lottery(site, "run", "--verbose", "--config", DEMO, f"runs_dir={runs}", "prune.levels=2", "train.epochs=2",
                    "prune.strategy=lamp", "branches=[reinit,sign_flip,snfs,taylor]", "methods.snfs.state=exp_avg",
                    "seeds=[0,1]", "trainer.lanes=auto", "sparse.interval_steps=5", "trainer.progress=false",
                    "trainer.accelerator=cpu", "data.val_size=200")
    assert done.returncode == 0, done.stderr
    # in the level's network with every other method, a lane per run (SNFS skips its update steps on its lanes alone)
    assert "10 runs like 'level 1': 10 lanes" in done.stdout
    run = runs / "demo"
    with open(run / "curve.csv") as f:
        level2 = next(r for r in csv.DictReader(f) if r["level"] == "2")
    assert all(level2[f"{m}_test_acc"] for m in ("sign_flip", "snfs", "taylor"))
    with open(run / "curve_seeds.csv") as f:
        rows = {(r["seed"], r["method"], r["level"]): r for r in csv.DictReader(f)}
    imp = sum(float(rows["0", "ticket", str(level)]["cost"]) for level in (0, 1))
    flip = rows["0", "sign_flip", "2"]  # it builds on IMP's levels: their cost, then its own training
    assert float(flip["reach_cost"]) == pytest.approx(imp + float(flip["cost"]))
    assert float(rows["0", "snfs", "2"]["reach_cost"]) == pytest.approx(float(rows["0", "snfs", "2"]["cost"]))
    report = (run / "report.md").read_text()
    assert all(f"### {m}" in report for m in ("sign_flip", "snfs", "taylor"))
    assert re.search(r"\| snfs \| [0-9.]+ \|", report) and re.search(r"\| taylor \| [0-9.]+ \|", report)  # overlap
    assert "methods:\n  snfs:\n    state: exp_avg" in (run / "config.yaml").read_text()
    assert _snapshot() == ours  # nothing of lottery/ was written


@pytest.mark.slow
def test_an_outside_methods_options_and_check_refuse_before_anything_is_written(tmp_path):
    site = tmp_path / "site"
    _package(site)
    runs = tmp_path / "runs"
    for argv, phrase in [
        (["methods.snfs.state=nesterov"], "methods.snfs.state='nesterov' must be exp_avg (Adam) or momentum_buffer"),
        (["methods.snfs.stat=exp_avg"], "snfs has no option 'stat' (did you mean 'state'?)"),
        (["methods.snfs.state=momentum_buffer"], "methods.snfs.state=momentum_buffer is not kept by train.optim.optimizer=adam"),
    ]:
        failed = _lottery(site, "run", "--config", DEMO, f"runs_dir={runs}", "branches=[snfs]", "train.steps=6",
                          "prune.levels=1", "trainer.progress=false", *argv)
        assert failed.returncode == 2 and phrase in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
        assert not runs.exists()
