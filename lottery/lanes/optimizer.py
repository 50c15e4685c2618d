"""The K runs' optimizers of a lane network as one: each lane's slice of every stacked parameter is a tensor of its own
for the optimizer, so each lane keeps its own state, takes or skips each step on its own, and is updated bit for bit
as its run alone is.

One torch optimizer over the stacked parameters [K, ...] is already K optimizers for the elementwise rules (SGD,
Adam, AdamW), but for two things:
- the step count is one per tensor: a lane cannot skip a step its neighbours take (Adam's bias correction would count
  it), as SET and RigL do at their update steps (methods.<m>.update_step=skip);
- a fused kernel over a stacked tensor rounds some of a lane's elements apart from the same kernel over the lane alone
  (its vector loop and scalar tail fall elsewhere): ~1e-8, enough to change a validation image now and then.

`LaneOptimizer` hands the optimizer each lane's slice as a view (no copy): one kernel call still updates every lane.

    optimizer = LaneOptimizer(net.parameters(), net.lanes, lambda views: torch.optim.Adam(views, lr=1e-3, fused=True))
    loss.backward()
    optimizer.skip_lanes([2])      # this step, lane 2 applies no gradient: no step, no state change
    optimizer.step()

Its `param_groups` hold the stacked parameters (a learning rate written there is the lanes'); `state[p]` holds each
per-weight state entry (momentum, Adam's moments) as one [K, ...] tensor whose slices the optimizer updates in place,
so code that resets a lane's regrown weights' moments writes them where the optimizer reads them.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from lottery.core.errors import LotteryError


def _settings(group: dict) -> dict:
    """A parameter group's settings (lr, betas, ...) without its parameters."""
    return {k: v for k, v in group.items() if k != "params"}


class LaneOptimizer(torch.optim.Optimizer):
    """`make(views)` builds the optimizer of one run over the lanes' slices (one parameter group): K runs' optimizers
    in one object, their state dicts as one."""

    def __init__(self, params: Iterable[torch.Tensor], lanes: int,
                 make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]):
        params = list(params)
        if bad := [tuple(p.shape) for p in params if p.dim() == 0 or p.shape[0] != lanes]:
            raise LotteryError(f"LaneOptimizer takes parameters stacked over {lanes} lanes ([{lanes}, ...]); got {bad}")
        self.lanes = lanes
        self.views = [p.detach().unbind(0) for p in params]  # lane k of parameter i: views[i][k], its storage
        self.inner = make([v for views in self.views for v in views])
        if len(self.inner.param_groups) != 1:
            raise LotteryError("LaneOptimizer's `make` must build an optimizer with one parameter group")
        super().__init__(params, _settings(self.inner.defaults))
        self._skip: set[int] = set()
        self._stacked_lanes: set[tuple[torch.Tensor, int]] = set()  # (parameter, lane) whose state `state` holds

    def skip_lanes(self, lanes: Iterable[int]) -> None:
        """At the next step, these lanes apply no gradient: their weights and state stay as they are."""
        self._skip.update(lanes)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:  # Lightning's closure runs the hooks before the step (masks, mask updaters)
            with torch.enable_grad():
                loss = closure()
        group, inner = self.param_groups[0], self.inner.param_groups[0]
        inner.update(_settings(group))  # lr and the rest, as set on the lanes
        skip, self._skip = self._skip, set()
        for p, views in zip(group["params"], self.views):
            if views[0].data_ptr() != p.data_ptr():
                raise LotteryError("a lane network's parameter was given new storage after its optimizer was built "
                                   "(e.g. by .to() or p.data = ...); move the network before making the optimizer")
            grads = None if p.grad is None else p.grad.unbind(0)
            for k, view in enumerate(views):
                view.grad = None if grads is None or k in skip else grads[k]
        self.inner.step()
        for views in self.views:  # the gradients belong to the stacked parameters (zero_grad frees them there)
            for view in views:
                view.grad = None
        self._stack_state()
        return loss

    def _stack_state(self) -> None:
        """`state[p]`: each per-weight state entry of the lanes as one [K, ...] tensor whose slices are the lanes' own
        entries. A torch optimizer creates a lane's state at the lane's first step; until then its slice is zeros,
        which nothing reads (a reset of it changes nothing: the lane starts afresh, as its run alone would)."""
        if len(self._stacked_lanes) == len(self.views) * self.lanes:
            return
        for p, views in zip(self.param_groups[0]["params"], self.views):
            stacked = self.state[p]
            for k, view in enumerate(views):
                entry = self.inner.state.get(view)
                if not entry or (p, k) in self._stacked_lanes:
                    continue
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor) and value.shape == view.shape:
                        if key not in stacked:
                            stacked[key] = value.new_zeros((self.lanes, *value.shape))
                        stacked[key][k].copy_(value)
                        entry[key] = stacked[key][k]
                self._stacked_lanes.add((p, k))

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Also a state dict of one optimizer over the stacked parameters (an older lottery's lane checkpoint):
        its [K, ...] entries are split over the lanes."""
        if self._stacked(state_dict):
            state_dict = self._split(state_dict)
        self.inner.load_state_dict(state_dict)
        self.param_groups[0].update(_settings(self.inner.param_groups[0]))
        self.state.clear()
        self._stacked_lanes.clear()
        self._stack_state()

    def _stacked(self, state_dict: dict) -> bool:
        """Whether `state_dict` is one optimizer's over the stacked parameters: their count, tensors of their shape."""
        params = self.param_groups[0]["params"]
        if len(state_dict["param_groups"][0]["params"]) != len(params):
            return False
        if self.lanes > 1:
            return True
        shapes = {i: p.shape for i, p in enumerate(params)}  # one lane: the stacked tensors have a leading 1
        return any(isinstance(v, torch.Tensor) and v.shape == shapes.get(i) for i, entry in state_dict["state"].items()
                   for v in entry.values())

    def _split(self, state_dict: dict) -> dict:
        state = {}
        for i, entry in state_dict["state"].items():
            for k in range(self.lanes):
                state[i * self.lanes + k] = {
                    key: (value[k].clone() if isinstance(value, torch.Tensor) and value.dim() > 0 else value)
                    for key, value in entry.items()}
        group = dict(state_dict["param_groups"][0])
        group["params"] = list(range(len(group["params"]) * self.lanes))
        return {"state": state, "param_groups": [group]}
