"""Each lane its own method, in one network: a level's ticket, its controls and its sparse-training methods train as
lanes of one LaneNet (lottery.lanes), every method updating the rows of its own lanes in the [K, ...] masks.

Which lanes can share a network is each method's `lane_key` (lottery.sparsity.updaters.MethodSpec): methods that
change masks after the optimizer step (GMP, static, SET and RigL with update_step apply) share with any lane, fixed
masks too, and so do those that withhold an update step's gradient (update_step skip): their lanes alone skip the
step (an optimizer that steps each lane on its own, lottery.lanes.optimizer); those that take iterations of their own
(update_step extra) share only with lanes that take the same ones, since a network's lanes step together; those that
train a shadow in the weights' place (edge-popup, SR-STE) only with their own method.
"""
from __future__ import annotations

from typing import Sequence

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager, layer_density
from lottery.sparsity.updaters import MaskUpdater, withhold_gradients


class LaneUpdaters:
    """The updater interface over the methods of one network's lanes: each member acts on its lanes' rows alone
    (`MaskUpdater.lane_rows`); a lane of no member keeps its masks. `of_lane[k]`: lane k's updater (None: none)."""

    def __init__(self, members: Sequence[tuple[list[int], MaskUpdater]], lanes: int):
        self.members = [updater for _, updater in members]
        self.of_lane: list[MaskUpdater | None] = [None] * lanes
        for rows, updater in members:
            updater.lane_rows = list(rows)
            for k in rows:
                self.of_lane[k] = updater

    def start(self, masks: MaskManager) -> None:
        for updater in self.members:
            updater.start(masks)

    def done(self, step: int) -> bool:
        return all(updater.done(step) for updater in self.members)

    def before_step(self, step: int, masks: MaskManager, optimizer) -> None:
        withholding = [u for u in self.members if not u.done(step) and u.withholds(step)]
        if not withholding:
            return
        rows = sorted(k for u in withholding for k in u.lane_rows)
        if rows == list(range(len(self.of_lane))):  # every lane withholds this step
            grads = withhold_gradients(optimizer)
        elif hasattr(optimizer, "skip_lanes"):  # only these lanes skip the step (lottery.lanes.optimizer.LaneOptimizer)
            optimizer.skip_lanes(rows)
            # A copy: what runs after this hook (MaskCallback.mask_gradients under clipping) must not reach them.
            grads = {id(p): None if p.grad is None else p.grad.clone()
                     for group in optimizer.param_groups for p in group["params"]}
        else:
            raise LotteryError(f"lanes {rows} withhold the gradient of step {step} and the others apply it: that takes "
                               "an optimizer that steps each lane on its own, lottery.lanes.optimizer.LaneOptimizer")
        for updater in withholding:
            updater.keep_gradients(grads)

    def update(self, step: int, masks: MaskManager, optimizer=None) -> None:
        before = masks.masks
        for updater in self.members:
            if not updater.done(step):
                updater.update(step, masks, optimizer)
        if masks.masks is not before:  # each method keeps its lanes' exact counts: the targets are the masks' own
            masks.density = layer_density(masks.masks)

    def extra_iterations(self, total_steps: int) -> int:
        return max(updater.extra_iterations(total_steps) for updater in self.members)

    def extra_before(self, iteration: int) -> int:
        return self.members[0].extra_before(iteration)  # every member's extra iterations are the same (lane_key)

    def state_dict(self) -> dict:
        return {"members": [updater.state_dict() for updater in self.members]}

    def load_state_dict(self, state: dict) -> None:
        for updater, member in zip(self.members, state.get("members", [])):
            updater.load_state_dict(member)


def lane_updaters(specs: Sequence) -> tuple[object | None, list]:
    """The updater of a network whose lanes carry `specs` (MethodSpec each, None: fixed masks) and each lane's own
    (for its cost): lanes with equal `updater_key` share one updater, built with their seeds; a method on every lane
    is that method's updater itself."""
    rows: dict[tuple, list[int]] = {}
    for k, spec in enumerate(specs):
        if spec is not None:
            rows.setdefault(spec.updater_key, []).append(k)
    members = [(lanes, specs[lanes[0]].build([specs[k].seed for k in lanes])) for lanes in rows.values()]
    if not members:
        return None, [None] * len(specs)
    if len(members) == 1 and len(members[0][0]) == len(specs):
        return members[0][1], [members[0][1]] * len(specs)
    updaters = LaneUpdaters(members, len(specs))
    return updaters, updaters.of_lane
