"""The channel early-bird ticket, in its own setting (You et al. 2020, "Drawing Early-Bird Tickets", Section 3, and
the `EarlyBird` class and epoch loop of their main.py):

- masks of channels from the BatchNorm scaling factors, as network slimming prunes: every unit of the prunable groups
  that have a BatchNorm scored by its mean |γ|, ranked all together; at ratio p the mask keeps the units scored
  above the sorted score at position int(total x p) (their threshold rule);
- one detector per target ratio: p_L = 1 - (1 - prune.fraction)^L, the units a structured IMP level L keeps, for
  every level L of the run, each drawing its own ticket;
- a mask at the start of every epoch, the initialisation included (before the first step, then after every epoch
  but the last);
- a FIFO of the last `window` (5) masks: the ticket is drawn when the newest mask's distance (the share of units that
  differ) to each of the others is at most ε (0.1): their `early_bird_emerge` fails on a distance `> 0.1`;
- the weights at that moment are kept (one file per level), and the branch at level L prunes them by that mask and
  retrains, as `retrain` says: `continue` trains the drawn weights for the rest of the schedule, from the drawn epoch
  on (their retrain_continue.sh: main_c.py from --start-epoch, so that search and retraining make one schedule;
  their main_c.py builds the pruned network afresh there, where we keep the drawn weights, as the paper's "EB
  Train" describes); `reinit` trains fresh weights for the whole schedule (main_scratch.py, "EB Train (re-init)");
  `rewind` trains from the run's rewind point, as IMP does. The penalty of a bn_scale run applies throughout, as
  their retraining keeps its sparsity regularisation.

The unstructured detector (lottery.sparsity.earlybird, the `earlybird` branch) is the variant for any model: one
detector at the first level's fraction of weights, masks at epoch ends. What this one records goes to the dense
level's metrics.json under `watched.earlybird_channels.levels.<L>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from lottery.core import rewind
from lottery.core.errors import LotteryError
from lottery.core.files import load_tensors, read_json, save_tensors
from lottery.core.methods import Branch, Training, register
from lottery.core.rewind import TRAINED, TrainingPlan
from lottery.structured.removal import check_removal
from lottery.structured.units import UnitGroup, unit_groups

NAME = "earlybird_channels"
RETRAIN = ("continue", "reinit", "rewind")


@dataclass(frozen=True)
class ChannelEarlyBirdOptions:
    """methods.earlybird_channels.*: the detector's window and ε (the paper's), and how the drawn ticket retrains."""

    window: int = 5  # masks in the FIFO: the newest against the others (You et al. 2020: 5)
    threshold: float = 0.1  # ε: the largest distance at which the ticket is drawn (You et al. 2020: 0.1)
    retrain: str = "continue"  # continue (the drawn weights, the rest of the schedule) | reinit (fresh weights, all of
    # it) | rewind (the rewind point, as the run's levels)

    def __post_init__(self):
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise LotteryError(f"methods.{NAME}.window={self.window!r} must be a whole number >= 2: the masks compared")
        if not 0 < self.threshold <= 1:
            raise LotteryError(f"methods.{NAME}.threshold={self.threshold!r} must be in (0, 1]: a share of channels")
        if self.retrain not in RETRAIN:
            raise LotteryError(f"methods.{NAME}.retrain={self.retrain!r} must be one of {', '.join(RETRAIN)}")


def scaled_groups(model, input_shape, prunable) -> list[UnitGroup]:
    """The groups of channels that can go and carry BatchNorm scaling factors."""
    return [g for g in unit_groups(model, input_shape, prunable) if not g.fixed and g.kind == "channel" and g.norms]


def unit_scores(groups: list[UnitGroup], model) -> torch.Tensor:
    """Every unit's mean |γ| over its BatchNorms, the groups one after the other."""
    params = dict(model.named_parameters())
    out = []
    for g in groups:
        total = torch.zeros(g.units, dtype=torch.float64)
        for m in g.norms:
            total.index_add_(0, m.unit, params[m.name].detach().cpu().double().abs()[m.index])
        out.append(total / len(g.norms))
    return torch.cat(out)


def channel_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """bool [units]: the units kept at pruning `ratio`, by You et al.'s rule (kept: above the sorted score at
    int(total x ratio)), at least one."""
    threshold = scores.sort().values[min(int(len(scores) * ratio), len(scores) - 1)]
    kept = scores > threshold
    if not kept.any():
        kept[scores.argmax()] = True
    return kept


