"""Sparsity-vs-accuracy curves: gather level metrics into a table, a CSV and a plot."""
from __future__ import annotations

import csv
import io as _io
from pathlib import Path

from lottery import io

COLUMNS = ["level", "density", "percent_remaining", "test_acc", "final_val_acc", "best_val_acc",
           "best_val_step", "early_stop_step"]


def rows(seed_dir: Path, controls: list[str]) -> list[dict]:
    """One row per finished level of one seed, with each control's test accuracy beside the ticket's."""
    out = []
    for level_dir in sorted(Path(seed_dir).glob("level_*")):
        if not (level_dir / "metrics.json").exists():
            continue
        m = io.read_json(level_dir / "metrics.json")
        row = {"level": int(level_dir.name.split("_")[1]), "density": m["density"],
               "percent_remaining": 100 * m["density"], **{k: m[k] for k in COLUMNS[3:]}}
        for c in controls:
            path = level_dir / f"control_{c}" / "metrics.json"
            row[f"{c}_test_acc"] = io.read_json(path)["test_acc"] if path.exists() else None
        out.append(row)
    return out


def write_csv(table: list[dict], path: Path) -> Path:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return io.write_text(path, buf.getvalue())


def matching_level(table: list[dict], tolerance_points: float) -> dict:
    """The sparsest level whose final validation accuracy is within `tolerance_points` of level 0's.

    Selected on validation accuracy, so that the test set stays untouched by the choice.
    """
    dense = next(r for r in table if r["level"] == 0)
    threshold = dense["final_val_acc"] - tolerance_points / 100
    matching = [r for r in table if r["final_val_acc"] >= threshold]
    return min(matching, key=lambda r: r["density"])


def plot(table: list[dict], controls: list[str], path: Path, title: str) -> Path:
    """Test accuracy against % of weights remaining (log axis, dense on the left), as in Frankle & Carbin (2019)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [r["percent_remaining"] for r in table]
    ax.plot(x, [100 * r["test_acc"] for r in table], "o-", label="winning ticket (IMP, rewound)")
    labels = {"reinit": "random re-initialisation", "random_prune": "random pruning"}
    for c in controls:
        pts = [(r["percent_remaining"], 100 * r[f"{c}_test_acc"]) for r in table if r.get(f"{c}_test_acc") is not None]
        if pts:
            ax.plot(*zip(*pts), "s--", label=labels.get(c, c))
    dense = next(r for r in table if r["level"] == 0)
    ax.axhline(100 * dense["test_acc"], color="gray", linestyle=":", label="dense network")
    ax.set_xscale("log")
    ticks = [t for t in (100, 51.2, 26.2, 13.4, 6.9, 3.5, 1.8, 0.9, 0.5, 0.2, 0.1) if min(x) * 0.9 <= t]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return io.write_bytes(path, buf.getvalue())
