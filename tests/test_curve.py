"""Curves: mean ± std across seeds and the sparsest matching level; from a run folder, the rows it finds,
the exported ticket's level, the report with both rules."""
import csv
import math

import pytest

from lottery import curve
from lottery.curve import aggregate, markdown_report, sparsest_matching
from lottery.errors import LotteryError
from lottery.files import write_json
from lottery.layout import RunLayout


def _rows():
    """Three seeds of IMP, one seed of SNIP; accuracies as fractions, as in metrics.json."""
    imp = {0: [0.90, 0.92, 0.91], 1: [0.91, 0.90, 0.92], 2: [0.90, 0.90, 0.90], 3: [0.85, 0.86, 0.87]}
    density = {0: 1.0, 1: 0.8, 2: 0.64, 3: 0.512}
    rows = [{"method": "imp", "level": lv, "seed": s, "test_acc": acc, "density": density[lv]}
            for lv, accs in imp.items() for s, acc in enumerate(accs)]
    rows += [{"method": "snip", "level": lv, "seed": 0, "test_acc": acc, "density": density[lv]}
             for lv, acc in {0: 0.91, 1: 0.80, 2: 0.70}.items()]
    return rows


def _get(agg, method, level):
    return next(r for r in agg if r["method"] == method and r["level"] == level)


def test_mean_std_and_n_are_exact():
    agg = aggregate(_rows())
    r = _get(agg, "imp", 0)
    assert r["n"] == 3 and r["test_acc_n"] == 3
    assert r["test_acc_mean"] == pytest.approx(0.91, abs=1e-15)
    assert r["test_acc_std"] == pytest.approx(0.01, abs=1e-15)  # sample std (n - 1): sqrt(0.0002 / 2)
    assert _get(agg, "imp", 2)["test_acc_std"] == 0.0
    assert _get(agg, "imp", 3)["density_mean"] == 0.512
    one = _get(agg, "snip", 1)
    assert one["n"] == 1 and one["test_acc_mean"] == 0.80 and one["test_acc_std"] == 0.0  # one seed: no spread
    assert [(r["method"], r["level"]) for r in agg] == [("imp", 0), ("imp", 1), ("imp", 2), ("imp", 3),
                                                         ("snip", 0), ("snip", 1), ("snip", 2)]


def test_missing_values_are_left_out_and_missing_keys_are_an_error():
    rows = [{"method": "m", "level": 1, "test_acc": 0.5}, {"method": "m", "level": 1, "test_acc": None}]
    r = aggregate(rows, values=("test_acc", "density"))[0]
    assert r["n"] == 2 and r["test_acc_n"] == 1 and r["test_acc_mean"] == 0.5
    assert r["density_mean"] is None and r["density_std"] is None
    with pytest.raises(LotteryError, match="level"):
        aggregate([{"method": "m", "test_acc": 0.5}])


def test_sparsest_matching_uses_the_mean_and_includes_the_edge():
    agg = aggregate(_rows())
    match = sparsest_matching(agg, tolerance_points=1.0)
    # imp: dense mean 91.0; level 2 mean 90.0 is exactly 1 point below (a tie with the tolerance): it matches,
    # even though its seeds never reach the dense mean. Level 3 (86.0) does not.
    assert match["imp"]["level"] == 2
    assert match["snip"] is None  # 80 and 70 against 91: no pruned level matches
    assert sparsest_matching(agg, tolerance_points=0.99)["imp"]["level"] == 1
    assert sparsest_matching(agg, tolerance_points=5.0)["imp"]["level"] == 3


def test_sparsest_matching_breaks_equal_density_ties_by_level_and_can_share_a_dense_reference():
    rows = [{"method": "pai", "level": lv, "test_acc": acc, "density": d}
            for lv, acc, d in [(1, 0.90, 0.5), (2, 0.90, 0.5), (3, 0.70, 0.1)]]
    rows += [{"method": "dense", "level": 0, "test_acc": 0.905, "density": 1.0}]
    agg = aggregate(rows)
    with pytest.raises(LotteryError, match="dense_method"):
        sparsest_matching(agg)
    match = sparsest_matching(agg, tolerance_points=1.0, dense_method="dense")
    assert match["pai"]["level"] == 2  # levels 1 and 2 match at the same density: the later one
    assert match["dense"] is None


def test_percent_valued_accuracies():
    agg = aggregate([{"method": "m", "level": 0, "test_acc": 91.0}, {"method": "m", "level": 1, "test_acc": 90.5}])
    assert sparsest_matching(agg, 1.0, acc_scale=1.0)["m"]["level"] == 1
    assert sparsest_matching(agg, 0.4, acc_scale=1.0)["m"] is None


def test_markdown_report_has_a_table_and_a_matching_line_per_method():
    agg = aggregate(_rows())
    text = markdown_report(agg, sparsest_matching(agg, 1.0), 1.0)
    assert "### imp" in text and "### snip" in text
    assert "| level | % remaining | test_acc (mean ± std, %) | n |" in text
    assert "| 0 | 100.00 | 91.00 ± 1.00 | 3 |" in text
    assert "| 3 | 51.20 | 86.00 ± 1.00 | 3 |" in text
    assert "Sparsest matching level (mean test_acc within 1 points of dense): level 2 (64.00% remaining, " \
           "90.00 ± 0.00)." in text
    assert text.count("none.") == 1
    assert not math.isnan(_get(agg, "snip", 2)["test_acc_std"])


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
