"""Branches off an IMP level: controls and comparisons trained at the level's sparsity.

Each branch is a function of what it reads: the level it trains off (a `LevelPoint`: number, masks, seed of its
random draws), the seed's models (lottery.imp.seed_models.SeedModels: fresh, trained or rewound weights, the
experiment's prunable tensors) and the experiment's rewinding (the plans); it returns what to train, a `Branch`
(model with its starting weights, masks, plan). The runner trains it like a level.

    reinit               the ticket's mask, fresh random weights (Frankle & Carbin 2019, Section 2)
    random_prune         a random mask with the ticket's per-layer counts, rewind-point weights
    random_prune_global  a random mask with the ticket's overall density, rewind-point weights
    oneshot              magnitude pruning of the dense trained weights straight to this sparsity
    lr_rewind            the mask, the previous level's trained weights, schedule replayed from k (Renda et al. 2020)
    finetune             the mask, the previous level's trained weights, constant final learning rate
    magnitude_init, snip, grasp, synflow
                         pruning at initialisation to this density (Frankle et al. 2021; Tanaka et al. 2020)
    gmp, set, rigl, static
                         one training from the initial weights to this density: gradual magnitude pruning, SET, RigL, a
                         fixed random mask (lottery.sparsity.updaters; layer densities by sparse.distribution)
    earlybird            the early-bird ticket (You et al. 2020): the dense weights of the epoch it was drawn, pruned to
                         this sparsity and rewound
    wanda, row_magnitude one-shot pruning of the rewind-point weights (a pretrained checkpoint) to this density,
                         by |W| x input norm (Wanda, Sun et al. 2024) or |W| alone, within each output row
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from lottery.core import rewind
from lottery.core.errors import LotteryError, Registry
from lottery.core.files import read_json
from lottery.core.masks import MaskManager, layer_density
from lottery.core.rewind import Rewinding, TrainingPlan

if TYPE_CHECKING:
    from lottery.imp.seed_models import SeedModels


@dataclass(frozen=True)
class LevelPoint:
    """The IMP level a branch trains off: its number, its masks, and the seed of the branch's random draws."""

    level: int
    masks: MaskManager  # the level's IMP masks
    branch_seed: int  # lottery.core.seeds.branch: apart from the ticket's initialisation and from other levels'

    def generator(self) -> torch.Generator:
        """A new generator for the branch's random masks (each branch draws the same stream)."""
        return torch.Generator().manual_seed(self.branch_seed)


@dataclass(frozen=True)
class Branch:
    """What a branch trains: the model with its starting weights, its masks, its plan; and the method that changes
    the masks while it trains, for the sparse-training branches (lottery.sparsity.updaters.MethodSpec)."""

    model: torch.nn.Module
    masks: MaskManager
    plan: TrainingPlan
    updater: object = None


# A branch: (the level it trains off, the seed's models, the experiment's rewinding) -> what to train.
BranchFn = Callable[[LevelPoint, "SeedModels", Rewinding], Branch]


