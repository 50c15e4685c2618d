"""Sparsity-vs-accuracy curves of a run folder: the level metrics of every seed and branch as tables, a plot and
a report.

    curve_seeds.csv  one row per (seed, method, level): the raw numbers (lottery.report.rows)
    curve.csv        one row per level: the IMP level's numbers and each branch's test accuracy, mean (and std) over seeds
    curve.png        accuracy vs % of weights remaining (log axis, bands = ± std over seeds), the early-stopping
                     iteration vs % remaining (Frankle & Carbin 2019, Figures 3-4), and accuracy vs the training cost
                     spent to reach each network (lottery.report.cost)
    report.md        a table per method and its sparsest matching level, the exported ticket's level, the cheapest
                     matching method per sparsity, and the masks' overlap (lottery.report.masks)
    earlybird.png    the early-bird mask distance per epoch, when level 0 was watched (the earlybird branch; one
                     picture per method whose watcher recorded distances, named after the method)

`write_report` reads nothing again: the rows come in once, are aggregated once, and each seed's winning ticket is
chosen once, for report.md, the console and the ticket file alike (`Report`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lottery.core.errors import LotteryError
from lottery.core.files import write_csv, write_text
from lottery.core.layout import RunLayout
from lottery.core.schema import ExperimentConfig
from lottery.imp.branches import BRANCHES
from lottery.report.cost import cheapest_matching, with_reach_cost
from lottery.report.markdown import markdown_report, summary
from lottery.report.masks import overlap_section
from lottery.report.matching import aggregate, at_chance, sparsest_matching, winning_level
from lottery.report.plots import plot_curve, plot_runs, plot_watched
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


@dataclass
class Report:
    """A run folder's results, read and aggregated once: every training's row (with the cost of reaching it), the
    rows aggregated by method and level (IMP first), and each seed's winning ticket."""

    rows: list[dict]
    aggregated: list[dict]
    table: list[dict]  # curve.csv's rows: one per level
    winners: dict[int, dict]  # seed -> its winning ticket's row (lottery.report.matching.winning_level); a seed whose
    # dense network is at chance (lottery.report.matching.at_chance) has none
    dense: dict[int, dict]  # seed -> its dense level's row

    def ticket(self, seed: int) -> dict | None:
        return self.winners.get(seed)

    def verdict(self, seed: int, of_seed: bool = False) -> str:
        """The console's one line on `seed`'s winning ticket, by the rule report.md states: the ticket beside the
        dense network and the branches at its level; or why there is none."""
        best, dense, of = self.ticket(seed), self.dense[seed], f" of seed {seed}" if of_seed else ""
        if best is None:
            return (f"no winning ticket{of}: the dense network is at chance (test acc {dense['test_acc']:.2%}; always "
                    f"predicting the most frequent class scores {dense['chance_acc']:.2%}); train longer, or check the "
                    "data and the model")
        level = best["level"]
        beside = "  ".join(f"{r['method']} {r['test_acc']:.2%}" for r in self.rows
                           if r["seed"] == seed and r["level"] == level and r["method"] != IMP_METHOD)
        return (f"winning ticket{of}: level {level}, {best['density']:.2%} of weights remaining, validation "
                f"{best['final_val_acc']:.2%}, test {best['test_acc']:.2%} (dense: {dense['final_val_acc']:.2%}, "
                f"{dense['test_acc']:.2%}{f'; at level {level}: {beside}' if beside else ''})")


def labels() -> dict[str, str]:
    """Each method's legend on the curve and in report.md, from its record."""
    return {IMP_METHOD: "winning ticket (IMP)", **{name: method.legend for name, method in BRANCHES.items()}}


