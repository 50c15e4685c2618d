"""What reaching each network cost, in dense trainings (each training's own cost, lottery.core.macs), and the
cheapest method that matches the dense network at each sparsity.

IMP at level L pays for its levels 0..L. A branch pays for its own training and for what its mask builds on (its
record's `builds_on`, lottery.core.methods.BUILDS_ON): the IMP levels before it ("imp": reinit, random pruning,
rewinding comparisons), the dense level ("dense": one-shot pruning), the dense level up to the step its watcher drew
at ("watch": the early-bird ticket; the channel early-bird's detector of that level), or nothing but a density
(pruning at init, gmp, set, rigl, static).
"""
from __future__ import annotations

from typing import Mapping

from lottery.report.rows import IMP_METHOD


def with_reach_cost(rows: list[dict], builds_on: Mapping[str, str]) -> list[dict]:
    """`rows` with `reach_cost`: the dense trainings spent to reach each network (None where a cost is unknown)."""
    own = {(r["seed"], r["level"]): r for r in rows if r["method"] == IMP_METHOD}
    cumulative: dict[tuple[int, int], float | None] = {}
    for seed, level in sorted(own):
        before = cumulative.get((seed, level - 1), 0.0) if level > 0 else 0.0
        cost = own[seed, level].get("cost")
        cumulative[seed, level] = None if before is None or cost is None else before + cost
    out = []
    for r in rows:
        seed, level, cost = r["seed"], r["level"], r.get("cost")
        if r["method"] == IMP_METHOD:
            reach = cumulative.get((seed, level))
        else:
            needs = _prerequisite(builds_on.get(r["method"], "nothing"), r["method"], own, cumulative, seed, level)
            reach = None if needs is None or cost is None else needs + cost
        out.append({**r, "reach_cost": reach})
    return out


def _prerequisite(kind: str, method: str, own: dict, cumulative: dict, seed: int, level: int) -> float | None:
    dense = own.get((seed, 0), {})
    if kind == "imp":
        return cumulative.get((seed, level - 1))
    if kind == "dense":
        return dense.get("cost")
    if kind == "watch":  # the dense level up to the step the method's watcher drew at (all of it if it never drew)
        watched = (dense.get("watched") or {}).get(method) or {}
        step = (watched.get("levels", {}).get(str(level)) or watched).get("step")  # a detector per level, or one
        steps, cost = dense.get("steps"), dense.get("cost")
        return None if cost is None or not steps else cost * (step if step is not None else steps) / steps
    return 0.0


def cheapest_matching(summary: list[dict], tolerance_points: float) -> str:
    """report.md's table: at each pruned level, the method that matches the dense network (mean test accuracy within
    the tolerance) at the lowest mean cost to reach it (the first by name among equal costs). summary: the rows
    aggregated by method and level (lottery.report.matching.aggregate), with test_acc, density and reach_cost."""
    dense = next((r["test_acc_mean"] for r in summary if r["method"] == IMP_METHOD and r["level"] == 0), None)
    lines = ["| level | % remaining | cheapest matching method | its cost (dense trainings) | its test acc (%) | "
             "IMP's cost |", "|---:|---:|---|---:|---:|---:|"]
    for level in sorted({r["level"] for r in summary if r["level"] > 0}):
        at = [r for r in summary if r["level"] == level]
        imp = next((r for r in at if r["method"] == IMP_METHOD), None)
        matching = [r for r in at if dense is not None and r["reach_cost_mean"] is not None
                    and (dense - r["test_acc_mean"]) * 100 <= tolerance_points + 1e-9]
        best = min(matching, key=lambda r: (r["reach_cost_mean"], r["method"]), default=None)
        remaining = f"{100 * imp['density_mean']:.2f}" if imp else "—"
        imp_cost = f"{imp['reach_cost_mean']:.2f}" if imp and imp["reach_cost_mean"] is not None else "—"
        if best is None:
            lines.append(f"| {level} | {remaining} | none | — | — | {imp_cost} |")
        else:
            lines.append(f"| {level} | {remaining} | {best['method']} | {best['reach_cost_mean']:.2f} | "
                         f"{100 * best['test_acc_mean']:.2f} | {imp_cost} |")
    return "\n".join(lines) + "\n"
