"""Mean ± std across seeds and the one matching rule, on rows and on a run folder's exported level."""

import pytest

from lottery.core.errors import LotteryError
from lottery.report.matching import aggregate, sparsest_matching, winning_level
from lottery.report.rows import seed_rows


def _get(agg, method, level):
    return next(r for r in agg if r["method"] == method and r["level"] == level)


def test_mean_std_and_n_are_exact(rows):
    agg = aggregate(rows)
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


def test_sparsest_matching_uses_the_mean_and_includes_the_edge(rows):
    agg = aggregate(rows)
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


def test_the_exported_level_is_the_sparsest_matching_one_on_validation_accuracy(run):
    winner = lambda seed, tol: winning_level(seed_rows(run, seed=seed), tol)["level"]  # noqa: E731
    assert winner(0, 0.5) == 2  # 95.7 vs 96.0: within 0.5 points
    assert winner(1, 0.5) == 1  # level 2 loses a whole point
    assert winner(1, 0.05) == 0  # nothing matches: the dense network
