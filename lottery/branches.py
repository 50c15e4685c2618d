"""Branches off an IMP level: controls and comparisons trained at the level's sparsity.

Each branch is a function of the level it branches off (a `BranchContext`) returning what to train:
a `Branch` (model with its starting weights, masks, plan). The runner trains it like a level.

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
from pathlib import Path
from typing import Callable

import torch

from lottery import rewind, seeds
from lottery.errors import Registry
from lottery.files import load_tensors
from lottery.layout import SeedDir
from lottery.masks import MaskManager, layer_density
from lottery.rewind import REWIND, LevelPlan


@dataclass(frozen=True)
class BranchContext:
    """What a branch reads about the level it branches off."""

    level: int
    ticket: MaskManager  # the level's IMP masks
    plan: LevelPlan  # how the level itself retrains (its rewind policy's plan)
    total_steps: int  # T, the training length of level 0
    rewind_step: int  # k
    finetune_lr: float  # the constant learning rate of fine-tuning
    strategy: str  # the IMP pruning strategy
    run_seed: int  # the seed of the ticket's own initialisation
    seed_dir: SeedDir  # the seed's files: rewind points and trained weights of every level
    build: Callable[[int], torch.nn.Module]  # a freshly initialised model from a seed
    masks_for: Callable[[torch.nn.Module], MaskManager]  # the experiment's prunable tensors and rates
    data: object  # the LightningDataModule (pruning at initialisation scores on its batches)

    def generator(self) -> torch.Generator:
        """The branch's random draws (masks, weights): seeded per level, apart from the ticket's."""
        return torch.Generator().manual_seed(seeds.branch(self.run_seed, self.level))

    def model_with(self, weights: Path) -> torch.nn.Module:
        """The ticket's architecture holding the weights of a file of this seed."""
        model = self.build(self.run_seed)
        model.load_state_dict(load_tensors(weights))
        return model

    def rewound(self) -> torch.nn.Module:
        model = self.build(self.run_seed)
        rewind.restore(model, rewind.RewindPoint(self.rewind_step, load_tensors(self.seed_dir.rewind(self.rewind_step))))
        return model

    def retrain_plan(self) -> LevelPlan:
        """Branches from rewind-point or fresh weights train as the level does when it rewinds, else from step 0."""
        return self.plan if self.plan.weights == REWIND else LevelPlan.from_start(self.total_steps)


@dataclass(frozen=True)
class Branch:
    model: torch.nn.Module
    masks: MaskManager
    plan: LevelPlan


def reinit(ctx: BranchContext) -> Branch:
    model = ctx.build(seeds.branch(ctx.run_seed, ctx.level))
    masks = ctx.masks_for(model)
    masks.set_masks(ctx.ticket.masks)
    return Branch(model, masks, ctx.retrain_plan())


def random_prune(ctx: BranchContext) -> Branch:
    model = ctx.rewound()
    masks = ctx.masks_for(model)
    masks.prune_to(layer_density(ctx.ticket.masks), "layer_random", ctx.generator())
    return Branch(model, masks, ctx.retrain_plan())


def random_prune_global(ctx: BranchContext) -> Branch:
    model = ctx.rewound()
    masks = MaskManager(model, include=ctx.ticket.names)  # no per-layer rates: one global draw
    overall = 1.0 - ctx.ticket.sparsity()
    masks.prune_to({n: overall for n in masks.names}, "global_random", ctx.generator())
    return Branch(model, masks, ctx.retrain_plan())


def oneshot(ctx: BranchContext) -> Branch:
    model = ctx.model_with(ctx.seed_dir.level(0).final)
    masks = ctx.masks_for(model)
    masks.prune_to(ctx.ticket.density, ctx.strategy, ctx.generator())
    rewind.restore(model, rewind.RewindPoint(ctx.rewind_step, load_tensors(ctx.seed_dir.rewind(ctx.rewind_step))), masks)
    return Branch(model, masks, ctx.retrain_plan())


def _trained(ctx: BranchContext, policy: str) -> Branch:
    """The ticket's mask on the previous level's trained weights, retrained as rewind `policy` says."""
    model = ctx.model_with(ctx.seed_dir.level(ctx.level - 1).final)
    masks = ctx.masks_for(model)
    masks.set_masks(ctx.ticket.masks)
    return Branch(model, masks, rewind.plan(policy, ctx.rewind_step, ctx.total_steps, ctx.finetune_lr))


def lr_rewind(ctx: BranchContext) -> Branch:
    return _trained(ctx, "lr")


def finetune(ctx: BranchContext) -> Branch:
    return _trained(ctx, "finetune")


def _at_init(method: str) -> Callable[[BranchContext], Branch]:
    def branch(ctx: BranchContext) -> Branch:
        from lottery.pruning_at_init import prune_at_init

        model = ctx.model_with(ctx.seed_dir.rewind(0))
        masks = MaskManager(model, include=ctx.ticket.names)
        prune_at_init(method, model, masks, 1.0 - ctx.ticket.sparsity(), batches=_batches(ctx.data),
                      input_shape=ctx.data.input_shape, generator=ctx.generator())
        return Branch(model, masks, LevelPlan.from_start(ctx.total_steps))

    branch.__doc__ = f"Prune at initialisation with {method}, then train from the initial weights."
    return branch


def _batches(data, samples_per_class: int = 10) -> list:
    """About ten examples per class, as GraSP (Wang et al. 2020) scores with; SNIP uses one batch of similar size."""
    want, out = samples_per_class * data.num_classes, []
    for x, y in data.train_dataloader():
        out.append((x.cpu(), y.cpu()))
        want -= len(y)
        if want <= 0:
            break
    return out


BRANCHES: Registry[Callable[[BranchContext], Branch]] = Registry("branch", {
    "reinit": reinit, "random_prune": random_prune, "random_prune_global": random_prune_global,
    "oneshot": oneshot, "lr_rewind": lr_rewind, "finetune": finetune,
    **{name: _at_init(name.removesuffix("_init")) for name in ("magnitude_init", "snip", "grasp", "synflow")},
})
