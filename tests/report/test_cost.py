"""The cost of reaching each network: IMP pays for its levels, a branch for its training and what its mask builds
on; the cheapest matching method at each sparsity."""
import pytest

from lottery.report.cost import cheapest_matching, with_reach_cost
from lottery.report.matching import aggregate


def _row(method, level, cost, acc=0.9, seed=0, **extra):
    return {"seed": seed, "method": method, "level": level, "cost": cost, "test_acc": acc, "density": 0.8 ** level,
            "steps": 100, **extra}


ROWS = [_row("ticket", 0, 1.0, 0.95, watched={"earlybird": {"step": 20}}), _row("ticket", 1, 0.8, 0.95), _row("ticket", 2, 0.64, 0.94),
        _row("reinit", 2, 0.64, 0.90), _row("oneshot", 2, 0.64, 0.95), _row("earlybird", 2, 0.64, 0.949),
        _row("rigl", 2, 0.70, 0.946), _row("set", 2, None, 0.95)]
BUILDS_ON = {"reinit": "imp", "oneshot": "dense", "earlybird": "watch"}


def _summary(rows):
    return aggregate(with_reach_cost(rows, BUILDS_ON), by=("method", "level"), values=("test_acc", "density", "reach_cost"))


def test_each_method_pays_for_what_it_builds_on():
    reach = {(r["method"], r["level"]): r["reach_cost"] for r in with_reach_cost(ROWS, BUILDS_ON)}
    assert reach["ticket", 0] == 1.0 and reach["ticket", 2] == pytest.approx(1.0 + 0.8 + 0.64)  # levels 0..L
    assert reach["reinit", 2] == pytest.approx(1.0 + 0.8 + 0.64)  # the IMP levels before it, then its own training
    assert reach["oneshot", 2] == pytest.approx(1.0 + 0.64)  # the dense level, then its own
    assert reach["earlybird", 2] == pytest.approx(0.2 + 0.64)  # the dense level up to step 20 of 100
    assert reach["rigl", 2] == pytest.approx(0.70)  # nothing but a density
    assert reach["set", 2] is None  # its cost unknown (a run made before costs were recorded)


def test_the_cheapest_matching_method_per_level():
    table = cheapest_matching(_summary(ROWS), tolerance_points=0.5)
    lines = table.strip().splitlines()
    assert lines[2].startswith("| 1 | 80.00 | ticket | 1.80 | 95.00 | 1.80 |")
    assert lines[3].startswith("| 2 | 64.00 | rigl | 0.70 | 94.60 | 2.44 |")  # 94.9 and 94.6 match 95 within 0.5
    strict = cheapest_matching(_summary(ROWS), tolerance_points=0.01)
    assert "| 2 | 64.00 | oneshot | 1.64 |" in strict  # set matches too, but its cost is unknown
    assert "| 2 | 64.00 | none |" in cheapest_matching(_summary(ROWS[:3]), tolerance_points=0.01)


def test_a_watcher_with_a_detector_per_level_pays_up_to_that_levels_draw():
    per_level = {"earlybird_channels": {"levels": {"1": {"step": 30}, "2": {"step": 50}, "3": {"step": None}}}}
    rows = [_row("ticket", 0, 1.0, watched=per_level), *(_row("earlybird_channels", lv, 0.5) for lv in (1, 2, 3))]
    reach = {r["level"]: r["reach_cost"] for r in with_reach_cost(rows, {"earlybird_channels": "watch"})
             if r["method"] != "ticket"}
    assert reach == pytest.approx({1: 0.3 + 0.5, 2: 0.5 + 0.5, 3: 1.0 + 0.5})  # never drawn: all of the dense level
