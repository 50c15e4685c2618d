"""Curves from a run folder: the rows it finds, the exported ticket's level, the report with both rules."""
import csv

import pytest

from lottery import curve
from lottery.files import write_json
from lottery.layout import RunLayout

# seed -> level -> (density, test_acc, final_val_acc): seed 1's level 2 loses 1 point of validation accuracy.
LEVELS = {0: {0: (1.0, 0.95, 0.96), 1: (0.8, 0.955, 0.958), 2: (0.64, 0.94, 0.957)},
          1: {0: (1.0, 0.93, 0.96), 1: (0.8, 0.94, 0.959), 2: (0.64, 0.95, 0.95)}}


def _metrics(density, test_acc, val_acc):
    return {"density": density, "test_acc": test_acc, "final_val_acc": val_acc, "best_val_acc": val_acc,
            "best_val_step": 10, "early_stop_step": 9}


@pytest.fixture
def run(tmp_path):
    run = RunLayout.of(tmp_path, "exp")
    for seed, levels in LEVELS.items():
        for level, values in levels.items():
            write_json(run.seed(seed).level(level).metrics, _metrics(*values))
            if level > 0:
                write_json(run.seed(seed).level(level).branch("reinit").metrics, _metrics(values[0], 0.5, 0.5))
    run.seed(0).level(3).path.mkdir()  # an unfinished level: not a row
    return run


def test_seed_rows_are_the_finished_trainings(run):
    rows = curve.seed_rows(run)
    assert len(rows) == 6 + 4
    assert {(r["seed"], r["method"], r["level"]) for r in rows if r["method"] == "reinit"} == {
        (s, "reinit", level) for s in (0, 1) for level in (1, 2)}
    assert [r["level"] for r in curve.seed_rows(run, seed=1, method=curve.TICKET)] == [0, 1, 2]


def test_the_exported_level_is_the_sparsest_matching_one_on_validation_accuracy(run):
    winner = lambda seed, tol: curve.winning_level(curve.seed_rows(run, seed=seed), tol)["level"]  # noqa: E731
    assert winner(0, 0.5) == 2  # 95.7 vs 96.0: within 0.5 points
    assert winner(1, 0.5) == 1  # level 2 loses a whole point
    assert winner(1, 0.05) == 0  # nothing matches: the dense network


def test_write_all_writes_tables_plot_and_a_report_with_both_rules(run):
    table = curve.write_all(run, 0.5, "test")
    assert [r["level"] for r in table] == [0, 1, 2]
    assert table[1]["test_acc"] == pytest.approx((0.955 + 0.94) / 2) and table[1]["reinit_test_acc"] == 0.5
    with open(run.curve("csv")) as f:
        assert [int(r["level"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert run.curve("png").stat().st_size > 1000 and run.curve_seeds.exists()
    report = run.report.read_text()
    assert "### ticket" in report and "### reinit" in report
    assert "seed 0: level 2" in report and "seed 1: level 1" in report  # the exported tickets, per seed
