"""Instability analysis end to end on the digits data, shrunk to seconds (one epoch, 5 points)."""
import csv
import math

import pytest

from lottery.cli.command import main
from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.cli.stability import Stability, verdict
from lottery.core.errors import LotteryError
from lottery.core.files import read_json

QUIET = dict(log=lambda *_: None)


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"runs_dir={tmp_path}", "name=stab", "model.name=lenet_300_100", "data.name=digits",
                              "train.epochs=1", "prune.levels=1", "branches=[]", "trainer.progress=false",
                              "trainer.accelerator=cpu", "data.val_size=200", *overrides])


@pytest.mark.slow
def test_barriers_files_and_no_retraining(tmp_path, capsys):
    run(_cfg(tmp_path), **QUIET)  # level 1's mask, for the ticket rows
    rows = Stability(_cfg(tmp_path), **QUIET).run([5, 0], [1, 0], points=5)
    assert [(r["level"], r["k"]) for r in rows] == [(0, 0), (0, 5), (1, 0), (1, 5)]
    # Both ends are points of the path, so max >= each end >= their mean, and float rounding is monotonic:
    # the barrier is >= 0 exactly, not only up to a tolerance.
    assert all(math.isfinite(r["barrier"]) and 0 <= r["barrier"] <= r["max_error"] <= 1 for r in rows)
    assert rows[0]["density"] == 1 and 0.75 < rows[2]["density"] < 0.85  # level 1: 20% of the weights pruned
    out = tmp_path / "stab" / "stability" / "seed_0"
    with open(out / "stability.csv") as f:
        assert [(r["level"], r["k"]) for r in csv.DictReader(f)] == [("0", "0"), ("0", "5"), ("1", "0"), ("1", "5")]
    curves = read_json(out / "stability.json")["curves"]
    assert len(curves) == 4 and all(c["alpha"] == [0, 0.25, 0.5, 0.75, 1] for c in curves)
    assert (out / "stability.png").stat().st_size > 0
    done = [out / f"level_0{lv}" / f"k_{k}" / f"copy_{c}" / "metrics.json" for lv in (0, 1) for k in (0, 5) for c in "ab"]
    stamps = [p.stat().st_mtime_ns for p in done]
    dense = (out / "dense" / "metrics.json").stat().st_mtime_ns
    assert main(["stability", "--config", str(tmp_path / "stab" / "config.yaml"), f"runs_dir={tmp_path}",
                 "--steps", "0,5", "--levels", "0", "1", "--points", "5"]) == 0
    assert [p.stat().st_mtime_ns for p in done] == stamps  # finished copies are not retrained
    assert (out / "dense" / "metrics.json").stat().st_mtime_ns == dense  # nor the dense run
    assert "level 1:" in capsys.readouterr().out
    assert read_json(out / "stability.json")["rows"] == rows  # same numbers again


@pytest.mark.slow
def test_new_step_recaptures_the_dense_run(tmp_path):
    Stability(_cfg(tmp_path), **QUIET).run([0], [0], points=2)
    first = (tmp_path / "stab" / "stability" / "seed_0" / "init.safetensors").read_bytes()
    rows = Stability(_cfg(tmp_path), **QUIET).run([0, 3], [0], points=2)  # k = 3 was never captured
    assert [r["k"] for r in rows] == [0, 3]
    assert (tmp_path / "stab" / "stability" / "seed_0" / "init.safetensors").read_bytes() == first


@pytest.mark.slow
def test_copies_train_as_lanes_with_the_same_results(tmp_path):
    rows = {}
    for lanes in (1, 4):
        lines = []
        cfg = _cfg(tmp_path / f"lanes{lanes}", f"trainer.lanes={lanes}")
        run(cfg, **QUIET)
        rows[lanes] = Stability(cfg, log=lines.append).run([0, 5], [0, 1], points=3)
    assert "4 runs like 'level 0 k=0 copy a': 4 lanes" in "\n".join(lines)  # levels 0 and 1, copies a and b, at k = 0
    for one, together in zip(rows[1], rows[4]):
        assert (one["level"], one["k"], one["density"]) == (together["level"], together["k"], together["density"])
        for key in ("barrier", "error_a", "error_b", "max_error"):
            assert one[key] == pytest.approx(together[key], abs=0.02), key


def test_identical_data_orders_give_no_barrier(tmp_path):
    rows = Stability(_cfg(tmp_path), data_seeds=(7, 7), **QUIET).run([0], [0], points=5)
    assert rows[0]["barrier"] == 0.0 and rows[0]["error_a"] == rows[0]["error_b"] == rows[0]["max_error"]
    with pytest.raises(LotteryError, match="data seeds"):  # reusing those copies for other seeds would be wrong
        Stability(_cfg(tmp_path), **QUIET).run([0], [0], points=5)


def test_errors_name_the_fix(tmp_path):
    st = Stability(_cfg(tmp_path), **QUIET)
    with pytest.raises(LotteryError, match=r"must be in \[0, "):
        st.run([st.runner.total_steps], [0], points=5)
    with pytest.raises(LotteryError, match="run `lottery run"):
        st.run([0], [3], points=5)
    with pytest.raises(LotteryError, match="levels are 0"):
        st.run([0], [-1], points=5)
    with pytest.raises(LotteryError, match="points"):
        st.run([0], [0], points=1)
    assert not (tmp_path / "stab" / "stability" / "seed_0" / "dense").exists()  # nothing trained on bad arguments


def test_summary_names_the_first_stable_k():
    rows = [{"level": 0, "k": k, "barrier": b, "density": 1.0} for k, b in ((0, 0.05), (10, 0.01), (50, 0.0))]
    assert "level 0: stable from k=10" in verdict(rows)
    assert "not stable" in verdict([{"level": 2, "k": 0, "barrier": 0.3, "density": 0.5}])
