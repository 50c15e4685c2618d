"""Sparsity-vs-accuracy curves of a run folder: the level metrics of every seed and branch as tables, a plot and
a report.

    curve_seeds.csv  one row per (seed, method, level): the raw numbers (lottery.report.rows)
    curve.csv        one row per level: the IMP level's numbers and each branch's test accuracy, mean (and std) over seeds
    curve.png        accuracy vs % of weights remaining (log axis, bands = ± std over seeds), the early-stopping
                     iteration vs % remaining (Frankle & Carbin 2019, Figures 3-4), and accuracy vs the training cost
                     spent to reach each network (lottery.report.cost)
    report.md        a table per method and its sparsest matching level, the exported ticket's level, the cheapest
                     matching method per sparsity, and the masks' overlap (lottery.report.masks)
    earlybird.png    the early-bird mask distance per epoch, when level 0 was watched (the earlybird branch)
"""
from __future__ import annotations

from typing import Mapping

from lottery.core.files import write_csv, write_text
from lottery.core.layout import RunLayout
from lottery.report.cost import cheapest_matching, with_reach_cost
from lottery.report.markdown import exported_levels, markdown_report
from lottery.report.masks import overlap_section
from lottery.report.matching import aggregate, sparsest_matching
from lottery.report.plots import plot_curve, plot_earlybird
from lottery.report.rows import IMP_METHOD, VALUES, table_fields


def level_table(aggregated: list[dict]) -> list[dict]:
    """One row per level: the IMP level's numbers and each branch's test accuracy (means over seeds)."""
    table: dict[int, dict] = {}
    for r in aggregated:
        if r["method"] == IMP_METHOD:
            table[r["level"]] = {"level": r["level"], "density": r["density_mean"], "percent_remaining": 100 * r["density_mean"],
                                 "test_acc": r["test_acc_mean"], "test_acc_std": r["test_acc_std"], "seeds": r["n"],
                                 **{k: r[f"{k}_mean"] for k in VALUES[3:]}, "final_val_acc": r["final_val_acc_mean"],
                                 "reach_cost": r["reach_cost_mean"]}
    for r in aggregated:
        if r["method"] != IMP_METHOD and r["level"] in table:
            table[r["level"]][f"{r['method']}_test_acc"] = r["test_acc_mean"]
            table[r["level"]][f"{r['method']}_test_acc_std"] = r["test_acc_std"]
    return [table[k] for k in sorted(table)]


def write_all(run: RunLayout, rows: list[dict], tolerance_points: float, title: str,
              builds_on: Mapping[str, str] | None = None) -> list[dict]:
    """Write curve_seeds.csv, curve.csv, curve.png, report.md (and earlybird.png) of `run` from its `rows`; return the
    level table. builds_on: what each branch's mask needs besides its own training (lottery.imp.branches.BUILDS_ON)."""
    rows = with_reach_cost(rows, builds_on or {})
    aggregated = aggregate(rows, by=("method", "level"), values=(*VALUES, "reach_cost"))
    aggregated.sort(key=lambda r: r["method"] != IMP_METHOD)  # IMP first, the branches after (stable sort)
    table = level_table(aggregated)
    write_csv(run.curve_seeds, table_fields(rows))
    write_csv(run.curve("csv"), table)
    plot_curve(aggregated, run.curve("png"), title)
    plot_earlybird(rows, run.earlybird_plot, f"{title}: early-bird tickets")
    matching = sparsest_matching(aggregated, tolerance_points, dense_method=IMP_METHOD)
    seeds = sorted({r["seed"] for r in rows})
    report = (f"# {title}\n\nSeeds: {seeds}. Test accuracy, mean ± sample std over seeds. A level *matches* when its "
              f"mean test accuracy is within {tolerance_points:g} points of the dense network's.\n\n"
              + markdown_report(aggregated, matching, tolerance_points) + "\n" + exported_levels(rows, tolerance_points)
              + "\n### the cheapest matching network at each sparsity\n\nCost: the multiply-accumulates spent to reach it, "
              "in dense trainings (IMP pays for every level up to it; lottery.report.cost).\n\n"
              + cheapest_matching(rows, tolerance_points) + "\n" + overlap_section(run, rows))
    write_text(run.report, report)
    return table
