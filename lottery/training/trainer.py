"""The one Lightning Trainer: `fit_and_test` builds it for a training alone (lottery.training.single) and
for a lane group (lottery.training.lane_group), resumes from the training's checkpoint, then tests.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator

from lottery.core.masks import MaskManager
from lottery.training.callbacks import (
    AtomicCheckpointIO,
    EpochCheckpoint,
    LevelProgress,
    MaskCallback,
    Resumed,
)
from lottery.training.module import ClassificationModule
from lottery.core.schema import TrainerConfig


@contextlib.contextmanager
def runtime_cuda_probe(on_cpu: bool):
    """On a machine without GPUs, let torch ask the CUDA runtime (cached) rather than NVML if CUDA is there.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so that a probe does not poison forks);
    torch's optimizers then probe NVML (a dlopen) at every `step()` while CUDA is uninitialised, a
    noticeable share of a small model's step on a CPU run with a CUDA build of torch (docs/speed.md).
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


def fit_and_test(module: ClassificationModule, data: pl.LightningDataModule, settings: TrainerConfig, steps: int,
                 masks: MaskManager, checkpoint: Path, label: str, capture: list[pl.Callback] = (), logger=False,
                 updater=None) -> tuple[pl.Trainer, list[dict]]:
    """Train `module` for `steps` optimizer steps under one Lightning Trainer, validating every epoch and
    resuming from `checkpoint` (written atomically at epoch ends: EpochCheckpoint) when it exists; then test.

    Used by a training alone and by lane groups. updater: a method that changes the masks while the module trains
    (lottery.sparsity.updaters); one that takes iterations of its own beyond the `steps` (RigL's updates with
    update_step extra) gets them, and the module counts its schedule without them. Returns the Trainer and
    `trainer.test`'s result.
    """
    extra = updater.extra_iterations(module.start_step + steps) if hasattr(updater, "extra_iterations") else 0
    module.extra_before = updater.extra_before if extra else None
    callbacks = [MaskCallback(masks, updater), EpochCheckpoint(checkpoint), Resumed(label), *capture]
    if settings.progress:
        callbacks.append(LevelProgress(label, settings.progress))
    trainer = pl.Trainer(
        max_steps=steps + extra, max_epochs=-1, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
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
