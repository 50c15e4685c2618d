"""RunSpec: one training described completely. IMP levels, every branch and every stability copy build one;
the training layer consumes them without knowing about levels or branches, alone or as lanes, and writes the
same files either way."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from torch import nn

from lottery.core.layout import TrainingDir
from lottery.core.masks import MaskManager
from lottery.core.rewind import TrainingPlan

if TYPE_CHECKING:
    import pytorch_lightning as pl


@dataclass(frozen=True)
class RunSpec:
    """Everything one training needs.

    model: the network with its starting weights in place (rewind point, trained or fresh ones).
    plan: start step in the schedule, number of steps, and a constant learning rate or the schedule.
    data: the LightningDataModule; its own seed sets the data order.
    seed: the training's random draws (reseeded per epoch from it: lottery.core.seeds.epoch).
    capture: {schedule step: file} of weights to save when training reaches that step (rewind points).
    updater: a method that changes (or watches) the masks while the run trains, as a spec with `build(seeds)` and
        `lane_key` (lottery.sparsity.updaters.MethodSpec, lottery.sparsity.earlybird.EarlyBirdSpec); None: fixed masks.
    penalty: a term added to the training's loss (lottery.core.methods.Penalty: network slimming's); None: none.
    """

    label: str  # in logs: "level 3", "level 3 reinit"
    model: nn.Module
    masks: MaskManager
    plan: TrainingPlan
    data: "pl.LightningDataModule"  # with num_classes; its own seed sets the data order
    seed: int
    out: TrainingDir
    capture: Mapping[int, Path] = field(default_factory=dict)
    updater: Any = None
    penalty: Any = None
