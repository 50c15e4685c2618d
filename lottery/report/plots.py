"""Every figure lottery draws goes through here: matplotlib without a display (Agg), the axis of "percent of
weights remaining" the papers use, and PNG files written atomically."""
from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Mapping

from lottery.core.files import write_bytes
from lottery.report.rows import IMP_METHOD

def pyplot():
    """matplotlib.pyplot on the Agg backend: figures are files, no display is needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG, atomically, and close it; nothing of it cut off (titles and labels that
    reach past the figure's edge widen the picture instead)."""
    plt = pyplot()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


def level_ticks(percents: list[float], most: int = 12) -> list[float]:
    """Ticks at the levels run (% remaining, one decimal), every k-th where there are more than `most`, the sparsest
    always among them."""
    levels = sorted({round(p, 1) for p in percents}, reverse=True)
    step = -(-len(levels) // most)
    return sorted(set(levels[::step]) | {levels[-1]}, reverse=True)


def _remaining_axis(ax, ticks: list[float], ylabel: str) -> None:
    """A log axis of % of weights remaining, dense on the left and sparser to the right, as in the papers."""
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def _band(ax, x, mean, std, style, color, label) -> None:
    """A line of means with a band of ± one standard deviation."""
    ax.plot(x, mean, style, color=color, label=label, markersize=4)
    ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=color, alpha=0.15)


def plot_curve(aggregated: list[dict], path: Path, title: str, labels: Mapping[str, str]) -> Path:
    """curve.png: test accuracy and the early-stopping iteration vs % of weights remaining, one line per method
    (Frankle & Carbin 2019, Figures 3-4), bands of ± std over seeds; and, where costs are known, test accuracy vs the
    training cost spent to reach each network (dense trainings, log axis). labels: each method's legend."""
    plt = pyplot()
    with_cost = any(r.get("reach_cost_mean") is not None for r in aggregated)
    fig, axes = plt.subplots(1, 3 if with_cost else 2, figsize=(16.5 if with_cost else 11, 4.2))
    acc_ax, stop_ax = axes[0], axes[1]
    methods = list(dict.fromkeys(r["method"] for r in aggregated))
    colors = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    for i, method in enumerate(methods):
        rows = sorted((r for r in aggregated if r["method"] == method), key=lambda r: r["level"])
        x = [100 * r["density_mean"] for r in rows]
        style = "o-" if method == IMP_METHOD else "s--"
        for ax, key, scale in ((acc_ax, "test_acc", 100), (stop_ax, "early_stop_step", 1)):  # the step of lowest val loss
            mean = [scale * r[f"{key}_mean"] for r in rows]
            std = [scale * (r[f"{key}_std"] or 0) for r in rows]
            _band(ax, x, mean, std, style, colors[i], labels.get(method, method))
        if with_cost:
            costed = [r for r in rows if r.get("reach_cost_mean") is not None]
            axes[2].plot([r["reach_cost_mean"] for r in costed], [100 * r["test_acc_mean"] for r in costed], style,
                         color=colors[i], label=labels.get(method, method), markersize=4)
    dense = next(r for r in aggregated if r["method"] == IMP_METHOD and r["level"] == 0)
    acc_ax.axhline(100 * dense["test_acc_mean"], color="gray", linestyle=":", label="dense network")
    ticks = level_ticks([100 * r["density_mean"] for r in aggregated if r["method"] == IMP_METHOD])
    for ax, label in ((acc_ax, "test accuracy (%)"), (stop_ax, "early-stopping step (lowest validation loss)")):
        _remaining_axis(ax, ticks, label)
    if with_cost:
        _cost_axis(axes[2], [r["reach_cost_mean"] for r in aggregated if r.get("reach_cost_mean")])
        axes[2].axhline(100 * dense["test_acc_mean"], color="gray", linestyle=":")
    acc_ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 140))
    return save_figure(fig, path)


