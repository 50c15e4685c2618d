"""Across seeds: mean ± std per (method, level), and the one rule that decides "matching" everywhere.

Accuracies are fractions in [0, 1], as in each level's metrics.json; tolerances are in accuracy points
(percent), as the papers state them ("within one percentage point"). Matching is decided on the mean over
seeds (Frankle & Carbin 2019 report means over five trials).

`sparsest_matching`: the sparsest pruned level whose accuracy is within the tolerance of the dense network's.
report.md applies it to the mean test accuracy over seeds; the exported ticket applies it to one seed's final
validation accuracy (`winning_level`), so that the test set takes no part in choosing it.
"""
from __future__ import annotations

import statistics
from typing import Iterable, Mapping, Sequence

from lottery.core.errors import LotteryError
from lottery.report.rows import IMP_METHOD

Row = Mapping[str, object]
# Float noise in "mean >= dense - tolerance" must not decide a level that is exactly at the edge.
_EPS_POINTS = 1e-9


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    # Sample standard deviation (n - 1) across seeds; one seed has no spread to estimate: 0.
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _sorted(keys: Iterable[tuple]) -> list[tuple]:
    try:
        return sorted(keys)
    except TypeError:  # keys of mixed types (e.g. None beside str): keep the order of first appearance
        return list(keys)


def aggregate(rows: Iterable[Row], by: Sequence[str] = ("method", "level"),
              values: Sequence[str] = ("test_acc", "density")) -> list[dict]:
    """One dict per group of `by` keys: the keys, n (rows), and `<v>_mean`, `<v>_std`, `<v>_n` per value.

    A value that is missing or None in a row (e.g. a control that was not run) is left out of that
    group's mean; groups come sorted by their `by` keys.
    """
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        missing = [k for k in by if k not in r]
        if missing:
            raise LotteryError(f"row {dict(r)} lacks the grouping key(s) {missing}; group by keys every row has")
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key in _sorted(groups):
        members = groups[key]
        agg = {**dict(zip(by, key)), "n": len(members)}
        for v in values:
            xs = [float(r[v]) for r in members if r.get(v) is not None]
            agg[f"{v}_mean"], agg[f"{v}_std"] = _mean_std(xs)
            agg[f"{v}_n"] = len(xs)
        out.append(agg)
    return out


def by_method(aggregated: Iterable[Row], method_key: str) -> dict[object, list[Row]]:
    methods: dict[object, list[Row]] = {}
    for r in aggregated:
        methods.setdefault(r[method_key], []).append(r)
    return methods


def _dense_mean(rows: list[Row], method: object, value: str, level_key: str, dense_level: int) -> float:
    dense = [r for r in rows if r[level_key] == dense_level and r.get(f"{value}_mean") is not None]
    if not dense:
        raise LotteryError(f"method {method!r} has no level {dense_level} (dense) {value}; "
                           f"pass dense_method= the method whose level {dense_level} is the dense network")
    return float(dense[0][f"{value}_mean"])


def _sparsity_key(r: Row, level_key: str) -> tuple:
    """Sort key, sparsest first: lowest mean density if known, else the highest level."""
    density = r.get("density_mean")
    return (density if density is not None else float("inf"), -r[level_key])


def sparsest_matching(aggregated: Sequence[Row], tolerance_points: float = 1.0, value: str = "test_acc",
                      method_key: str = "method", level_key: str = "level", dense_level: int = 0,
                      dense_method: object | None = None, acc_scale: float = 100.0) -> dict[object, Row | None]:
    """Per method, the sparsest level whose MEAN `value` is within `tolerance_points` of the dense mean.

    Args:
        dense_method: whose level `dense_level` is the reference for every method (e.g. pruning
            at init has no dense level of its own); default: each method's own.
        acc_scale: points per unit of `value`: 100 for fractions, 1 for values already in percent.
    Returns None for a method where no pruned level matches.
    """
    methods = by_method(aggregated, method_key)
    if dense_method is not None and dense_method not in methods:
        raise LotteryError(f"dense_method {dense_method!r} is not among the methods {sorted(map(str, methods))}")
    out: dict[object, Row | None] = {}
    for method, rows in methods.items():
        ref = dense_method if dense_method is not None else method
        dense = _dense_mean(methods[ref], ref, value, level_key, dense_level)
        matching = [r for r in rows if r[level_key] != dense_level and r.get(f"{value}_mean") is not None
                    and (dense - float(r[f"{value}_mean"])) * acc_scale <= tolerance_points + _EPS_POINTS]
        out[method] = min(matching, key=lambda r: _sparsity_key(r, level_key)) if matching else None
    return out


CHANCE_MARGIN_POINTS = 1.0  # a dense network within this of chance has learnt nothing worth a ticket


def at_chance(dense: Row) -> bool:
    """Whether the dense network's test accuracy is within CHANCE_MARGIN_POINTS of always predicting the most frequent
    class of the test set (`chance_acc`, recorded by every training): then no level of it is a winning ticket."""
    chance = dense.get("chance_acc")
    return chance is not None and (float(dense["test_acc"]) - float(chance)) * 100 <= CHANCE_MARGIN_POINTS


def winning_level(rows: list[dict], tolerance_points: float, method: str = IMP_METHOD) -> dict:
    """The row of the ticket to export from one seed's `rows`: the sparsest IMP level (or training of branch
    `method`) whose final validation accuracy is within `tolerance_points` of the dense level's (the test set stays
    untouched by the choice); the dense level 0 if no IMP level matches, an error naming the levels if no branch's does."""
    imp = [r for r in rows if r["method"] == IMP_METHOD]
    dense = next((r for r in imp if r["level"] == 0 and r.get("final_val_acc") is not None), None)
    if dense is None:
        raise LotteryError(f"no dense level (level 0) with a validation accuracy among {len(imp)} IMP rows: "
                           "the winning ticket is chosen against it")
    own = [r for r in rows if r["method"] == method]
    matching = [r for r in own if r["level"] != 0 and r.get("final_val_acc") is not None
                and (dense["final_val_acc"] - r["final_val_acc"]) * 100 <= tolerance_points + _EPS_POINTS]
    if not matching and method != IMP_METHOD:
        accs = ", ".join(f"level {r['level']} {100 * r['final_val_acc']:.2f}%" for r in own)
        raise LotteryError(f"no training of {method} matches the dense network (validation {100 * dense['final_val_acc']:.2f}%"
                           f" within {tolerance_points} points): {accs}; choose one with --level")
    return min(matching, key=lambda r: (r["density"] if r.get("density") is not None else float("inf"), -r["level"]),
               default=dense)
