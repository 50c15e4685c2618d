"""Several run specs trained together as lanes of one network (lottery.lanes), under the one Lightning
Trainer, writing for each run exactly the files it writes alone (lottery.training.single): curves, reports,
exports, stability and resume read them unchanged.

Runs share a lane group when they can share every step: the same architecture and prunable tensors,
the same start step, length and learning rate, the same dataset and batch size (each lane keeps its
own data order, masks, weights, optimizer state, BatchNorm statistics and rewind points), and methods that change
masks while they train which can share a network (lottery.sparsity.lane_updaters: each lane its own method). The
rest train one by one.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import torch

from lottery.core.files import is_writer
from lottery.core.macs import step_macs
from lottery.core.masks import MaskManager
from lottery.data.base import TensorDataModule
from lottery.lanes.count import choose_lanes, lane_bytes, lanes_that_fit
from lottery.lanes.net import LaneNet, stack_masks, unstack_masks
from lottery.sparsity.lane_updaters import lane_updaters
from lottery.training.callbacks import CaptureRewindPoints
from lottery.training.lane_data import LaneDataModule
from lottery.training.metrics import data_metrics
from lottery.training.module import ClassificationModule
from lottery.core.schema import OptimConfig
from lottery.training.results import (
    remove_resume_files,
    training_metrics,
    write_results,
)
from lottery.core.schema import TrainerConfig
from lottery.training.spec import RunSpec
from lottery.training.tracking import Tracking, finish, replay
from lottery.training.trainer import fit_and_test


def lane_key(spec: RunSpec) -> tuple | None:
    """What runs must share to train as lanes; None: this run trains alone (data other than tensors in memory).

    Rewind points to capture are no constraint: each lane saves its own, at its own steps. Nor are methods that
    change the masks while they train, as far as they can share a network (their `lane_key`; None: never, as the
    early-bird watcher, which prunes a copy of one model): each updates its own lanes' masks.
    """
    updates = () if spec.updater is None else spec.updater.lane_key
    if not isinstance(spec.data, TensorDataModule) or updates is None:
        return None
    d, p = spec.data, spec.plan
    shapes = tuple((k, tuple(v.shape), v.dtype) for k, v in spec.model.state_dict().items())
    return (type(spec.model), shapes, tuple(spec.masks.names), p.start_step, p.steps, p.constant_lr,
            type(d), d.batch_size, d.val_size, d.split_seed, d.augment, updates, spec.penalty)


def _device(settings) -> str:
    gpu = settings.accelerator in ("gpu", "cuda") or (settings.accelerator == "auto" and torch.cuda.is_available())
    return "cuda" if gpu else "cpu"


def lane_memory(settings) -> int:
    """Bytes the lanes of a group may take on the device.

    One GPU: 90% of its free memory now. Several GPUs or nodes (DDP): every process groups the runs on its
    own before they meet, so the count must not depend on the moment: 80% of the smallest GPU's total memory.
    """
    if torch.cuda.device_count() > 1 or settings.num_nodes > 1:
        return int(0.8 * min(torch.cuda.get_device_properties(d).total_memory for d in range(torch.cuda.device_count())))
    return int(0.9 * torch.cuda.mem_get_info()[0])


def lane_groups(specs: list[RunSpec], settings: TrainerConfig, log: Callable = print) -> list[list[int]]:
    """Indices of `specs` in training order: groups of runs that train as lanes (trainer.lanes), the rest alone."""
    keyed: dict[tuple, list[int]] = {}
    groups = []
    for i, spec in enumerate(specs):
        key = lane_key(spec)
        if key is None or settings.lanes == 1:
            groups.append([i])
        else:
            keyed.setdefault(key, []).append(i)
    device = _device(settings)
    for members in keyed.values():
        first = specs[members[0]]
        memory, free = None, None
        if device == "cuda":  # lanes must fit beside each other in the device's memory
            memory = lane_bytes(first.model, first.data.input_shape, first.data.batch_size)
            free = lane_memory(settings)
        if settings.lanes == "auto":
            macs = step_macs(first.model, first.data.input_shape, first.data.batch_size)
            count, why = choose_lanes(len(members), device, macs, lane_bytes=memory, free_bytes=free)
        else:
            count = lanes_that_fit(min(len(members), int(settings.lanes)), memory, free)
            why = f"{count} lanes (trainer.lanes={settings.lanes})"
        if len(members) > 1:
            log(f"{len(members)} runs like {first.label!r}: {why}")
        groups += [members[j:j + count] for j in range(0, len(members), count)]
    return sorted(groups)


_last_net: tuple[tuple, LaneNet] | None = None


def _lane_net(specs: list[RunSpec]) -> LaneNet:
    """The runs' models as lanes; the previous group's network, reloaded, when it has the same key and lane count.

    Each packed network is a new fx class, which torch.compile would compile again: reusing the last one
    lets a compiled forward serve every level (and skips tracing).
    """
    global _last_net
    key = (lane_key(specs[0]), len(specs))
    if _last_net is not None and _last_net[0] == key:
        net = _last_net[1]
        for k, spec in enumerate(specs):
            net.load_lane(k, spec.model.state_dict())
        return net
    net = LaneNet.from_models([s.model for s in specs])
    _last_net = (key, net)
    return net


def train_lanes(specs: list[RunSpec], settings: TrainerConfig, optim: OptimConfig, tracking: Tracking | None = None) -> list[dict]:
    """Train `specs` (one lane group, see lane_key) as lanes; each run's files as it writes them alone."""
    first, plan = specs[0], specs[0].plan
    net = _lane_net(specs)
    masks = MaskManager(net, include=first.masks.names)
    masks.set_masks(stack_masks([s.masks.masks for s in specs]))
    data = LaneDataModule(first.data, [s.data.seed for s in specs])
    module = ClassificationModule(net, first.data.num_classes, optim, start_step=plan.start_step, constant_lr=plan.constant_lr,
                        seed=first.seed, compile=settings.compile, metrics=data_metrics(first.data),
                        gradient_clip=settings.gradient_clip_val, penalty=first.penalty)
    # One resume checkpoint per group, named after its members: another grouping never resumes from it.
    members = hashlib.sha1("\n".join(str(s.out.path) for s in specs).encode()).hexdigest()[:12]
    checkpoint = first.out.lanes_checkpoint(members)
    capture = [CaptureRewindPoints(dict(s.capture), state=lambda m, k=k: m.model.lane_state_dict(k))
               for k, s in enumerate(specs) if s.capture]
    # Each lane logs to its own logger run while it trains, as it would alone (W&B: sent when the group ends).
    live = tracking is not None and tracking.concurrent and is_writer()  # rank 0 logs, as Lightning's loggers do
    loggers = [tracking.logger(s.out.path) for s in specs] if live else []
    module.lane_loggers = loggers if all(loggers) else []
    # One updater per method (each lane with its own seed): its lanes' masks change in one operation.
    updater, lane_updater = lane_updaters([s.updater for s in specs])
    trainer, _ = fit_and_test(module, data, settings, plan.steps, masks, checkpoint,
                              f"{first.label} (+{len(specs) - 1} runs as lanes)", capture, updater=updater)
    results = []
    for k, spec in enumerate(specs):
        spec.model.load_state_dict(net.lane_state_dict(k))
        if lane_updater[k] is not None:  # the lane's masks, as the updates left them
            spec.masks.set_masks(unstack_masks(masks.masks, k))
        metrics = training_metrics(module.histories[k], module.results["test"][k], spec, lane_updater[k])
        if trainer.is_global_zero:
            write_results(spec, metrics, remove_checkpoints=False)
            if module.lane_loggers:
                finish(module.lane_loggers[k], metrics, plan.steps)
            elif tracking is not None:
                replay(tracking, spec.out.path, metrics)
        results.append(metrics)
    if trainer.is_global_zero:  # the group's checkpoint lives in the first run's checkpoints folder
        for spec in specs:
            remove_resume_files(spec)
    trainer.strategy.barrier("lanes written")  # other ranks read these files next
    return results
