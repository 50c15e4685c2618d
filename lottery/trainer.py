"""Train one run spec with a real Lightning Trainer, resumably: the only place a Trainer is built
(`fit_and_test`, which lane groups use too).

A `RunSpec` describes one training completely; IMP levels, every branch and stability copy build one. The trainer
knows nothing of levels or branches; lanes (lottery.lane_trainer) consume the same specs, so that "one by one" and
"together" give the same files.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator
from torch import nn

from lottery.callback import (AtomicCheckpointIO, CaptureRewindPoints, EpochCheckpoint, LevelProgress, MaskCallback,
                              Resumed)
from lottery.files import read_json, save_tensors, write_json
from lottery.layout import TrainingDir
from lottery.masks import MaskManager, density, layer_density
from lottery.module import ClassificationModule, ScheduledModule
from lottery.rewind import LevelPlan
from lottery.schedule import Optim
from lottery.tracking import Tracking, log_level

if TYPE_CHECKING:  # the fields read here; the type lives with the other hyperparameters
    from lottery.hparams import TrainerConfig


@dataclass(frozen=True)
class RunSpec:
    """Everything one training needs.

    model: the network with its starting weights in place (rewind point, trained or fresh ones).
    plan: start step in the schedule, number of steps, and a constant learning rate or the schedule.
    data: the LightningDataModule; its own seed sets the data order.
    seed: the training's random draws (reseeded per epoch from it: lottery.seeds.epoch).
    capture: {schedule step: file} of weights to save when training reaches that step (rewind points).
    """

    label: str  # in logs: "level 3", "level 3 reinit"
    model: nn.Module
    masks: MaskManager
    plan: LevelPlan
    data: pl.LightningDataModule  # with num_classes; its own seed sets the data order
    seed: int
    out: TrainingDir
    capture: Mapping[int, Path] = field(default_factory=dict)


@contextlib.contextmanager
def runtime_cuda_probe(on_cpu: bool):
    """On a machine without GPUs, let torch ask the CUDA runtime (cached) rather than NVML if CUDA is there.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so that a probe does not poison forks);
    torch's optimizers then probe NVML (a dlopen) at every `step()` while CUDA is uninitialised, a
    noticeable share of a small model's step on a CPU run with a CUDA build of torch (README, Speed).
    With no GPU there is no fork to poison. Machines with GPUs, and CPU-only builds of torch, are left as they are.
    """
    name = "PYTORCH_NVML_BASED_CUDA_CHECK"
    if not (on_cpu and torch.backends.cuda.is_built() and name in os.environ and torch.cuda.device_count() == 0):
        yield
        return
    value = os.environ.pop(name)
    try:
        yield
    finally:
        os.environ[name] = value


@contextlib.contextmanager
def propagate_interrupt(trainer):
    """Raise KeyboardInterrupt after a Lightning call that was interrupted by Ctrl-C.

    Lightning catches KeyboardInterrupt inside `fit`/`validate`/`test`, ignores SIGINT from then on, and
    either calls `sys.exit(1)` (2.5 and later) or returns with `trainer.interrupted` set (earlier), which
    would start the next level. Both become KeyboardInterrupt again, so that the `lottery` command prints
    how to resume and exits with 130; the SIGINT handler is restored.
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1) while handling Ctrl-C
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and handler is not None and signal.getsignal(signal.SIGINT) != handler:
            signal.signal(signal.SIGINT, handler)
    if trainer.interrupted:  # older Lightning: the call returned as if it had finished
        raise KeyboardInterrupt


