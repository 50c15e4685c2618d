"""Early-bird tickets (You et al. 2020, "Drawing Early-Bird Tickets", Section 3): while the dense network trains,
the mask that pruning would give at every epoch's end; the ticket is drawn when the newest mask is within a
normalised Hamming distance ε of each of the masks before it in a window (5 masks, ε = 0.1 in the paper), a
fraction of the training in. Here for unstructured masks: the magnitude mask at the next IMP level's density.

The watcher changes no mask of the training it watches: it prunes a copy (`shadow`, a MaskManager over a copy of
the model with the experiment's prunable tensors and rates) and records the distances; the weights at the epoch
the ticket is drawn go to `weights_file`. It is the `watch` of the earlybird branch's record (lottery.imp.branches):
what the dense level's training records for it goes to metrics.json under `watched.<name>` (`watched`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lottery.core.errors import LotteryError
from lottery.core.files import save_tensors
from lottery.core.masks import MaskManager


@dataclass(frozen=True)
class EarlyBirdOptions:
    """The detector's options (methods.earlybird.*), the paper's defaults."""

    window: int = 5  # masks compared at each epoch's end: the newest against the others (You et al. 2020: 5)
    threshold: float = 0.1  # the normalised Hamming distance under which the ticket is drawn (You et al. 2020: 0.1)

    def __post_init__(self):
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise LotteryError(f"methods.earlybird.window={self.window!r} must be a whole number >= 2: the masks compared")
        if not 0 < self.threshold <= 1:
            raise LotteryError(f"methods.earlybird.threshold={self.threshold!r} must be in (0, 1]: a normalised Hamming "
                               "distance")


def mask_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Normalised Hamming distance: the share of all mask entries that differ."""
    differ = sum(int((a[n] != b[n]).sum()) for n in a)
    return differ / sum(m.numel() for m in a.values())


class EarlyBird:
    """Watches a dense training at every epoch's end (`steps_per_epoch` iterations) for its early-bird ticket."""

    def __init__(self, shadow: MaskManager, fraction: float, strategy, steps_per_epoch: int, weights_file: Path,
                 window: int = 5, threshold: float = 0.1, seed: int = 0, name: str = "earlybird"):
        self.shadow, self.fraction, self.strategy, self.seed, self.name = shadow, fraction, strategy, seed, name
        self.steps_per_epoch, self.weights_file, self.window, self.threshold = steps_per_epoch, Path(weights_file), window, threshold
        self.recent: list[dict[str, torch.Tensor]] = []  # the last `window` masks, oldest first
        self.distances: list[float | None] = []  # per epoch: the largest distance to the masks before it in the window
        self.drawn_epoch: int | None = None

    def done(self, step: int) -> bool:
        return False

    def before_step(self, step: int, masks: MaskManager, optimizer) -> None:
        pass

    @torch.no_grad()
    def update(self, step: int, masks: MaskManager, optimizer=None) -> None:
        if (step + 1) % self.steps_per_epoch:
            return  # only at an epoch's end
        self.shadow.model.load_state_dict(masks.model.state_dict())
        self.shadow.set_masks({n: torch.ones_like(m) for n, m in self.shadow.masks.items()})
        self.shadow.prune(self.fraction, self.strategy, torch.Generator().manual_seed(self.seed))
        newest = {n: m.detach().cpu().clone() for n, m in self.shadow.masks.items()}
        self.distances.append(max((mask_distance(newest, m) for m in self.recent), default=None))
        self.recent = (self.recent + [newest])[-self.window:]
        full = len(self.recent) == self.window
        if self.drawn_epoch is None and full and self.distances[-1] < self.threshold:
            self.drawn_epoch = len(self.distances)  # epochs are counted from 1
            save_tensors(self.weights_file, masks.model.state_dict(), {"epoch": str(self.drawn_epoch), "step": str(step + 1)})

    def report(self) -> dict:
        """What metrics.json records: the distance per epoch, and the epoch (and step) the ticket was drawn at."""
        drawn = self.drawn_epoch
        return {"distances": self.distances, "epoch": drawn, "step": None if drawn is None else drawn * self.steps_per_epoch,
                "window": self.window, "threshold": self.threshold}

    def watched(self) -> dict:
        """What metrics.json records under `watched`: this watcher's report under its method's name."""
        return {self.name: self.report()}

    def segments(self, start: int, end: int) -> None:
        return None  # the training it watches keeps its own masks

    def dense_gradient_steps(self, total_steps: int) -> int:
        return 0

    def state_dict(self) -> dict:
        return {"recent": self.recent, "distances": self.distances, "drawn_epoch": self.drawn_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.recent = list(state.get("recent", []))
        self.distances = list(state.get("distances", []))
        self.drawn_epoch = state.get("drawn_epoch")


@dataclass(frozen=True)
class EarlyBirdSpec:
    """The watcher as a run spec carries it; `shadow` builds the copy it prunes. Such a run trains alone."""

    shadow: Callable[[], MaskManager]
    fraction: float
    strategy: object  # a name in lottery.core.pruning.STRATEGIES, or a strategy record
    steps_per_epoch: int
    weights_file: Path
    window: int = 5
    threshold: float = 0.1
    seed: int = 0
    name: str = "earlybird"  # the method it watches for
    lane_key = None  # not shared by lanes: the watcher prunes one copy of one model

    def build(self, seeds=None) -> EarlyBird:
        return EarlyBird(self.shadow(), self.fraction, self.strategy, self.steps_per_epoch, self.weights_file,
                         self.window, self.threshold, self.seed, self.name)
