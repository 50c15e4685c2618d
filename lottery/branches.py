"""Branches off an IMP level: controls and comparisons trained at the level's sparsity.

Each branch builds (model, masks, plan) from the level's ticket; the runner trains it like a level.

    reinit               the ticket's mask, fresh random weights (Frankle & Carbin 2019, Section 2)
    random_prune         a random mask with the ticket's per-layer counts, rewind-point weights
    random_prune_global  a random mask with the ticket's overall density, rewind-point weights
    oneshot              magnitude pruning of the dense trained weights straight to this sparsity
    lr_rewind            the mask, the previous level's trained weights, schedule replayed from k (Renda et al. 2020)
    finetune             the mask, the previous level's trained weights, constant final learning rate
    magnitude_init, snip, grasp, synflow
                         pruning at initialisation to this density (Frankle et al. 2021; Tanaka et al. 2020)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lottery import io, rewind
from lottery.masks import MaskManager
from lottery.rewind import LevelPlan

CONTROL_SEED_OFFSET = 1_000_003  # branches draw their random weights/masks from seed + this + level


@dataclass
class Branch:
    model: torch.nn.Module
    masks: MaskManager
    plan: LevelPlan
    constant_lr: bool = False


def _seed(imp, level: int) -> int:
    return imp.seed + CONTROL_SEED_OFFSET + level


def _rewound(imp) -> torch.nn.Module:
    model = imp.build(imp.seed)
    rewind.restore(model, imp.rewind_point())
    return model


def _retrain(imp) -> LevelPlan:
    return LevelPlan(True, imp.plan.step_offset if imp.plan.from_rewind_point else 0,
                     imp.plan.steps if imp.plan.from_rewind_point else imp.total_steps, False)


def reinit(imp, level: int, ticket: MaskManager) -> Branch:
    model = imp.build(_seed(imp, level))
    masks = imp.masks_for(model)
    masks.set_masks(ticket.masks)
    return Branch(model, masks, _retrain(imp))


def random_prune(imp, level: int, ticket: MaskManager) -> Branch:
    model = _rewound(imp)
    masks = imp.masks_for(model)
    density = {n: int(m.sum()) / m.numel() for n, m in ticket.masks.items()}
    masks.prune_to(density, "layer_random", torch.Generator().manual_seed(_seed(imp, level)))
    return Branch(model, masks, _retrain(imp))


def random_prune_global(imp, level: int, ticket: MaskManager) -> Branch:
    model = _rewound(imp)
    masks = MaskManager(model, include=ticket.names)  # no per-layer rates: one global draw
    overall = 1.0 - ticket.sparsity()
    masks.prune_to({n: overall for n in masks.names}, "global_random", torch.Generator().manual_seed(_seed(imp, level)))
    return Branch(model, masks, _retrain(imp))


def oneshot(imp, level: int, ticket: MaskManager) -> Branch:
    model = imp.build(imp.seed)
    model.load_state_dict(io.load_tensors(imp.level_dir(0) / "final.safetensors"))
    masks = imp.masks_for(model)
    masks.prune_to(ticket.density, imp.cfg.prune.strategy, torch.Generator().manual_seed(_seed(imp, level)))
    rewind.restore(model, imp.rewind_point(), masks)
    return Branch(model, masks, _retrain(imp))


def _trained(imp, level: int, ticket: MaskManager) -> tuple[torch.nn.Module, MaskManager]:
    model = imp.build(imp.seed)
    model.load_state_dict(io.load_tensors(imp.level_dir(level - 1) / "final.safetensors"))
    masks = imp.masks_for(model)
    masks.set_masks(ticket.masks)
    return model, masks


def lr_rewind(imp, level: int, ticket: MaskManager) -> Branch:
    k = imp.cfg.rewind.step
    return Branch(*_trained(imp, level, ticket), LevelPlan(False, k, imp.total_steps - k, False))


def finetune(imp, level: int, ticket: MaskManager) -> Branch:
    k = imp.cfg.rewind.step
    return Branch(*_trained(imp, level, ticket), LevelPlan(False, k, imp.total_steps - k, True), constant_lr=True)


def _at_init(method: str) -> Callable:
    def branch(imp, level: int, ticket: MaskManager) -> Branch:
        from lottery.pruning_at_init import prune_at_init

        model = imp.build(imp.seed)
        model.load_state_dict(io.load_tensors(imp.rewind_path(0)))
        masks = MaskManager(model, include=ticket.names)
        prune_at_init(method, model, masks, 1.0 - ticket.sparsity(), batches=_batches(imp),
                      input_shape=imp.data.input_shape, generator=torch.Generator().manual_seed(_seed(imp, level)))
        return Branch(model, masks, LevelPlan(True, 0, imp.total_steps, False))

    branch.__doc__ = f"Prune at initialisation with {method}, then train from the initial weights."
    return branch


def _batches(imp, samples_per_class: int = 10) -> list:
    """About ten examples per class, as GraSP (Wang et al. 2020) scores with; SNIP uses one batch of similar size."""
    want, out = samples_per_class * imp.data.num_classes, []
    for x, y in imp.data.train_dataloader():
        out.append((x.cpu(), y.cpu()))
        want -= len(y)
        if want <= 0:
            break
    return out


BRANCHES: dict[str, Callable[..., Branch]] = {
    "reinit": reinit, "random_prune": random_prune, "random_prune_global": random_prune_global,
    "oneshot": oneshot, "lr_rewind": lr_rewind, "finetune": finetune,
    **{name: _at_init(name.removesuffix("_init")) for name in ("magnitude_init", "snip", "grasp", "synflow")},
}