def apply_mask(groups: list[UnitGroup], masks, kept: torch.Tensor) -> None:
    """Set `masks` (a MaskManager) to the unit mask `kept` (over `groups`, one after the other)."""
    new = {n: m.detach().cpu().clone() for n, m in masks.masks.items()}
    for g, part in zip(groups, kept.split([g.units for g in groups])):
        g.remove(new, ~part)
    masks.set_masks(new)


class Detector:
    """One target ratio's detector: a FIFO of the last `window` masks; `push` the newest, and the ticket is drawn when
    its distance (the share of entries that differ) to each of the others is at most `threshold`."""

    def __init__(self, window: int = 5, threshold: float = 0.1):
        self.window, self.threshold = window, threshold
        self.recent: list[torch.Tensor] = []  # oldest first
        self.distances: list[float | None] = []  # per mask pushed: the largest distance in the full FIFO
        self.drawn: int | None = None  # the index of the mask the ticket was drawn at (its epoch: 0 is the init)

    def push(self, mask: torch.Tensor) -> bool:
        """Add the newest mask; True when this one draws the ticket."""
        self.recent = (self.recent + [mask])[-self.window:]
        full = len(self.recent) == self.window
        # as their cal_dist: 1 - (entries equal) / entries, in Python floats
        gaps = [1 - int((mask == old).sum()) / mask.numel() for old in self.recent[:-1]] if full else []
        self.distances.append(max(gaps) if gaps else None)
        if full and self.drawn is None and all(d <= self.threshold for d in gaps):  # You et al.: `> 0.1` fails
            self.drawn = len(self.distances) - 1
            return True
        return False

    def state_dict(self) -> dict:
        return {"recent": self.recent, "distances": self.distances, "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        self.recent, self.distances, self.drawn = list(state["recent"]), list(state["distances"]), state["drawn"]


class ChannelEarlyBird:
    """The detectors on one dense training (the updater interface of lottery.sparsity.updaters, changing no mask)."""

    def __init__(self, groups: list[UnitGroup], ratios: Mapping[int, float], steps_per_epoch: int, total_steps: int,
                 files: Mapping[int, Path], window: int = 5, threshold: float = 0.1, name: str = NAME):
        self.groups, self.ratios, self.files, self.name = groups, dict(ratios), dict(files), name
        self.steps_per_epoch, self.total_steps, self.window, self.threshold = steps_per_epoch, total_steps, window, threshold
        self.detectors = {level: Detector(window, threshold) for level in self.ratios}

    def observe(self, model, epoch: int) -> None:
        """The masks at the start of `epoch` (epochs trained so far); keep the weights of the tickets drawn now."""
        scores = unit_scores(self.groups, model)
        for level, ratio in self.ratios.items():
            if self.detectors[level].push(channel_mask(scores, ratio)):
                save_tensors(self.files[level], model.state_dict(),
                             {"epoch": str(epoch), "step": str(epoch * self.steps_per_epoch), "ratio": str(ratio)})

    # -- the updater interface ---------------------------------------------------------------------------------
    def done(self, step: int) -> bool:
        return False

    @torch.no_grad()
    def before_step(self, step: int, masks, optimizer) -> None:
        if step == 0 and not any(d.distances for d in self.detectors.values()):  # the init, before the first step
            self.observe(masks.model, 0)

    @torch.no_grad()
    def update(self, step: int, masks, optimizer=None) -> None:
        if (step + 1) % self.steps_per_epoch == 0 and step + 1 < self.total_steps:  # an epoch's end: the next's start
            self.observe(masks.model, (step + 1) // self.steps_per_epoch)

    def watched(self) -> dict:
        spe = self.steps_per_epoch
        levels = {str(level): {"ratio": ratio, "distances": d.distances, "epoch": d.drawn,
                               "step": None if d.drawn is None else d.drawn * spe}
                  for (level, ratio), d in zip(self.ratios.items(), self.detectors.values())}
        return {self.name: {"levels": levels, "window": self.window, "threshold": self.threshold}}

    def segments(self, start: int, end: int) -> None:
        return None

    def dense_gradient_steps(self, total_steps: int) -> int:
        return 0

    def state_dict(self) -> dict:
        return {"detectors": {level: d.state_dict() for level, d in self.detectors.items()}}

    def load_state_dict(self, state: dict) -> None:
        for level, d in state.get("detectors", {}).items():
            self.detectors[int(level)].load_state_dict(d)


@dataclass(frozen=True)
class ChannelEarlyBirdSpec:
    """The detectors as a run spec carries them; the run trains alone."""

    groups: tuple
    ratios: tuple
    steps_per_epoch: int
    total_steps: int
    files: tuple
    window: int = 5
    threshold: float = 0.1
    name: str = NAME
    lane_key = None

    def build(self, seeds=None) -> ChannelEarlyBird:
        return ChannelEarlyBird(list(self.groups), dict(self.ratios), self.steps_per_epoch, self.total_steps,
                                dict(self.files), self.window, self.threshold, self.name)


# -- the branch --------------------------------------------------------------------------------------------------
def _ratio(fraction: float, level: int) -> float:
    return 1 - (1 - fraction) ** level


def _groups(models, model) -> list[UnitGroup]:
    return scaled_groups(model, tuple(models.data.input_shape), models.masks_for(model).names)


def watch(models, options: ChannelEarlyBirdOptions) -> ChannelEarlyBirdSpec:
    """One detector per level of the run on the dense training (`models`: the seed's lottery.imp.seed_models.SeedModels)."""
    groups = _groups(models, models.fresh(models.seed, pretrained=False))
    steps = models.data.steps_per_epoch()
    levels = range(1, models.cfg.prune.levels + 1)
    return ChannelEarlyBirdSpec(tuple(groups), tuple((L, _ratio(models.fraction, L)) for L in levels), steps,
                                models.cfg.train.total_steps(steps),
                                tuple((L, models.files.watch_file(NAME, L)) for L in levels),
                                options.window, options.threshold)


def build(point, models, rewinding, options: ChannelEarlyBirdOptions) -> Training:
    """The ticket the level's detector drew (the dense network's end when it drew none), pruned by its channel mask,
    retrained as `options.retrain` says."""
    drawn, dense, step = models.files.watch_file(NAME, point.level), models.files.level(0), 0
    if drawn.exists():
        step = int(load_tensors(drawn, with_metadata=True)[1]["step"])
    else:
        if NAME not in read_json(dense.metrics).get("watched", {}):
            raise LotteryError(f"the {NAME} branch needs its detectors on level 0, but {dense.path} trained without them "
                               f"({NAME} was not among the branches then): start the run under another name=...")
        drawn = dense.final  # never drawn: the dense network's end, as one-shot pruning, retrained for a whole schedule
    model = models.with_weights(drawn)
    masks = models.masks_for(model)
    groups = _groups(models, model)
    apply_mask(groups, masks, channel_mask(unit_scores(groups, model), _ratio(models.fraction, point.level)))
    if options.retrain == "reinit":
        fresh = models.fresh(point.branch_seed, pretrained=False)
        kept = masks.masks
        masks = models.masks_for(fresh)
        masks.set_masks(kept)
        return Training(fresh, masks, rewinding.dense_plan)
    if options.retrain == "rewind":
        rewind.restore(model, models.rewind_point(), masks)
        return Training(model, masks, rewinding.branch_plan)
    return Training(model, masks, TrainingPlan(TRAINED, start_step=step, steps=rewinding.total_steps - step))


def check(context, options: ChannelEarlyBirdOptions) -> None:
    """Before anything trains: the graph follows the model, and some prunable channels carry a BatchNorm."""
    shape = tuple(context.data.input_shape)
    groups = unit_groups(context.model, shape, context.masks.names)
    check_removal(context.model, shape, groups)
    if not any(not g.fixed and g.kind == "channel" and g.norms for g in groups):
        raise LotteryError(f"the {NAME} branch ranks channels by their BatchNorm scaling factors, and "
                           f"{type(context.model).__name__} has no prunable channel with a BatchNorm; use the earlybird "
                           "branch (unstructured), or a model with BatchNorm (conv4_bn, resnet20, vgg16)")


register(Branch(name=NAME, build=build, builds_on="watch", watch=watch, options=ChannelEarlyBirdOptions, check=check,
                label="early-bird ticket (channels)",
                summary="channels by BatchNorm scale at the epoch the level's detector agreed (You et al. 2020), retrained"))