def write_report(run: RunLayout, cfg: ExperimentConfig, rows: list[dict]) -> Report:
    """Write curve_seeds.csv, curve.csv, curve.png, report.md (and each watcher's plot, earlybird.png) of `run` from
    the rows of its finished trainings (lottery.report.rows.seed_rows)."""
    if not rows:
        raise LotteryError(f"{run.path} has no finished level yet; run `lottery run` first")
    title = f"{cfg.model.name} on {cfg.data.name}: IMP {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step})"
    tolerance = cfg.matching_tolerance
    rows = with_reach_cost(rows, {name: method.builds_on for name, method in BRANCHES.items()})
    aggregated = aggregate(rows, by=("method", "level"), values=(*VALUES, "reach_cost"))
    aggregated.sort(key=lambda r: r["method"] != IMP_METHOD)  # IMP first, the branches after (stable sort)
    seeds = sorted({r["seed"] for r in rows})
    dense = {s: next(r for r in rows if r["seed"] == s and r["method"] == IMP_METHOD and r["level"] == 0) for s in seeds}
    winners = {s: winning_level([r for r in rows if r["seed"] == s], tolerance) for s in seeds if not at_chance(dense[s])}
    write_csv(run.curve_seeds, table_fields(rows))
    table = level_table(aggregated)
    write_csv(run.curve("csv"), table)
    plot_curve(aggregated, run.curve("png"), title, labels())
    for name in sorted({n for r in rows if r["level"] == 0 for n, w in (r.get("watched") or {}).items()
                       if "distances" in w or "levels" in w}):
        plot_watched(rows, name, run.watch_plot(name), f"{title}: {labels().get(name, name)}")
    matching = sparsest_matching(aggregated, tolerance, dense_method=IMP_METHOD)
    warning = "".join(f"**No winning ticket for seed {s}: its dense network is at chance** (test accuracy "
                      f"{100 * r['test_acc']:.2f}%; always predicting the most frequent class scores "
                      f"{100 * r['chance_acc']:.2f}%). Train longer, or check the data and the model.\n\n"
                      for s, r in dense.items() if s not in winners)
    exported = next((s for s in cfg.seeds or [cfg.seed] if s in dense), seeds[0])
    spread = "mean ± sample std over seeds" if len(seeds) > 1 else "one seed"
    report = (f"# {title}\n\n{warning}"
              + (summary(rows, winners, exported, matching[IMP_METHOD], tolerance, labels()) if exported in winners else "")
              + f"\n## Every method, level by level\n\nSeeds: {seeds} ({spread}). For comparing methods, a level here "
              f"*matches* when its mean **test** accuracy is within {tolerance:g} points of the dense network's (the "
              "winning ticket above is chosen on validation accuracy instead).\n\n"
              + markdown_report(aggregated, matching, tolerance, labels=labels())
              + "\n### the cheapest network matching on test accuracy, at each sparsity\n\nCost: the multiply-accumulates "
              "spent to reach it, in dense trainings (IMP pays for every level up to it; lottery.report.cost).\n\n"
              + cheapest_matching(aggregated, tolerance) + "\n"
              + overlap_section(run, rows, {n for n, m in BRANCHES.items() if m.same_mask}))
    write_text(run.report, report)
    return Report(rows, aggregated, table, winners, dense)


def compare(runs: dict[str, tuple[RunLayout, ExperimentConfig, list[dict]]], out) -> Path:
    """One curve of several run folders (`lottery plot RUN RUN ... --out FILE`): every method of each, by run name;
    runs: name -> (its layout, its configuration, its rows, lottery.report.rows.seed_rows)."""
    aggregated = {}
    for name, (run, cfg, rows) in runs.items():
        if not rows:
            raise LotteryError(f"{run.path} has no finished level yet; run `lottery run` first")
        aggregated[name] = aggregate(rows, by=("method", "level"), values=VALUES)
    strategies = ", ".join(f"{name} ({cfg.prune.strategy})" for name, (_, cfg, _) in runs.items())
    first = next(iter(runs.values()))[1]
    return plot_runs(aggregated, Path(out), f"{first.model.name} on {first.data.name}: {strategies}", labels())
