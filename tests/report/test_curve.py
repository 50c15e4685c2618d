"""A run folder's curve: curve_seeds.csv, curve.csv, curve.png and report.md with both matching rules."""
import csv

import pytest

from lottery.core.schema import ExperimentConfig
from lottery.report import curve
from lottery.report.rows import seed_rows


def test_write_report_writes_tables_plot_and_a_report_with_both_rules(run):
    table = curve.write_report(run, ExperimentConfig(matching_tolerance=0.5), seed_rows(run)).table
    assert [r["level"] for r in table] == [0, 1, 2]
    assert table[1]["test_acc"] == pytest.approx((0.955 + 0.94) / 2) and table[1]["reinit_test_acc"] == 0.5
    with open(run.curve("csv")) as f:
        assert [int(r["level"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert run.curve("png").stat().st_size > 1000 and run.curve_seeds.exists()
    report = run.report.read_text()
    assert "### ticket" in report and "### reinit" in report
    assert "seed 0 level 2 (64.00%), seed 1 level 1 (80.00%)" in report  # the exported tickets, per seed


def test_several_runs_on_one_curve(run, tmp_path):
    from lottery.core.errors import LotteryError
    from lottery.core.layout import RunLayout

    other = RunLayout.of(tmp_path, "empty")
    out = curve.compare({"exp": (run, ExperimentConfig(), seed_rows(run)),
                         "again": (run, ExperimentConfig(), seed_rows(run))}, tmp_path / "both.png")
    assert out.stat().st_size > 1000
    with pytest.raises(LotteryError, match="has no finished level yet"):
        curve.compare({"empty": (other, ExperimentConfig(), [])}, tmp_path / "none.png")
