"""Methods that change masks while a run trains: one small interface (jaxpruner's updaters are the model), one class
per method, registered by name.

    gmp     gradual magnitude pruning from dense, cubic schedule (Zhu & Gupta 2017; Gale et al. 2019)
    set     drop the smallest-magnitude active weights, regrow at random (Mocanu et al. 2018)
    rigl    drop the smallest, regrow where the dense gradient is largest (Evci et al. 2020)
    static  a fixed mask, trained as it is (the baseline the sparse-training papers compare against)

In a plain PyTorch loop (Lightning: `MaskCallback(masks, updater=...)` makes the same calls):

    updater = UPDATERS["rigl"](UpdateSchedule(end_step=750), density={name: 0.1, ...})
    loss.backward()
    updater.before_step(step, masks, optimizer)   # SET/RigL: an update step applies no gradient, as the papers' code
    optimizer.step()
    updater.update(step, masks, optimizer)        # after the step, the gradients still there; masks.apply() inside

Every update keeps each tensor's exact count of active weights (`round(numel * density)`), zeroes the weights it
prunes and starts the ones it grows at zero with their optimizer state (momentum, Adam's moments) reset. Draws are
seeded from (seed, step), so resumed runs, lanes and DDP processes make the same masks. A MaskManager over K lanes
(`model.lanes`, a LaneNet) holds [K, ...] masks: each lane is updated as its run alone, all lanes in one top-k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from lottery.core import seeds as seeding
from lottery.core.errors import LotteryError, Registry
from lottery.core.masks import MaskManager
from lottery.sparsity.schedule import UpdateSchedule

Masks = dict[str, torch.Tensor]


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


class MaskUpdater:
    """A method that changes masks while a run trains. Subclasses write `new_masks`."""

    skips_gradient = False  # True: an update step applies no gradient to any parameter (SET, RigL)

    def __init__(self, schedule: UpdateSchedule, density: Mapping[str, float], seeds: Sequence[int] = (0,)):
        if bad := {n: d for n, d in density.items() if not 0.0 < d <= 1.0}:
            raise LotteryError(f"densities {bad} must be in (0, 1]: the fraction of each tensor's weights kept")
        self.schedule, self.density, self.seeds = schedule, dict(density), list(seeds)
        self._grads: dict[int, torch.Tensor | None] | None = None  # an update step's gradients, kept aside

    # -- the interface -------------------------------------------------------------------------------------
    def done(self, step: int) -> bool:
        """No update from iteration `step` on."""
        return self.schedule.done(step)

    def before_step(self, step: int, masks: MaskManager, optimizer: torch.optim.Optimizer) -> None:
        """Before `optimizer.step()` of iteration `step`: on an update step of a method that skips the gradient,
        keep the gradients aside and leave none to the optimizer, which then changes no parameter or state."""
        if self.skips_gradient and self.schedule.is_update(step):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self._grads = {id(p): p.grad for p in params}
            for p in params:
                p.grad = None

    @torch.no_grad()
    def update(self, step: int, masks: MaskManager, optimizer: torch.optim.Optimizer | None = None) -> None:
        """After `optimizer.step()` of iteration `step`: on an update step, the new masks; weights they grow start at
        zero with their optimizer state reset; then the masks are applied."""
        if not self.schedule.is_update(step):
            return
        grads, self._grads = self._grads, None
        lanes = getattr(masks.model, "lanes", 1)
        new = self.new_masks(step, masks, lanes, grads)
        for name, mask in new.items():
            grown = mask & ~masks.masks[name]
            param = masks.model.get_parameter(name)
            param.masked_fill_(grown, 0.0)
            for value in (optimizer.state.get(param, {}) if optimizer is not None else {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    value.masked_fill_(grown, 0)  # momentum, Adam's moments: regrown weights start afresh
        masks.replace_masks(new, self.densities_after(step))

    def new_masks(self, step: int, masks: MaskManager, lanes: int, grads) -> Masks:
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

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # -- helpers --------------------------------------------------------------------------------------------
    def _count(self, masks: MaskManager, name: str, lanes: int, density: float) -> int:
        per_lane = masks.masks[name].numel() // lanes
        return round(per_lane * density)

    def _random(self, step: int, index: int, per_lane: int, device) -> torch.Tensor:
        """Uniform scores per lane, drawn on the CPU from (lane seed, step, tensor): the same on any device."""
        rows = [torch.rand(per_lane, generator=torch.Generator().manual_seed(seeding.batch(s, step, index)))
                for s in self.seeds]
        return torch.stack(rows).to(device)


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

    def new_masks(self, step: int, masks: MaskManager, lanes: int, grads) -> Masks:
        new = {}
        for name, density in self.density.items():
            mask = masks.masks[name]
            scores = _rows(masks.model.get_parameter(name).detach().abs(), lanes).float()
            keep = self._count(masks, name, lanes, self.schedule.gmp_density(step, density))
            new[name] = _keep_top_active(scores, _rows(mask, lanes), keep).view_as(mask)  # masks only shrink
        return new


class SET(MaskUpdater):
    """Sparse Evolutionary Training (Mocanu et al. 2018): replace a fraction α_t of each tensor's active weights,
    the smallest by magnitude, with connections grown at random (any inactive one, just-dropped ones included)."""

    skips_gradient = True

    def grow_scores(self, step: int, index: int, param: torch.Tensor, lanes: int, grads) -> torch.Tensor:
        return self._random(step, index, param.numel() // lanes, param.device)

    def new_masks(self, step: int, masks: MaskManager, lanes: int, grads) -> Masks:
        new, fraction = {}, self.schedule.drop_fraction_at(step)
        for index, (name, density) in enumerate(self.density.items()):
            mask, param = masks.masks[name], masks.model.get_parameter(name)
            active = self._count(masks, name, lanes, density)
            dropped = math.floor(active * fraction)
            kept = _keep_top_active(_rows(param.detach().abs(), lanes).float(), _rows(mask, lanes), active - dropped)
            grow = self.grow_scores(step, index, param, lanes, grads).masked_fill(kept, float("-inf"))
            new[name] = (kept | _keep_top(grow, dropped)).view_as(mask)
        return new


class RigL(SET):
    """Rigging the Lottery (Evci et al. 2020): SET, but growing where the magnitude of the dense gradient is largest
    (the gradient of the update step, which is then not applied, as in the reference implementation)."""

    def grow_scores(self, step: int, index: int, param: torch.Tensor, lanes: int, grads) -> torch.Tensor:
        grad = grads.get(id(param)) if grads is not None else param.grad
        if grad is None:
            grad = torch.zeros_like(param)
        return _rows(grad.detach().abs(), lanes).float()

    def dense_gradient_steps(self, total_steps: int) -> int:
        return len(self.schedule.updates(total_steps))


UPDATERS: Registry[type[MaskUpdater]] = Registry("sparse-training method", {
    "gmp": GMP, "set": SET, "rigl": RigL, "static": Static,
})


@dataclass(frozen=True)
class MethodSpec:
    """A registered method as a run spec carries it: its name, each tensor's final density, its schedule, its seed.
    `build` makes the updater for one run, or for K lanes given their seeds; runs with equal `lane_key` can share
    every update as lanes."""

    method: str  # a name in UPDATERS
    density: tuple[tuple[str, float], ...]  # (tensor, final density) pairs
    schedule: UpdateSchedule
    seed: int

    @property
    def lane_key(self) -> tuple:
        return self.method, self.density, self.schedule

    def build(self, seeds: Sequence[int] | None = None) -> MaskUpdater:
        return UPDATERS.lookup(self.method)(self.schedule, dict(self.density), [self.seed] if seeds is None else seeds)
