"""Sparsity-vs-accuracy curves of a run folder: the level metrics of every seed and branch as tables, a plot and
a report.

    curve_seeds.csv  one row per (seed, method, level): the raw numbers (lottery.report.rows)
    curve.csv        one row per level: the IMP level's numbers and each branch's test accuracy, mean (and std) over seeds
    curve.png        accuracy vs % of weights remaining (log axis, bands = ± std over seeds), and
                     the early-stopping iteration vs % remaining (Frankle & Carbin 2019, Figures 3-4)
    report.md        a table per method and its sparsest matching level, and the exported ticket's level
"""
from __future__ import annotations

from lottery.core.files import write_csv, write_text
from lottery.core.layout import RunLayout
from lottery.report.markdown import exported_levels, markdown_report
from lottery.report.matching import aggregate, sparsest_matching
from lottery.report.plots import plot_curve
from lottery.report.rows import IMP_METHOD, VALUES


def level_table(aggregated: list[dict]) -> list[dict]:
    """One row per level: the IMP level's numbers and each branch's test accuracy (means over seeds)."""
    table: dict[int, dict] = {}
    for r in aggregated:
        if r["method"] == IMP_METHOD:
            table[r["level"]] = {"level": r["level"], "density": r["density_mean"], "percent_remaining": 100 * r["density_mean"],
                                 "test_acc": r["test_acc_mean"], "test_acc_std": r["test_acc_std"], "seeds": r["n"],
                                 **{k: r[f"{k}_mean"] for k in VALUES[3:]}, "final_val_acc": r["final_val_acc_mean"]}
    for r in aggregated:
        if r["method"] != IMP_METHOD and r["level"] in table:
            table[r["level"]][f"{r['method']}_test_acc"] = r["test_acc_mean"]
            table[r["level"]][f"{r['method']}_test_acc_std"] = r["test_acc_std"]
    return [table[k] for k in sorted(table)]


def write_all(run: RunLayout, rows: list[dict], tolerance_points: float, title: str) -> list[dict]:
    """Write curve_seeds.csv, curve.csv, curve.png and report.md of `run` from its `rows`; return the level table."""
    aggregated = aggregate(rows, by=("method", "level"), values=VALUES)
    aggregated.sort(key=lambda r: r["method"] != IMP_METHOD)  # IMP first, the branches after (stable sort)
    table = level_table(aggregated)
    write_csv(run.curve_seeds, rows)
    write_csv(run.curve("csv"), table)
    plot_curve(aggregated, run.curve("png"), title)
    matching = sparsest_matching(aggregated, tolerance_points, dense_method=IMP_METHOD)
    seeds = sorted({r["seed"] for r in rows})
    report = (f"# {title}\n\nSeeds: {seeds}. Test accuracy, mean ± sample std over seeds. A level *matches* when its "
              f"mean test accuracy is within {tolerance_points:g} points of the dense network's.\n\n"
              + markdown_report(aggregated, matching, tolerance_points) + "\n" + exported_levels(rows, tolerance_points))
    write_text(run.report, report)
    return table
