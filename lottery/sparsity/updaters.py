"""Methods that change masks while a run trains: one small interface (jaxpruner's updaters are the model), one class
per method, each declared as a record (lottery.core.methods.SparseTraining) beside it.

    gmp     gradual magnitude pruning from dense, cubic schedule (Zhu & Gupta 2017; Gale et al. 2019)
    set     drop the smallest-magnitude active weights, regrow at random (Mocanu et al. 2018)
    rigl    drop the smallest, regrow where the dense gradient is largest (Evci et al. 2020)
    static  a fixed mask, trained as it is (the baseline the sparse-training papers compare against)

In a plain PyTorch loop (Lightning: `MaskCallback(masks, updater=...)` makes the same calls):

    updater = RigL(UpdateSchedule(end_step=750), density={name: 0.1, ...})
    loss.backward()
    updater.start(masks)                          # once, before the first step (the methods that make their own first mask)
    loss.backward()
    updater.before_step(step, masks, optimizer)   # SET/RigL: an update step applies no gradient (methods.<m>.update_step)
    optimizer.step()
    updater.update(step, masks, optimizer)        # after the step, the gradients still there; masks.apply() inside

A method writes one function, `new_mask(step, rows)`: the new mask of one tensor from its `Rows`, the tensor as its
lanes' rows [K, n] (K = 1 for a run alone; K runs trained as lanes of one network, lottery.lanes, are K rows) with
its mask, weights, the step's gradient and the optimizer's state (momentum, Adam's moments) in the same shape. The
one rule for lanes: treat every row as a run of its own (count, rank and draw per row; `self.random` draws each
lane's numbers from its own seed) and a method works for a run alone and as lanes alike
(tests/sparsity/test_updaters.py checks every registered method both ways).

Every update keeps each tensor's exact count of active weights (`rows.count`), zeroes the weights it prunes and
starts the ones it grows at zero with their optimizer state reset. Draws are seeded from (seed, step), so resumed
runs, lanes and DDP processes make the same masks.

What an update step does with that step's gradient is `update_step`, one of UPDATE_STEPS; the reference
implementations differ (google-research/rigl's sparse_optimizers_base.py, jaxpruner's sparse_trainers.py), so SET and
RigL take it as an option, methods.set.update_step and methods.rigl.update_step (default skip, jaxpruner's).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from lottery.core import seeds as seeding
from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.core.methods import METHODS, SCHEDULE_KEYS, SparseTraining, register
from lottery.sparsity.schedule import UpdateSchedule

Masks = dict[str, torch.Tensor]
UPDATE_STEPS = {  # what an update step does with that step's gradient
    "skip": "the update is one of the training's steps and applies no gradient (jaxpruner: skip_gradients=True, for "
            "SET and RigL alike)",
    "apply": "the step's gradient is applied, then the masks change (google-research/rigl's SET: "
             "SparseSETOptimizerBase.apply_gradients; GMP everywhere)",
    "extra": "the update is an iteration of its own: a batch whose gradient changes the masks and is not applied, "
             "after which the training still takes every one of its steps (google-research/rigl's RigL: "
             "SparseRigLOptimizerBase.apply_gradients, whose mask update does not advance the global step)",
}


def _rows(t: torch.Tensor, lanes: int) -> torch.Tensor:
    """A tensor of K lanes ([K, ...], or one run's [...] when lanes == 1 and unstacked) as K rows."""
    return t.reshape(lanes, -1)


def _keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool rows with the `k` highest scores of each row set (the same k in every lane: one top-k for all)."""
    out = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        out.scatter_(1, torch.topk(scores, k, dim=1, sorted=False).indices, True)
    return out


def _keep_top_active(scores: torch.Tensor, active: torch.Tensor, k: int) -> torch.Tensor:
    """Of each row's active entries, the `k` with the highest scores: the top-k runs over the active entries only
    (as many in every lane), which is most of an update's time saved once a network is sparse."""
    count = int(active[0].sum())  # one host sync per tensor and update, every ΔT steps
    columns = active.nonzero()[:, 1].view(active.shape[0], count)  # row-major: each lane's active columns
    out = torch.zeros_like(active)
    if k > 0:
        best = torch.topk(scores.gather(1, columns), min(k, count), dim=1, sorted=False).indices
        out.scatter_(1, columns.gather(1, best), True)
    return out


@dataclass
class Rows:
    """One masked tensor as a method sees it at an update: every field [K, n], one row per lane (K = 1 alone)."""

    name: str  # the parameter's name
    index: int  # its position among the updater's tensors (seeds its random draws)
    mask: torch.Tensor  # bool, the mask before this update
    weight: torch.Tensor  # the weights after this step's optimizer step (detached)
    grad: torch.Tensor | None  # this step's gradient of every weight, pruned ones too; None where none was computed
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # the optimizer's state of the weight, as rows
    density: float = 1.0  # the tensor's final density
    count: int = 0  # active weights per row at that density: round(n * density)

    def active(self, density: float) -> int:
        """Active weights per row at `density`."""
        return round(self.mask.shape[1] * density)


class MaskUpdater:
    """A method that changes masks while a run trains. Subclasses write `new_mask` (and, where their masks' densities
    change over time, `densities_after` and `segments`, for the cost).

    Args:
        schedule: when the masks change (the sparse.* keys).
        density: each tensor's final density, {parameter name: fraction kept}.
        seeds: one per lane (one for a run alone): lane k's random draws come from seeds[k].
        options: the method's own options (an instance of its record's options class), None when it has none.
    """

    update_step = "apply"  # what an update step does with the step's gradient: one of UPDATE_STEPS (GMP applies it)
    trains_pruned = False  # True: the optimizer trains a tensor of the method's own in each weight's place, pruned
    # entries too (lottery.sparsity.shadow): their gradients are never masked

    def __init__(self, schedule: UpdateSchedule, density: Mapping[str, float], seeds: Sequence[int] = (0,),
                 options=None):
        if bad := {n: d for n, d in density.items() if not 0.0 < d <= 1.0}:
            raise LotteryError(f"densities {bad} must be in (0, 1]: the fraction of each tensor's weights kept")
        self.schedule, self.density, self.seeds, self.options = schedule, dict(density), list(seeds), options
        self._grads: dict[int, torch.Tensor | None] | None = None  # an update step's gradients, kept aside
        self._extra_at = -1  # update_step "extra": the last update step whose own iteration was taken
        self._update_list: list[int] | None = None  # update_step "extra": the iterations of the updates
        # The rows of a lane network's [K, ...] tensors this updater acts on (their lanes' indices, one seed each);
        # None: every row. Set where lanes of other methods share the network (lottery.sparsity.lane_updaters).
        self.lane_rows: list[int] | None = None

    # -- the interface -------------------------------------------------------------------------------------
    def start(self, masks: MaskManager) -> None:
        """Once, before the first step (MaskCallback calls it at setup): nothing here; the methods that compute their
        first mask from the weights make it (lottery.sparsity.shadow). Called again, it changes nothing."""

    def done(self, step: int) -> bool:
        """No update from iteration `step` on."""
        return self.schedule.done(step)

    def is_update(self, step: int) -> bool:
        """Whether the masks change at iteration `step` (the schedule's update steps)."""
        return self.schedule.is_update(step)

    def update_steps(self, total_steps: int) -> list[int]:
        """The update steps of a training of `total_steps` iterations."""
        return [t for t in self.schedule.updates(total_steps) if self.is_update(t)]

    def withholds(self, step: int) -> bool:
        """Whether iteration `step` applies no gradient: an update step with update_step skip, or the own iteration
        of an extra update."""
        return self.is_update(step) and self.update_step != "apply" and self._extra_at != step

    def before_step(self, step: int, masks: MaskManager, optimizer: torch.optim.Optimizer) -> None:
        """Before `optimizer.step()` of iteration `step`: on a step that applies no gradient (`withholds`), keep the
        gradients aside and leave none to the optimizer, which then changes no parameter or state."""
        if self.withholds(step):
            self.keep_gradients(withhold_gradients(optimizer))

    def keep_gradients(self, grads: dict[int, torch.Tensor | None]) -> None:
        """The step's gradients (by parameter id), withheld from the optimizer, for `update` to read."""
        self._grads = grads

    @torch.no_grad()
    def update(self, step: int, masks: MaskManager, optimizer: torch.optim.Optimizer | None = None) -> None:
        """After `optimizer.step()` of iteration `step`: on an update step, the new masks; weights they grow start at
        zero with their optimizer state reset; then the masks are applied. With update_step extra, the update is
        made in the first of the two iterations of its step, the step itself taken in the second."""
        if not self.is_update(step) or self._extra_at == step:
            return
        if self.update_step == "extra":
            self._extra_at = step
        grads, self._grads = self._grads, None
        lanes = getattr(masks.model, "lanes", 1)
        own = lambda t: _rows(t, lanes) if self.lane_rows is None else _rows(t, lanes)[self.lane_rows]  # noqa: E731
        new = {}
        for index, (name, density) in enumerate(self.density.items()):
            param = masks.model.get_parameter(name)
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            grad = grads.get(id(param)) if grads is not None else param.grad
            mask = masks.masks[name]
            rows = Rows(name, index, own(mask), own(param.detach()), None if grad is None else own(grad.detach()),
                        {k: own(v) for k, v in state.items() if _like(v, param)}, density,
                        round(mask.numel() // lanes * density))
            new[name] = self._merge(mask, self.new_mask(step, rows), lanes)
        for name, mask in new.items():
            grown = mask & ~masks.masks[name]
            param = masks.model.get_parameter(name)
            param.masked_fill_(grown, 0.0)
            for value in (optimizer.state.get(param, {}) if optimizer is not None else {}).values():
                if _like(value, param):
                    value.masked_fill_(grown, 0)  # momentum, Adam's moments: regrown weights start afresh
        # Lanes of other methods beside these: their targets are not this method's (LaneUpdaters sets them).
        masks.replace_masks(new, self.densities_after(step) if self.lane_rows is None else None)

    def _merge(self, mask: torch.Tensor, rows: torch.Tensor, lanes: int) -> torch.Tensor:
        """The tensor's new mask from the new rows of this updater's lanes; the other lanes' rows as they were."""
        if self.lane_rows is None:
            return rows.view_as(mask)
        out = mask.clone()
        _rows(out, lanes)[self.lane_rows] = rows
        return out

    def new_mask(self, step: int, rows: Rows) -> torch.Tensor:
        """The new mask of one tensor, bool [K, n] like `rows.mask`: each row as a run of its own."""
        raise NotImplementedError

    # -- what the updates cost, known from the schedule ------------------------------------------------------
    def densities_after(self, step: int) -> dict[str, float]:
        """Each tensor's density after the update of iteration `step`."""
        return dict(self.density)

    def segments(self, start: int, end: int) -> list[tuple[int, dict[str, float]]]:
        """(first iteration, density per tensor) of each stretch of iterations start .. end - 1 with the same masks."""
        return [(start, dict(self.density))]

    def dense_gradient_steps(self, total_steps: int) -> int:
        """Iterations that need the gradient of every weight, pruned ones too (RigL's updates)."""
        return 0

    def extra_iterations(self, total_steps: int) -> int:
        """Iterations beyond the training's steps: one per update with update_step extra, none otherwise."""
        return len(self.update_steps(total_steps)) if self.update_step == "extra" else 0

    def extra_before(self, iteration: int) -> int:
        """Extra iterations taken before iteration `iteration` of a training counted as if there were none (start
        step + iterations run): the update of step u_j is taken at u_j + j, its step at u_j + j + 1, so the schedule
        step of an iteration is `iteration - extra_before(iteration)` (lottery.training.module.ClassificationModule)."""
        if self.update_step != "extra":
            return 0
        if self._update_list is None:  # asked at every step: the schedule's updates listed once
            self._update_list = [u + j for j, u in enumerate(self.update_steps(self.schedule.end_step + 1))]
        return bisect.bisect_left(self._update_list, iteration)

    def state_dict(self) -> dict:
        return {"extra_at": self._extra_at} if self.update_step == "extra" else {}

    def load_state_dict(self, state: dict) -> None:
        self._extra_at = state.get("extra_at", -1)

    # -- helpers --------------------------------------------------------------------------------------------
    def random(self, step: int, rows: Rows) -> torch.Tensor:
        """Uniform scores [K, n], row k drawn on the CPU from (seeds[k], step, tensor): the same on any device."""
        per_lane = rows.mask.shape[1]
        drawn = [torch.rand(per_lane, generator=torch.Generator().manual_seed(seeding.batch(s, step, rows.index)))
                 for s in self.seeds]
        return torch.stack(drawn).to(rows.mask.device)


def withhold_gradients(optimizer: torch.optim.Optimizer) -> dict[int, torch.Tensor | None]:
    """Take every parameter's gradient from `optimizer`'s parameters (by parameter id), leaving none: the optimizer
    then skips them all."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = {id(p): p.grad for p in params}
    for p in params:
        p.grad = None
    return grads


def _like(value, param: torch.Tensor) -> bool:
    """An optimizer state entry that holds one number per weight (momentum, Adam's moments; not a step count)."""
    return isinstance(value, torch.Tensor) and value.shape == param.shape


class Static(MaskUpdater):
    """The mask it is given, throughout: a random sparse network trained as it is."""

    def update(self, step: int, masks: MaskManager, optimizer=None) -> None:
        pass

    def done(self, step: int) -> bool:
        return True


class GMP(MaskUpdater):
    """Gradual magnitude pruning (Zhu & Gupta 2017): from dense, each tensor pruned by magnitude at every update
    towards its final density on the cubic schedule; pruned weights never return."""

    def densities_after(self, step: int) -> dict[str, float]:
        return {n: self.schedule.gmp_density(step, d) for n, d in self.density.items()}

    def segments(self, start: int, end: int) -> list[tuple[int, dict[str, float]]]:
        dense = [(start, {n: 1.0 for n in self.density})]
        return dense + [(u + 1, self.densities_after(u)) for u in self.schedule.updates(end) if u >= start]

    def new_mask(self, step: int, rows: Rows) -> torch.Tensor:
        keep = rows.active(self.schedule.gmp_density(step, rows.density))
        return _keep_top_active(rows.weight.abs().float(), rows.mask, keep)  # masks only shrink


@dataclass(frozen=True)
class DropGrowOptions:
    """The option of SET and RigL (methods.set.*, methods.rigl.*): what an update step does with its gradient."""

    update_step: str = "skip"  # skip (jaxpruner, the default) | apply (google-research/rigl's SET) | extra (its RigL)

    def __post_init__(self):
        if self.update_step not in UPDATE_STEPS:
            raise LotteryError(f"update_step={self.update_step!r} must be one of: " +
                               "; ".join(f"{k}: {v}" for k, v in UPDATE_STEPS.items()))


class SET(MaskUpdater):
    """Sparse Evolutionary Training (Mocanu et al. 2018): replace a fraction α_t of each tensor's active weights,
    the smallest by magnitude, with connections grown at random (any inactive one, just-dropped ones included).

    An update whose drop fraction is 0 changes no mask and is not made: the end step, where α's cosine reaches 0
    (the reference code has no update there; making one would only throw that step's gradient away). Options: an
    instance with `update_step` (DropGrowOptions; a subclass's options without it: skip)."""

    @property
    def update_step(self) -> str:
        return getattr(self.options, "update_step", "skip")

    def is_update(self, step: int) -> bool:
        return self.schedule.is_update(step) and self.schedule.drop_fraction_at(step) > 0

    def grow_scores(self, step: int, rows: Rows) -> torch.Tensor:
        """Where to grow: the highest scores among the weights not kept win."""
        return self.random(step, rows)

    def new_mask(self, step: int, rows: Rows) -> torch.Tensor:
        dropped = math.floor(rows.count * self.schedule.drop_fraction_at(step))
        kept = _keep_top_active(rows.weight.abs().float(), rows.mask, rows.count - dropped)
        grow = self.grow_scores(step, rows).masked_fill(kept, float("-inf"))
        return kept | _keep_top(grow, dropped)


class RigL(SET):
    """Rigging the Lottery (Evci et al. 2020): SET, but growing where the magnitude of the dense gradient is largest
    (the gradient of the update step: not applied with update_step skip or extra, applied first with apply)."""

    def grow_scores(self, step: int, rows: Rows) -> torch.Tensor:
        grad = rows.grad if rows.grad is not None else torch.zeros_like(rows.weight)
        return grad.abs().float()

    def dense_gradient_steps(self, total_steps: int) -> int:
        return len(self.update_steps(total_steps))


for _record in (
    SparseTraining(name="gmp", updater=GMP, starts_dense=True, label="gradual magnitude pruning",
                   summary="gradual magnitude pruning from dense to the level's density, cubic schedule (Zhu & Gupta 2017)"),
    SparseTraining(name="set", updater=SET, label="SET", options=DropGrowOptions,
                   reads=(*SCHEDULE_KEYS, "sparse.drop_fraction"),
                   summary="drop the smallest weights, regrow at random, every ΔT steps (Mocanu et al. 2018)"),
    SparseTraining(name="rigl", updater=RigL, label="RigL", options=DropGrowOptions,
                   reads=(*SCHEDULE_KEYS, "sparse.drop_fraction"),
                   summary="drop the smallest weights, regrow where the dense gradient is largest (Evci et al. 2020)"),
    SparseTraining(name="static", updater=Static, label="static sparse", reads=("sparse.distribution", "sparse.dense_layers"),
                   summary="a fixed random mask with the distribution's per-layer counts, trained as it is"),
):
    register(_record)

SPARSE_TRAINING = METHODS.of(SparseTraining)  # the records above and every one a package registers


@dataclass(frozen=True)
class MethodSpec:
    """A registered method as a run spec carries it: its name, each tensor's final density, its schedule, its seed
    and options. `build` makes the updater for one run, or for K lanes given their seeds: runs with equal
    `updater_key` share one updater as lanes; runs with equal `lane_key` share a network, each method on its lanes
    (lottery.sparsity.lane_updaters)."""

    method: str  # a name in SPARSE_TRAINING
    density: tuple[tuple[str, float], ...]  # (tensor, final density) pairs
    schedule: UpdateSchedule
    seed: int
    options: object = None  # the method's options (a frozen dataclass), None: its defaults

    @property
    def updater_key(self) -> tuple:
        return self.method, self.density, self.schedule, self.options

    @property
    def lane_key(self) -> tuple:
        """What every lane of a network with this method's lanes must share; () for a method that changes masks
        after the optimizer step only, which shares with any lane (fixed masks too).

        A method that withholds an update step's gradient (update_step skip) shares with any lane too: its lanes
        alone skip that step (lottery.lanes.optimizer.LaneOptimizer steps each lane on its own). One that takes
        iterations of its own (update_step extra) shares with lanes that take the same ones: a network's lanes take
        each iteration together. One that trains a shadow in the weights' place (lottery.sparsity.shadow) shares with
        its own method alone: it swaps every lane's parameters and gradients around the optimizer step (edge-popup
        freezes the others).
        """
        updater = self.build()
        if updater.trains_pruned:
            return ("shadow", *self.updater_key)
        if updater.update_step in ("apply", "skip"):
            return ()
        return updater.update_step, tuple(updater.update_steps(self.schedule.end_step + 1))

    def build(self, seeds: Sequence[int] | None = None) -> MaskUpdater:
        record = SPARSE_TRAINING.lookup(self.method)
        return record.call(record.updater, self.schedule, dict(self.density), [self.seed] if seeds is None else seeds,
                           options=self.options)