def reinit(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    model = models.fresh(point.branch_seed, pretrained=False)  # a pretrained model: its architecture's random init
    masks = models.masks_for(model)
    masks.set_masks(point.masks.masks)
    return Branch(model, masks, rewinding.branch_plan)


def random_prune(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    model = models.rewound()
    masks = models.masks_for(model)
    masks.prune_to(layer_density(point.masks.masks), "layer_random", point.generator())
    return Branch(model, masks, rewinding.branch_plan)


def random_prune_global(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    model = models.rewound()
    masks = MaskManager(model, include=point.masks.names)  # no per-layer rates: one global draw
    overall = 1.0 - point.masks.sparsity()
    masks.prune_to({n: overall for n in masks.names}, "global_random", point.generator())
    return Branch(model, masks, rewinding.branch_plan)


def _pruned_from(weights, point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    """The dense weights of a file pruned by the IMP strategy straight to the level's densities, then rewound."""
    model = models.with_weights(weights)
    masks = models.masks_for(model)
    masks.prune_to(point.masks.density, models.strategy, point.generator())
    rewind.restore(model, models.rewind_point(), masks)
    return Branch(model, masks, rewinding.branch_plan)


def oneshot(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    return _pruned_from(models.files.level(0).final, point, models, rewinding)


def _trained(point: LevelPoint, models: SeedModels, plan: TrainingPlan) -> Branch:
    """The level's mask on the previous level's trained weights, retrained by `plan`."""
    model = models.with_weights(models.files.level(point.level - 1).final)
    masks = models.masks_for(model)
    masks.set_masks(point.masks.masks)
    return Branch(model, masks, plan)


def lr_rewind(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    return _trained(point, models, rewinding.plan_of("lr"))


def finetune(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    return _trained(point, models, rewinding.plan_of("finetune"))


def _at_init(method: str) -> BranchFn:
    def branch(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
        from lottery.sparsity.pruning_at_init import prune_at_init

        model = models.with_weights(models.files.rewind(0))
        masks = MaskManager(model, include=point.masks.names)
        prune_at_init(method, model, masks, 1.0 - point.masks.sparsity(), batches=_batches(models.data),
                      input_shape=models.data.input_shape, generator=point.generator())
        return Branch(model, masks, rewinding.dense_plan)

    branch.__doc__ = f"Prune at initialisation with {method}, then train from the initial weights."
    return branch


def _sparse_training(method: str) -> BranchFn:
    def branch(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
        model = models.with_weights(models.files.rewind(0))  # the dense level's initialisation
        masks = models.masks_for(model)
        density = models.layer_densities(masks, 1.0 - point.masks.sparsity())
        if method != "gmp":  # gmp starts dense; the others from a random mask with the distribution's counts
            masks.prune_to(density, "layer_random", point.generator())
        updater = models.sparse_training(method, density, rewinding.total_steps, point.branch_seed)
        return Branch(model, masks, rewinding.dense_plan, updater)

    branch.__doc__ = f"Train with {method} from the initial weights to the level's density (lottery.sparsity.updaters)."
    return branch


def earlybird(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
    """Prune the dense weights of the epoch the early-bird ticket was drawn (You et al. 2020) to this density, rewind."""
    drawn, dense = models.files.earlybird, models.files.level(0)
    if not drawn.exists():
        if "earlybird" not in read_json(dense.metrics):
            raise LotteryError(f"the earlybird branch needs the early-bird watcher on level 0, but {dense.path} trained "
                               "without it (earlybird was not among the branches then): start the run under another name=...")
        drawn = dense.final  # the watcher never drew a ticket: the dense network's end, as one-shot pruning
    return _pruned_from(drawn, point, models, rewinding)


def _one_shot_rows(activations: bool) -> BranchFn:
    def branch(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Branch:
        from lottery.sparsity.wanda import wanda_prune

        model = models.rewound()
        masks = models.masks_for(model)
        calibration = _batches(models.data, samples_per_class=-(-128 // models.data.num_classes)) if activations else []
        wanda_prune(model, masks, 1.0 - point.masks.sparsity(), calibration, activations=activations)
        return Branch(model, masks, rewinding.branch_plan)

    branch.__doc__ = (f"Prune the rewind-point weights by {'Wanda (|W| x input norm, 128 calibration examples)' if activations else '|W|'}"
                      " within each output row to the level's density, then train as a level does.")
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


SPARSE_TRAINING = ("gmp", "set", "rigl", "static")  # the branches that train with a sparse.* schedule
BRANCHES: Registry[BranchFn] = Registry("branch", {
    "reinit": reinit, "random_prune": random_prune, "random_prune_global": random_prune_global,
    "oneshot": oneshot, "lr_rewind": lr_rewind, "finetune": finetune, "earlybird": earlybird,
    **{name: _at_init(name.removesuffix("_init")) for name in ("magnitude_init", "snip", "grasp", "synflow")},
    **{name: _sparse_training(name) for name in SPARSE_TRAINING},
    "wanda": _one_shot_rows(activations=True), "row_magnitude": _one_shot_rows(activations=False),
})
# What each branch's mask needs besides its own training, for the cost of reaching it (lottery.report.cost):
# the IMP levels before it, the dense level, the dense level up to its early-bird epoch, or nothing but its density.
BUILDS_ON = {"reinit": "imp", "random_prune": "imp", "random_prune_global": "imp", "lr_rewind": "imp", "finetune": "imp",
             "oneshot": "dense", "earlybird": "earlybird"}
