"""A level's independent trainings, dispatched: finished ones read, runs that can share every step trained as
lanes of one network (lottery.training.lane_group), the others alone (lottery.training.single)."""
from __future__ import annotations

from lottery.core.files import read_json
from lottery.training.lane_group import lane_groups, train_lanes
from lottery.core.schema import OptimConfig
from lottery.core.schema import TrainerConfig
from lottery.training.single import train
from lottery.training.spec import RunSpec
from lottery.training.tracking import Tracking


def train_all(specs: list[RunSpec], settings: TrainerConfig, optim: OptimConfig, tracking: Tracking | None = None,
              detail=None) -> list[dict]:
    """Independent trainings (a level's tickets and branches, of one or several seeds); results in order.

    Finished ones are read; with trainer.lanes other than 1, runs that can share every step train together
    as lanes of one network, the others one by one. detail: where the lines on how runs were grouped go (None: none).
    """
    results = {i: read_json(s.out.metrics) for i, s in enumerate(specs) if s.out.done}
    todo = [i for i in range(len(specs)) if i not in results]
    if settings.lanes == 1:
        groups = [[i] for i in todo]
    else:
        groups = [[todo[j] for j in g] for g in lane_groups([specs[i] for i in todo], settings, detail or (lambda _: None))]
    for group in groups:
        if len(group) == 1:
            results[group[0]] = train(specs[group[0]], settings, optim, tracking)
        else:
            results.update(zip(group, train_lanes([specs[i] for i in group], settings, optim, tracking)))
    return [results[i] for i in range(len(specs))]
