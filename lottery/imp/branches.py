"""Branches off an IMP level: controls and comparisons trained at the level's sparsity.

Every branch is a record (lottery.core.methods): the controls and comparisons below are `Branch` records with a
`build` of their own; the sparse-training methods (lottery.sparsity.updaters), pruning at initialisation
(lottery.sparsity.pruning_at_init) and the one-shot row pruners (lottery.sparsity.wanda) are `SparseTraining` and
`OneShot` records, which `training` builds from their facts. A build reads the level it trains off (a `LevelPoint`:
number, masks, seed of its random draws), the seed's models (lottery.imp.seed_models.SeedModels: fresh, trained or
rewound weights, the experiment's prunable tensors) and the experiment's rewinding (the plans); it returns what to
train, a `Training` (model with its starting weights, masks, plan). The runner trains it like a level.

    reinit               the ticket's mask, fresh random weights (Frankle & Carbin 2019, Section 2)
    random_prune         a random mask with the ticket's per-layer counts, rewind-point weights (the IMP strategy's
                         `control`: whole units at random with the per-layer unit counts, for a structured ticket)
    random_prune_global  a random mask with the ticket's overall density, rewind-point weights
    oneshot              magnitude pruning of the dense trained weights straight to this sparsity
    lr_rewind            the mask, the previous level's trained weights, schedule replayed from k (Renda et al. 2020)
    finetune             the mask, the previous level's trained weights, constant final learning rate
    earlybird            the early-bird ticket (You et al. 2020): the dense weights of the epoch it was drawn, pruned to
                         this sparsity and rewound (its detector watches the dense level: lottery.sparsity.earlybird)

`lottery list branches` lists them all, with those that installed packages add.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lottery.core import rewind, seeds
from lottery.core.errors import LotteryError
from lottery.core.files import read_json
from lottery.core.masks import MaskManager
from lottery.core.methods import METHODS, Branch, Calibration, OneShot, SparseTraining, Training, register
from lottery.core.pruning import get_strategy
from lottery.core.rewind import Rewinding, TrainingPlan
from lottery.sparsity import edgepopup, pruning_at_init, srste, updaters, wanda  # noqa: F401  (their records)
import lottery.structured  # noqa: F401  (the structured strategies and the channel early-bird branch)
from lottery.sparsity.earlybird import EarlyBirdOptions, EarlyBirdSpec

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


BRANCHES = METHODS.of(Branch)  # every kind of branch: Branch, SparseTraining and OneShot records


def training(method: Branch, point: LevelPoint, models: SeedModels, rewinding: Rewinding, options=None) -> Training:
    """What branch `method` (with its `options`) trains off `point`."""
    if isinstance(method, SparseTraining):
        return _sparse_training(method, point, models, rewinding, options)
    if isinstance(method, OneShot):
        return _one_shot(method, point, models, rewinding, options)
    return method.call(method.build, point, models, rewinding, options=options)


def _sparse_training(method: SparseTraining, point: LevelPoint, models: SeedModels, rewinding: Rewinding,
                     options) -> Training:
    """One training from the dense level's initialisation to the level's density, shared out by sparse.distribution
    (or to the method's own densities); from dense (starts_dense) or from a random mask with those per-layer counts."""
    model = models.with_weights(models.files.rewind(0))
    masks = models.masks_for(model)
    density = own_densities(method, models, options, masks) or models.layer_densities(masks, 1.0 - point.masks.sparsity())
    if not method.starts_dense:
        masks.prune_to(density, "layer_random", point.generator())
    updater = models.sparse_training(method.name, density, rewinding.total_steps, point.branch_seed, options)
    return Training(model, masks, rewinding.dense_plan, updater)


def own_densities(method: SparseTraining, models: SeedModels, options, masks: MaskManager | None = None):
    """The densities a sparse-training method's options fix (its record's `densities`), or None: the level's. masks:
    the prunable tensors (default: those of the seed's architecture)."""
    if method.densities is None:
        return None
    masks = masks if masks is not None else models.masks_for(models.fresh(models.seed, pretrained=False))
    share = lambda density: models.layer_densities(masks, density)  # noqa: E731
    return method.call(method.densities, masks, share, options=options)


def trains_at(method: Branch, level: int, models: SeedModels, options) -> bool:
    """Whether branch `method` trains off `level`: every branch at every pruned level, but a method whose densities
    are its own trains once, off level 1 (its network would be the same at every level)."""
    if level == 1 or not isinstance(method, SparseTraining) or method.densities is None:
        return True
    return models.own_density_of(method.name, lambda: own_densities(method, models, options)) is None


def _one_shot(method: OneShot, point: LevelPoint, models: SeedModels, rewinding: Rewinding, options) -> Training:
    """Prune the initial weights (trained for the whole schedule) or the rewind point's (trained as the level) once
    to the level's density."""
    at_init = method.weights == "init"
    model = models.with_weights(models.files.rewind(0)) if at_init else models.rewound()
    masks = models.masks_for(model)
    per_class = method.examples_per_class(models.data.num_classes)
    calibration = Calibration(_batches(models.data, per_class) if per_class else [], tuple(models.data.input_shape))
    method.call(method.prune, model, masks, 1.0 - point.masks.sparsity(), calibration, point.generator(),
                options=options)
    return Training(model, masks, rewinding.dense_plan if at_init else rewinding.branch_plan)


def _batches(data, samples_per_class: int) -> list:
    """About `samples_per_class` labelled training examples per class, whole batches, on the CPU."""
    want, out = samples_per_class * data.num_classes, []
    for x, y in data.train_dataloader():
        out.append((x.cpu(), y.cpu()))
        want -= len(y)
        if want <= 0:
            break
    return out


# -- the controls and comparisons --------------------------------------------------------------------------
def reinit(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    model = models.fresh(point.branch_seed, pretrained=False)  # a pretrained model: its architecture's random init
    masks = models.masks_for(model)
    masks.set_masks(point.masks.masks)
    return Training(model, masks, rewinding.branch_plan)


def random_prune(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    """The IMP strategy's control (layer_random; structured_random for a structured one): random masks with the
    ticket's per-layer counts of weights, or of units."""
    model = models.rewound()
    masks = models.masks_for(model)
    control = get_strategy(models.strategy.control)
    masks.prune_to(point.masks.densities("units" if control.structured else "weights"), control, point.generator())
    return Training(model, masks, rewinding.branch_plan)


def random_prune_global(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    model = models.rewound()
    masks = MaskManager(model, include=point.masks.names)  # no per-layer rates: one global draw
    overall = 1.0 - point.masks.sparsity()
    masks.prune_to({n: overall for n in masks.names}, "global_random", point.generator())
    return Training(model, masks, rewinding.branch_plan)


def _pruned_from(weights, point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    """The dense weights of a file pruned by the IMP strategy straight to the level's densities, then rewound."""
    model = models.with_weights(weights)
    masks = models.masks_for(model)
    masks.prune_to(point.masks.density, models.strategy, point.generator())
    rewind.restore(model, models.rewind_point(), masks)
    return Training(model, masks, rewinding.branch_plan)


def oneshot(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    return _pruned_from(models.files.level(0).final, point, models, rewinding)


def _trained(point: LevelPoint, models: SeedModels, plan: TrainingPlan) -> Training:
    """The level's mask on the previous level's trained weights, retrained by `plan`."""
    model = models.with_weights(models.files.level(point.level - 1).final)
    masks = models.masks_for(model)
    masks.set_masks(point.masks.masks)
    return Training(model, masks, plan)


def lr_rewind(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    return _trained(point, models, rewinding.plan_of("lr"))


def finetune(point: LevelPoint, models: SeedModels, rewinding: Rewinding) -> Training:
    return _trained(point, models, rewinding.plan_of("finetune"))


def earlybird(point: LevelPoint, models: SeedModels, rewinding: Rewinding, options: EarlyBirdOptions) -> Training:
    """Prune the dense weights of the epoch the early-bird ticket was drawn (You et al. 2020) to this density, rewind."""
    drawn, dense = models.files.watch_file("earlybird"), models.files.level(0)
    if not drawn.exists():
        if "earlybird" not in read_json(dense.metrics).get("watched", {}):
            raise LotteryError(f"the earlybird branch needs the early-bird watcher on level 0, but {dense.path} trained "
                               "without it (earlybird was not among the branches then): start the run under another name=...")
        drawn = dense.final  # the watcher never drew a ticket: the dense network's end, as one-shot pruning
    return _pruned_from(drawn, point, models, rewinding)


def watch_earlybird(models: SeedModels, options: EarlyBirdOptions) -> EarlyBirdSpec:
    """The detector on the dense training: the magnitude mask of level 1 at every epoch's end."""
    return EarlyBirdSpec(lambda: models.masks_for(models.fresh(models.seed, pretrained=False)), models.fraction,
                         models.strategy, models.data.steps_per_epoch(), models.files.watch_file("earlybird"),
                         options.window, options.threshold, seeds.prune(models.seed, 1), "earlybird")


for _record in (
    Branch(name="reinit", build=reinit, builds_on="imp", same_mask=True, label="random re-initialisation",
           summary="the ticket's mask with fresh random weights (Frankle & Carbin 2019, Section 2)"),
    Branch(name="random_prune", build=random_prune, builds_on="imp", label="random pruning (per layer)",
           summary="a random mask with the ticket's per-layer counts (of units, for a structured ticket), rewind point"),
    Branch(name="random_prune_global", build=random_prune_global, builds_on="imp", label="random pruning (global)",
           summary="a random mask with the ticket's overall density, from the rewind point"),
    Branch(name="oneshot", build=oneshot, builds_on="dense", label="one-shot magnitude",
           summary="the dense trained weights pruned by the IMP strategy straight to the level's sparsity, rewound"),
    Branch(name="lr_rewind", build=lr_rewind, builds_on="imp", same_mask=True, label="learning-rate rewinding",
           summary="the ticket's mask on the previous level's trained weights, schedule replayed (Renda et al. 2020)"),
    Branch(name="finetune", build=finetune, builds_on="imp", same_mask=True, label="fine-tuning",
           reads=("train.optim.finetune_lr",),
           summary="the ticket's mask on the previous level's trained weights, at the final learning rate"),
    Branch(name="earlybird", build=earlybird, builds_on="watch", watch=watch_earlybird, options=EarlyBirdOptions,
           label="early-bird ticket",
           summary="the dense weights of the epoch the early-bird ticket was drawn, pruned and rewound (You et al. 2020)"),
):
    register(_record)
