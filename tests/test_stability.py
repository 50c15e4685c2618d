"""Instability analysis end to end on the digits data, shrunk to seconds."""
import csv

import pytest

from lottery.cli import main
from lottery.config import load_config
from lottery.errors import LotteryError
from lottery.experiment import run
from lottery.stability import Stability


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"runs_dir={tmp_path}", "name=stab", "train.epochs=2", "prune.levels=1", "controls=[]",
                              "trainer.progress=false", "trainer.accelerator=cpu", "data.val_size=200", *overrides])


@pytest.mark.slow
def test_barriers_files_and_no_retraining(tmp_path, capsys):
    run(_cfg(tmp_path), log=lambda *_: None)  # level 1's mask for the ticket rows
    rows = Stability(_cfg(tmp_path), log=lambda *_: None).run([0, 5], [0, 1], points=5)
    assert [(r["level"], r["k"]) for r in rows] == [(0, 0), (0, 5), (1, 0), (1, 5)]
    # With 5 points the ends are on the path, so the barrier cannot be below 0 (max >= mean of the ends).
    assert all(r["barrier"] >= 0 and r["max_error"] <= 1 for r in rows)
    out = tmp_path / "stab" / "stability"
    with open(out / "stability.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (out / "stability.png").exists() and (out / "stability.json").exists()
    done = out / "level_01" / "k_5" / "copy_b" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    assert main(["stability", "--config", str(tmp_path / "stab" / "config.yaml"), f"runs_dir={tmp_path}",
                 "--steps", "0", "5", "--levels", "0", "1", "--points", "5"]) == 0
    assert done.stat().st_mtime_ns == stamp  # finished copies are not retrained
    assert "largest error barrier" in capsys.readouterr().out


def test_identical_copies_have_no_barrier(tmp_path):
    rows = Stability(_cfg(tmp_path), data_seeds=(7, 7), log=lambda *_: None).run([0], [0], points=5)
    assert rows[0]["barrier"] == 0.0 and rows[0]["error_a"] == rows[0]["error_b"]


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(LotteryError, match="outside"):
        Stability(_cfg(tmp_path), log=lambda *_: None).run([10_000], [0], points=5)
    with pytest.raises(LotteryError, match="run `lottery run"):
        Stability(_cfg(tmp_path), log=lambda *_: None).run([0], [3], points=5)