def _cost_axis(ax, costs: list[float]) -> None:
    """The cost of reaching a network, in dense trainings, labelled in plain numbers: linear where the costs span less
    than a factor of 10 (IMP's levels alone: 1 to a few trainings), else a log axis (beside them, one training of a
    sparse method costs a fraction of one)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if costs and max(costs) > 10 * min(costs):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set(xlabel="cost to reach it (dense trainings)", ylabel="test accuracy (%)", title="what each network cost")
    ax.grid(True, which="both", alpha=0.3)


def plot_runs(runs: Mapping[str, list[dict]], path: Path, title: str, labels: Mapping[str, str]) -> Path:
    """Several run folders on one curve: test accuracy vs % of weights remaining of every method of each (bands of
    ± std over seeds), named "<run>: <method's label>"; the dense network of the first run as a line.
    runs: each run's rows aggregated by method and level (lottery.report.matching.aggregate)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    lines = [(run, method) for run, rows in runs.items() for method in dict.fromkeys(r["method"] for r in rows)]
    colors = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20").colors
    styles = ["o-", "s--", "^-.", "d:"]
    for i, (run, method) in enumerate(lines):
        pts = sorted((r for r in runs[run] if r["method"] == method), key=lambda r: r["level"])
        style = styles[list(runs).index(run) % len(styles)] if method == IMP_METHOD else "x:"
        _band(ax, [100 * r["density_mean"] for r in pts], [100 * r["test_acc_mean"] for r in pts],
              [100 * (r["test_acc_std"] or 0) for r in pts], style, colors[i % len(colors)],
              f"{run}: {labels.get(method, method)}")
    first = next(iter(runs.values()))
    dense = next(r for r in first if r["method"] == IMP_METHOD and r["level"] == 0)
    ax.axhline(100 * dense["test_acc_mean"], color="gray", linestyle=":", label="dense network")
    xs = [100 * r["density_mean"] for rows in runs.values() for r in rows]
    _remaining_axis(ax, [t for t in (100, 51.2, 26.2, 13.4, 6.9, 3.5, 1.8, 0.9, 0.5, 0.2, 0.1) if min(xs) * 0.9 <= t],
                    "test accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_watched(rows: list[dict], method: str, path: Path, title: str) -> Path | None:
    """<method>.png (earlybird.png): per seed, the largest mask distance within the window at each epoch of the dense
    training that `method`'s watcher recorded, its threshold, and the epoch it drew its ticket at (You et al. 2020,
    Figure 2); None when no dense level was watched for it."""
    watched = [(r, r["watched"][method]) for r in rows if r["method"] == IMP_METHOD and r["level"] == 0
               and method in (r.get("watched") or {})]
    if not watched:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    # One detector (its distances at epoch ends: epoch 1, 2, ...), or one per level (at epoch starts: 0 is the init)
    lines = [(r, f"seed {r['seed']}", rep, 1) for r, rep in watched if "levels" not in rep]
    lines += [(r, f"seed {r['seed']}, {100 * (1 - d['ratio']):.3g}% kept", d, 0) for r, rep in watched
              for d in rep.get("levels", {}).values()]
    for r, label, report, first in lines:
        epochs = [e + first for e, d in enumerate(report["distances"]) if d is not None]
        line, = ax.plot(epochs, [report["distances"][e - first] for e in epochs], "o-", markersize=3, label=label)
        if report["epoch"] is not None:
            ax.axvline(report["epoch"], color=line.get_color(), linestyle="--", alpha=0.6)
    ax.axhline(watched[0][1]["threshold"], color="gray", linestyle=":", label="threshold")
    ax.set(xlabel="epoch of the dense training" + (" (0: its initialisation)" if any(not f for *_, f in lines) else ""),
           ylabel="largest mask distance\nin the window (normalised Hamming)")
    ax.set_title(textwrap.fill(title, 70), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_sweep(rows: list[dict], path: Path, title: str) -> Path:
    """aggregated.png of a sweep: every grid point's ticket curve (curve.csv rows), mean ± std over its seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    names = list(dict.fromkeys(r["experiment"] for r in rows))
    colors = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    for i, name in enumerate(names):
        pts = sorted((r for r in rows if r["experiment"] == name), key=lambda r: int(r["level"]))
        x = [float(r["percent_remaining"]) for r in pts]
        mean = [100 * float(r["test_acc"]) for r in pts]
        std = [100 * float(r["test_acc_std"] or 0) for r in pts]
        label = name.split(",", 1)[1] if "," in name else name
        _band(ax, x, mean, std, "o-", colors[i % len(colors)], label)
    _remaining_axis(ax, level_ticks([float(r["percent_remaining"]) for r in rows]), "test accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