def fit_and_test(module: ScheduledModule, data: pl.LightningDataModule, settings: "TrainerConfig", steps: int,
                 masks: MaskManager, checkpoint: Path, label: str, capture: list[pl.Callback] = (), logger=False
                 ) -> tuple[pl.Trainer, list[dict]]:
    """Train `module` for `steps` optimizer steps under one Lightning Trainer, validating every epoch and
    resuming from `checkpoint` (written atomically at each epoch end) when it exists; then test.

    Used by `train` and by lane groups (lottery.lane_trainer). Returns the Trainer and `trainer.test`'s result.
    """
    callbacks = [MaskCallback(masks), EpochCheckpoint(checkpoint), Resumed(label), *capture]
    if settings.progress:
        callbacks.append(LevelProgress(label, settings.progress))
    trainer = pl.Trainer(
        max_steps=steps, max_epochs=-1, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        accelerator=settings.accelerator, devices=settings.devices, num_nodes=settings.num_nodes,
        strategy=settings.strategy, precision=settings.precision, logger=logger, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        default_root_dir=str(checkpoint.parent), check_val_every_n_epoch=1,
    )
    with runtime_cuda_probe(on_cpu=isinstance(trainer.accelerator, CPUAccelerator)), propagate_interrupt(trainer):
        trainer.fit(module, datamodule=data, ckpt_path=str(checkpoint) if checkpoint.exists() else None)
        # Lightning skips validation when max_steps ends an epoch early: then validate the final weights.
        if module.validated_step != module.schedule_step:
            trainer.validate(module, datamodule=data, verbose=False)
        return trainer, trainer.test(module, datamodule=data, verbose=False)


def train(spec: RunSpec, settings: "TrainerConfig", optim: Optim, tracking: Tracking | None = None) -> dict:
    """Train `spec` and write its results to `spec.out`; a finished training is read, not retrained.

    settings: where and how the Trainer runs (accelerator, devices, num_nodes, strategy, precision,
    compile, progress). tracking: the loggers its metrics also go to (none without it). Returns the
    training's metrics (those of metrics.json).
    """
    out = spec.out
    if out.done:
        return read_json(out.metrics)
    module = ClassificationModule(spec.model, spec.data.num_classes, optim, start_step=spec.plan.start_step,
                                  constant_lr=spec.plan.constant_lr, seed=spec.seed, compile=settings.compile)
    capture = [CaptureRewindPoints(dict(spec.capture))] if spec.capture else []
    trainer, test = fit_and_test(module, spec.data, settings, spec.plan.steps, spec.masks, out.checkpoint, spec.label,
                                 capture, logger=tracking.logger(out.path) if tracking else False)
    metrics = summary(module.history, test[0], spec)
    if trainer.is_global_zero:
        save_tensors(out.final, spec.model.state_dict())
        write_json(out.metrics, metrics)  # written last: its presence marks the training complete
        shutil.rmtree(out.checkpoints, ignore_errors=True)  # final.safetensors holds the trained weights
    log_level(trainer, metrics)
    trainer.strategy.barrier("training written")  # other ranks read these files next
    return metrics


def summary(history: list[dict], test: dict, spec: RunSpec) -> dict:
    """The metrics.json of a training: its validation history, test result, density and schedule position."""
    best = max(history, key=lambda h: h["val/acc"]) if history else {}
    lowest = min(history, key=lambda h: h["val/loss"]) if history else {}
    return {
        "density": density(spec.masks.masks),
        "layer_density": layer_density(spec.masks.masks),
        "test_acc": float(test["test/acc"]), "test_loss": float(test["test/loss"]),
        "final_val_acc": history[-1]["val/acc"] if history else None,
        "best_val_acc": best.get("val/acc"), "best_val_step": best.get("step"),
        "early_stop_step": lowest.get("step"),  # step of lowest validation loss (Frankle & Carbin 2019)
        "start_step": spec.plan.start_step, "steps": spec.plan.steps, "history": history,
    }


def train_all(specs: list[RunSpec], settings: "TrainerConfig", optim: Optim, tracking: Tracking | None = None,
              log=print) -> list[dict]:
    """Independent trainings (a level's tickets and branches, of one or several seeds); results in order.

    Finished ones are read; with trainer.lanes other than 1, runs that can share every step train together
    as lanes of one network (lottery.lane_trainer), the others one by one.
    """
    results = {i: read_json(s.out.metrics) for i, s in enumerate(specs) if s.out.done}
    todo = [i for i in range(len(specs)) if i not in results]
    if settings.lanes == 1:
        groups = [[i] for i in todo]
    else:
        from lottery.lane_trainer import lane_groups

        groups = [[todo[j] for j in g] for g in lane_groups([specs[i] for i in todo], settings, log)]
    for group in groups:
        if len(group) == 1:
            results[group[0]] = train(specs[group[0]], settings, optim, tracking)
        else:
            from lottery.lane_trainer import train_lanes

            results.update(zip(group, train_lanes([specs[i] for i in group], settings, optim, tracking)))
    return [results[i] for i in range(len(specs))]
