"""Sparsity-vs-accuracy curves: level metrics of every seed and branch, as tables, plots and a report.

    curve_seeds.csv  one row per (seed, method, level): the raw numbers
    curve.csv        one row per level: ticket and branch test accuracies, mean (and std) over seeds
    curve.png        accuracy vs % of weights remaining (log axis, bands = ± std over seeds), and
                     the early-stopping iteration vs % remaining (Frankle & Carbin 2019, Figures 3-4)
    report.md        a table per method and its sparsest matching level, and the exported ticket's level

One rule decides "matching" everywhere (aggregate.sparsest_matching): the sparsest pruned level whose
accuracy is within the tolerance of the dense network's. report.md applies it to the mean test
accuracy over seeds; the exported ticket applies it to one seed's final validation accuracy, so that
the test set takes no part in choosing it. report.md shows both.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from lottery.aggregate import aggregate, markdown_report, sparsest_matching
from lottery.files import read_json, write_bytes, write_text
from lottery.layout import RunLayout

TICKET = "ticket"
VALUES = ("density", "test_acc", "final_val_acc", "best_val_acc", "best_val_step", "early_stop_step")
LABELS = {TICKET: "winning ticket (IMP)", "reinit": "random re-initialisation", "random_prune": "random pruning (per layer)",
          "random_prune_global": "random pruning (global)", "oneshot": "one-shot magnitude", "lr_rewind": "learning-rate rewinding",
          "finetune": "fine-tuning", "magnitude_init": "magnitude at init", "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow"}


def seed_rows(run: RunLayout, seed: int | None = None, method: str | None = None) -> list[dict]:
    """Every finished level and branch of every seed folder (or of one `seed`, one `method`), by level."""
    rows = []
    for s in run.seeds() if seed is None else [seed]:
        seed_dir = run.seed(s)
        for level in seed_dir.levels():
            level_dir = seed_dir.level(level)
            trainings = [(TICKET, level_dir)] + [(name, level_dir.branch(name)) for name in level_dir.branches()]
            for name, training in trainings:
                if training.done and method in (None, name):
                    m = read_json(training.metrics)
                    rows.append({"seed": s, "method": name, "level": level, **{k: m[k] for k in VALUES}})
    return rows


def level_table(summary: list[dict]) -> list[dict]:
    """One row per level: the ticket's numbers and each branch's test accuracy (means over seeds)."""
    table: dict[int, dict] = {}
    for r in summary:
        if r["method"] == TICKET:
            table[r["level"]] = {"level": r["level"], "density": r["density_mean"], "percent_remaining": 100 * r["density_mean"],
                                 "test_acc": r["test_acc_mean"], "test_acc_std": r["test_acc_std"], "seeds": r["n"],
                                 **{k: r[f"{k}_mean"] for k in VALUES[3:]}, "final_val_acc": r["final_val_acc_mean"]}
    for r in summary:
        if r["method"] != TICKET and r["level"] in table:
            table[r["level"]][f"{r['method']}_test_acc"] = r["test_acc_mean"]
            table[r["level"]][f"{r['method']}_test_acc_std"] = r["test_acc_std"]
    return [table[k] for k in sorted(table)]


def write_csv(rows: list[dict], path: Path) -> Path:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def winning_level(rows: list[dict], tolerance_points: float) -> dict:
    """The row of the ticket to export from one seed's ticket `rows`: the sparsest matching level on final
    validation accuracy (the test set stays untouched by the choice); the dense level 0 if none matches."""
    summary = aggregate([r for r in rows if r["method"] == TICKET], by=("method", "level"), values=VALUES)
    match = sparsest_matching(summary, tolerance_points, value="final_val_acc")[TICKET]
    level = match["level"] if match is not None else 0
    return next(r for r in rows if r["method"] == TICKET and r["level"] == level)


def _exported_levels(rows: list[dict], tolerance_points: float) -> str:
    seeds = sorted({r["seed"] for r in rows})
    chosen = [winning_level([r for r in rows if r["seed"] == s], tolerance_points) for s in seeds]
    return ("### exported ticket\n\n`lottery run` and `lottery export` pick, per seed, the sparsest level whose final "
            f"*validation* accuracy is within {tolerance_points:g} points of the dense network's (same rule, "
            "on validation accuracy, so the test set takes no part in the choice):\n\n"
            + "".join(f"- seed {s}: level {r['level']} ({100 * r['density']:.2f}% remaining, validation "
                      f"{100 * r['final_val_acc']:.2f}%, test {100 * r['test_acc']:.2f}%)\n" for s, r in zip(seeds, chosen)))


def write_all(run: RunLayout, tolerance_points: float, title: str) -> list[dict]:
    """Write curve_seeds.csv, curve.csv, curve.png and report.md of `run`; return the level table."""
    rows = seed_rows(run)
    summary = aggregate(rows, by=("method", "level"), values=VALUES)
    summary.sort(key=lambda r: r["method"] != TICKET)  # the ticket first, the branches after (stable sort)
    table = level_table(summary)
    write_csv(rows, run.curve_seeds)
    write_csv(table, run.curve("csv"))
    plot(summary, run.curve("png"), title)
    matching = sparsest_matching(summary, tolerance_points, dense_method=TICKET)
    seeds = sorted({r["seed"] for r in rows})
    report = (f"# {title}\n\nSeeds: {seeds}. Test accuracy, mean ± sample std over seeds. A level *matches* when its "
              f"mean test accuracy is within {tolerance_points:g} points of the dense network's.\n\n"
              + markdown_report(summary, matching, tolerance_points) + "\n" + _exported_levels(rows, tolerance_points))
    write_text(run.report, report)
    return table


def plot(summary: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc_ax, stop_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    colors = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    for i, method in enumerate(methods):
        rows = sorted((r for r in summary if r["method"] == method), key=lambda r: r["level"])
        x = [100 * r["density_mean"] for r in rows]
        style = "o-" if method == TICKET else "s--"
        for ax, key, scale in ((acc_ax, "test_acc", 100), (stop_ax, "early_stop_step", 1)):
            mean = [scale * r[f"{key}_mean"] for r in rows]
            std = [scale * (r[f"{key}_std"] or 0) for r in rows]
            ax.plot(x, mean, style, color=colors[i], label=LABELS.get(method, method), markersize=4)
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=colors[i], alpha=0.15)
    dense = next(r for r in summary if r["method"] == TICKET and r["level"] == 0)
    acc_ax.axhline(100 * dense["test_acc_mean"], color="gray", linestyle=":", label="dense network")
    xs = [100 * r["density_mean"] for r in summary]
    ticks = [t for t in (100, 51.2, 26.2, 13.4, 6.9, 3.5, 1.8, 0.9, 0.5, 0.2, 0.1) if min(xs) * 0.9 <= t]
    for ax, label in ((acc_ax, "test accuracy (%)"), (stop_ax, "early-stopping iteration (lowest val. loss)")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.invert_xaxis()  # dense on the left, sparser to the right, as in the papers
        ax.set_xlabel("percent of weights remaining")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    acc_ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes(path, buf.getvalue())
