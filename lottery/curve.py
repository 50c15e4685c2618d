"""Sparsity-vs-accuracy curves: level metrics of every seed and branch, as tables, plots and a report.

    curve_seeds.csv  one row per (seed, method, level): the raw numbers
    curve.csv        one row per level: ticket and branch test accuracies, mean (and std) over seeds
    curve.png        accuracy vs % of weights remaining (log axis, bands = ± std over seeds), and
                     the early-stopping iteration vs % remaining (Frankle & Carbin 2019, Figures 3-4)
    report.md        a table per method and its sparsest matching level, and the exported ticket's level

Across seeds, `aggregate` gives mean ± std per (method, level). Accuracies are fractions in [0, 1], as
in each level's metrics.json; tolerances are in accuracy points (percent), as the papers state them
("within one percentage point"). Matching is decided on the mean over seeds (Frankle & Carbin 2019
report means over five trials).

One rule decides "matching" everywhere (`sparsest_matching`): the sparsest pruned level whose
accuracy is within the tolerance of the dense network's. report.md applies it to the mean test
accuracy over seeds; the exported ticket applies it to one seed's final validation accuracy, so that
the test set takes no part in choosing it. report.md shows both.
"""
from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from lottery.errors import LotteryError
from lottery.files import read_json, write_bytes, write_text
from lottery.layout import RunLayout

TICKET = "ticket"
VALUES = ("density", "test_acc", "final_val_acc", "best_val_acc", "best_val_step", "early_stop_step")
LABELS = {TICKET: "winning ticket (IMP)", "reinit": "random re-initialisation", "random_prune": "random pruning (per layer)",
          "random_prune_global": "random pruning (global)", "oneshot": "one-shot magnitude", "lr_rewind": "learning-rate rewinding",
          "finetune": "fine-tuning", "magnitude_init": "magnitude at init", "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow"}


# -- across seeds: mean ± std, the sparsest matching level, a markdown report ----------------------
Row = Mapping[str, object]
# Float noise in "mean >= dense - tolerance" must not decide a level that is exactly at the edge.
_EPS_POINTS = 1e-9


def _summary(values: list[float]) -> tuple[float | None, float | None]:
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
    for row in rows:
        missing = [k for k in by if k not in row]
        if missing:
            raise LotteryError(f"row {dict(row)} lacks the grouping key(s) {missing}; group by keys every row has")
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for key in _sorted(groups):
        members = groups[key]
        agg = {**dict(zip(by, key)), "n": len(members)}
        for v in values:
            xs = [float(r[v]) for r in members if r.get(v) is not None]
            agg[f"{v}_mean"], agg[f"{v}_std"] = _summary(xs)
            agg[f"{v}_n"] = len(xs)
        out.append(agg)
    return out


def _by_method(aggregated: Iterable[Row], method_key: str) -> dict[object, list[Row]]:
    methods: dict[object, list[Row]] = {}
    for row in aggregated:
        methods.setdefault(row[method_key], []).append(row)
    return methods


def _dense_mean(rows: list[Row], method: object, value: str, level_key: str, dense_level: int) -> float:
    dense = [r for r in rows if r[level_key] == dense_level and r.get(f"{value}_mean") is not None]
    if not dense:
        raise LotteryError(f"method {method!r} has no level {dense_level} (dense) {value}; "
                           f"pass dense_method= the method whose level {dense_level} is the dense network")
    return float(dense[0][f"{value}_mean"])


def _sparsity_key(row: Row, level_key: str) -> tuple:
    """Sort key, sparsest first: lowest mean density if known, else the highest level."""
    density = row.get("density_mean")
    return (density if density is not None else float("inf"), -row[level_key])


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
    methods = _by_method(aggregated, method_key)
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


def _pct(x: float | None, acc_scale: float) -> str:
    return "—" if x is None else f"{x * acc_scale:.2f}"


def _table(rows: list[Row], value: str, level_key: str, acc_scale: float) -> list[str]:
    lines = [f"| level | % remaining | {value} (mean ± std, %) | n |", "|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r[level_key]):
        remaining = _pct(r.get("density_mean"), 100.0)
        acc = f"{_pct(r.get(f'{value}_mean'), acc_scale)} ± {_pct(r.get(f'{value}_std'), acc_scale)}"
        lines.append(f"| {r[level_key]} | {remaining} | {acc} | {r.get(f'{value}_n', r.get('n'))} |")
    return lines


def _matching_line(row: Row | None, tolerance_points: float, value: str, level_key: str, acc_scale: float) -> str:
    head = f"Sparsest matching level (mean {value} within {tolerance_points:g} points of dense): "
    if row is None:
        return head + "none."
    return (head + f"level {row[level_key]} ({_pct(row.get('density_mean'), 100.0)}% remaining, "
            f"{_pct(row[f'{value}_mean'], acc_scale)} ± {_pct(row[f'{value}_std'], acc_scale)}).")


def markdown_report(aggregated: Sequence[Row], matching: Mapping[object, Row | None], tolerance_points: float,
                    value: str = "test_acc", method_key: str = "method", level_key: str = "level",
                    acc_scale: float = 100.0) -> str:
    """A Markdown section per method: a table of levels and the sparsest matching level."""
    parts = []
    for method, rows in _by_method(aggregated, method_key).items():
        parts += [f"### {method}", "", *_table(rows, value, level_key, acc_scale), "",
                  _matching_line(matching.get(method), tolerance_points, value, level_key, acc_scale), ""]
    return "\n".join(parts)


# -- a run folder's curve ---------------------------------------------------------------------------
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
