"""Several watchers of one training (lottery.sparsity.earlybird is one): the dense level trains once for every branch
that watches it, each watcher seeing every step as if it were alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class Watchers:
    """The updater interface over several watchers (they change no mask of the training they watch)."""

    def __init__(self, watchers: Sequence):
        self.watchers = list(watchers)

    def done(self, step: int) -> bool:
        return all(w.done(step) for w in self.watchers)

    def before_step(self, step: int, masks, optimizer) -> None:
        for w in self.watchers:
            w.before_step(step, masks, optimizer)

    def update(self, step: int, masks, optimizer=None) -> None:
        for w in self.watchers:
            w.update(step, masks, optimizer)

    def watched(self) -> dict:
        return {name: report for w in self.watchers for name, report in w.watched().items()}

    def segments(self, start: int, end: int) -> None:
        return None

    def dense_gradient_steps(self, total_steps: int) -> int:
        return 0

    def state_dict(self) -> dict:
        return {"watchers": [w.state_dict() for w in self.watchers]}

    def load_state_dict(self, state: dict) -> None:
        for w, s in zip(self.watchers, state.get("watchers", [])):
            w.load_state_dict(s)


@dataclass(frozen=True)
class WatchersSpec:
    """Several watcher specs as one (each with `build(seeds)`); trained alone, as each of them is."""

    specs: tuple
    lane_key = None

    def build(self, seeds=None) -> Watchers:
        return Watchers([s.build(seeds) for s in self.specs])


def watching(specs: Sequence):
    """The spec a training carries for `specs`: None, the one spec, or all of them together."""
    specs = tuple(specs)
    return None if not specs else specs[0] if len(specs) == 1 else WatchersSpec(specs)
