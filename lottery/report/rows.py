"""The rows of a run folder's curve: one per finished training (seed, method, level) with the numbers the
curve, the report and the ticket's choice read from its metrics.json."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from lottery.core.files import read_json
from lottery.core.layout import RunLayout

# The method name of IMP's own training at each level in curve_seeds.csv and report.md (the branches are named
# after themselves); "ticket", as the files written so far say.
IMP_METHOD = "ticket"
VALUES = ("density", "test_acc", "final_val_acc", "best_val_acc", "best_val_step", "early_stop_step", "cost", "steps")
# Kept with a row for the report, not written to the CSV tables (they are not one number).
DETAILS = ("layer_density", "target_density", "watched", "chance_acc")


def row(seed: int, method: str, level: int, metrics: Mapping) -> dict:
    """One training's numbers (cost: its multiply-accumulates in dense trainings, absent in runs made before it was
    recorded) and, beside them, its per-layer densities, the densities asked for, what its watchers recorded (the
    dense level's, for the branches that watch it: the early-bird detector)."""
    out = {"seed": seed, "method": method, "level": level, **{k: metrics.get(k) for k in VALUES}}
    return out | {k: metrics[k] for k in DETAILS if k in metrics}


def table_fields(rows: list[dict]) -> list[dict]:
    """The rows without their DETAILS: what a CSV holds."""
    return [{k: v for k, v in r.items() if k not in DETAILS} for r in rows]


def seed_rows(run: RunLayout, seed: int | None = None, method: str | None = None,
              known: Mapping[Path, Mapping] | None = None) -> list[dict]:
    """Every finished level and branch of every seed folder (or of one `seed`, one `method`), by level.

    known: metrics already in hand, by training folder (a run's own results): used instead of reading them again.
    """
    known = known or {}
    rows = []
    for s in run.seeds() if seed is None else [seed]:
        seed_dir = run.seed(s)
        for level in seed_dir.levels():
            level_dir = seed_dir.level(level)
            trainings = [(IMP_METHOD, level_dir)] + [(name, level_dir.branch(name)) for name in level_dir.branches()]
            for name, training in trainings:
                if method in (None, name) and (training.path in known or training.done):
                    metrics = known.get(training.path) or read_json(training.metrics)
                    rows.append(row(s, name, level, metrics))
    return rows
