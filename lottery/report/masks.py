"""Mask analytics for report.md: how much the masks different methods find at the same sparsity overlap
(intersection over union, per layer and overall), and each layer's density against the distribution asked for.

Read from the mask files of one seed at the sparsest finished level (a level's mask.safetensors is IMP's; each
branch folder's, the mask that branch ended with), so that a report stays quick for large models.
"""
from __future__ import annotations

from typing import Collection

import torch

from lottery.core.files import load_tensors
from lottery.core.layout import RunLayout
from lottery.report.rows import IMP_METHOD


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a ∩ b| / |a ∪ b| of two bool masks (1 for two empty ones)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def level_masks(run: RunLayout, seed: int, level: int) -> dict[str, dict[str, torch.Tensor]]:
    """Method -> masks at `level` of `seed`: IMP's and every branch's that wrote its mask."""
    folder = run.seed(seed).level(level)
    found = {IMP_METHOD: folder.mask} | {name: folder.branch(name).mask for name in folder.branches()}
    return {method: {n: m.bool() for n, m in load_tensors(path).items()} for method, path in found.items() if path.exists()}


def _overall(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return iou(torch.cat([a[n].flatten() for n in a]), torch.cat([b[n].flatten() for n in a]))


def overlap_section(run: RunLayout, rows: list[dict], same_mask: Collection[str] = ()) -> str:
    """report.md's mask section: per-layer IoU with IMP's mask and the pairwise overall IoU at the sparsest level,
    then the layer densities reached against those asked for (the sparse-training branches'). same_mask: the methods
    that train the ticket's own mask (an IoU of 1 by construction, said in one line rather than tabled)."""
    imp = [r for r in rows if r["method"] == IMP_METHOD and r["level"] > 0]
    if not imp:
        return ""
    seed, level = min(r["seed"] for r in imp), max(r["level"] for r in imp)
    masks = level_masks(run, seed, level)
    own = [m for m in masks if m in same_mask]
    methods = [m for m in masks if m != IMP_METHOD and m not in same_mask]
    if not methods:
        return ""
    layers = list(masks[IMP_METHOD])
    lines = [f"### masks at level {level} (seed {seed})", "",
             "Intersection over union with the IMP ticket's mask, per layer and over all prunable weights:", "",
             "| method | " + " | ".join(layers) + " | all |", "|---|" + "---:|" * (len(layers) + 1)]
    for m in methods:
        cells = [f"{iou(masks[m][n], masks[IMP_METHOD][n]):.3f}" for n in layers]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_overall(masks[m], masks[IMP_METHOD]):.3f} |")
    every = [IMP_METHOD, *methods]
    lines += ["", "Pairwise, over all prunable weights:", "", "| | " + " | ".join(every) + " |", "|---|" + "---:|" * len(every)]
    lines += [f"| {a} | " + " | ".join(f"{_overall(masks[a], masks[b]):.3f}" for b in every) + " |" for a in every]
    if own:
        lines += ["", f"{', '.join(own)} train{'s' if len(own) == 1 else ''} the ticket's own mask (an IoU of 1 by "
                  "construction), left out above."]
    return "\n".join(lines) + "\n\n" + _densities(rows, seed, level, layers)


def _densities(rows: list[dict], seed: int, level: int, layers: list[str]) -> str:
    asked = [r for r in rows if r["seed"] == seed and r["level"] == level and r.get("target_density")]
    if not asked:
        return ""
    lines = [f"Layer densities at level {level} (seed {seed}), reached / asked for by the distribution (%):", "",
             "| method | " + " | ".join(layers) + " |", "|---|" + "---:|" * len(layers)]
    for r in asked:
        cells = [f"{100 * r['layer_density'][n]:.2f} / {100 * r['target_density'][n]:.2f}" for n in layers]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
