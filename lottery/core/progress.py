"""Time spent and time left, in the words the log uses ("1 min 9 s"): a training's progress lines, each level's line
and the end of a run say them (lottery.training.callbacks.LevelProgress, lottery.imp.runner.run_levels)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


def duration(seconds: float) -> str:
    """`42 s`, `3 min 5 s`, `2 h 10 min`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if m else f"{hours} h"


@dataclass
class Estimate:
    """How long a run has taken and about how long it has left: the trainings done so far, at their mean time,
    priced against those still to come (trainings read from disk cost nothing, and count as none)."""

    total: int  # trainings the run holds
    clock: callable = time.monotonic
    start: float = field(default=0.0)
    trained: int = 0  # trained in this process
    skipped: int = 0  # read from disk

    def __post_init__(self):
        self.start = self.clock()

    def done(self, trained: int, skipped: int = 0) -> None:
        self.trained, self.skipped = self.trained + trained, self.skipped + skipped

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float | None:
        """Seconds still to go, or None before anything was trained."""
        if not self.trained:
            return None
        return self.elapsed() / self.trained * (self.total - self.trained - self.skipped)

    def __str__(self) -> str:
        left = self.left()
        return duration(self.elapsed()) + ("" if left is None or left <= 0 else f", about {duration(left)} left")
