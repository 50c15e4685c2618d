"""Train one level (or one control branch) with a real Lightning Trainer, resumably."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.accelerators import CPUAccelerator

from lottery import interrupts
from lottery.callback import MaskCallback
from lottery.config import ExperimentConfig
from lottery.io import AtomicCheckpointIO, read_json, save_tensors, write_json
from lottery.masks import MaskManager
from lottery.module import ClassificationModule
from lottery.progress import Resumed
from lottery.rewind import LevelPlan

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# Our tensors live in memory (or on the device); worker processes would only add overhead.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


class _LevelProgress(pl.Callback):
    """One status line, rewritten each epoch: level, epoch and validation accuracy.

    Printed only to a terminal; logs and CI get the one summary line per level the runner prints,
    and with mode "log" (trainer.progress=log) one line per epoch, terminal or not.
    """

    def __init__(self, label: str, mode: bool | str = True):
        self.label, self.lines = label, mode == "log"
        self.tty = sys.stderr.isatty() and not self.lines

    def on_train_epoch_end(self, trainer, pl_module):
        m = trainer.callback_metrics
        if not ((self.tty or self.lines) and trainer.is_global_zero) or (self.lines and "val/acc" not in m):
            return  # (an epoch restarted from its end-of-epoch checkpoint ends again, without validation)
        total = -(-trainer.max_steps // max(1, trainer.num_training_batches))
        # Validation has run by now; train/acc is logged after this hook, so it is left out.
        accs = f"val/acc {float(m['val/acc']):.2%}" if "val/acc" in m else ""
        line = f"{self.label}  epoch {trainer.current_epoch + 1}/{total}  {accs}"
        sys.stderr.write(f"{line.rstrip()}\n" if self.lines else f"\r\033[K{line}")
        sys.stderr.flush()

    def on_fit_end(self, trainer, pl_module):
        if self.tty and trainer.is_global_zero:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class _EpochCheckpoint(pl.Callback):
    """Overwrite one resume checkpoint at every epoch end (after that epoch's validation)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path)  # atomic through AtomicCheckpointIO; rank 0 writes


class _CaptureRewindPoints(pl.Callback):
    """Save the weights after step k of the dense level: the rewind points of late rewinding."""

    def __init__(self, points: dict[int, Path]):
        self.points = points  # step -> file

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        path = self.points.get(pl_module.schedule_step)
        if path is not None and trainer.is_global_zero and not path.exists():
            save_tensors(path, pl_module.model.state_dict(), {"step": str(pl_module.schedule_step)})


@contextlib.contextmanager
def runtime_cuda_probe(on_cpu: bool):
    """On a machine without GPUs, let torch ask the CUDA runtime (cached) rather than NVML if CUDA is there.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (so that a probe does not poison forks);
    torch's optimizers then probe NVML (a dlopen) at every `step()` while CUDA is uninitialised: ~0.6 ms
    per step on a CPU run with a CUDA build of torch, 13% of a LeNet-300-100 step. With no GPU there
    is no fork to poison. Machines with GPUs, and CPU-only builds of torch, are left as they are.
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


def train(cfg: ExperimentConfig, model: torch.nn.Module, masks: MaskManager, plan: LevelPlan,
          datamodule: pl.LightningDataModule, out: Path, seed: int, label: str,
          capture: dict[int, Path] | None = None, constant_lr: float | None = None) -> dict:
    """Train `model` under `masks` as `plan` says; results in `out`. A finished `out` is not retrained.

    capture: {step: path} of weights to save when the schedule reaches that step (rewind points).
    """
    done = out / "metrics.json"
    if done.exists():
        return read_json(done)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    module = ClassificationModule(model, datamodule.num_classes, cfg.train.optim, step_offset=plan.step_offset,
                                  constant_lr=constant_lr, seed=seed, compile=cfg.trainer.compile)
    callbacks = [MaskCallback(masks), _EpochCheckpoint(last), Resumed(label)]
    if capture:
        callbacks.append(_CaptureRewindPoints(capture))
    if cfg.trainer.progress:
        callbacks.append(_LevelProgress(label, cfg.trainer.progress))
    trainer = pl.Trainer(
        max_steps=plan.steps, max_epochs=-1, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, precision=cfg.trainer.precision, logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        default_root_dir=str(out), check_val_every_n_epoch=1,
    )
    with runtime_cuda_probe(on_cpu=isinstance(trainer.accelerator, CPUAccelerator)), interrupts.propagate(trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last.exists() else None)
        # Lightning skips validation when max_steps ends an epoch early: then validate the final weights.
        if not module.history or module.history[-1]["step"] != module.schedule_step:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics = _summary(module.history, test, masks, plan)
    if trainer.is_global_zero:
        save_tensors(out / "final.safetensors", model.state_dict())
        write_json(done, metrics)  # written last: its presence marks the level complete
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # final.safetensors holds the trained weights
    trainer.strategy.barrier("level written")  # other ranks read these files next
    return metrics


def _summary(history: list[dict], test: dict, masks: MaskManager, plan: LevelPlan) -> dict:
    best = max(history, key=lambda h: h["val/acc"]) if history else {}
    lowest = min(history, key=lambda h: h["val/loss"]) if history else {}
    counts = masks.counts()
    return {
        "density": sum(k for k, _ in counts.values()) / sum(t for _, t in counts.values()),
        "layer_density": {n: k / t for n, (k, t) in counts.items()},
        "test_acc": float(test["test/acc"]), "test_loss": float(test["test/loss"]),
        "final_val_acc": history[-1]["val/acc"] if history else None,
        "best_val_acc": best.get("val/acc"), "best_val_step": best.get("step"),
        "early_stop_step": lowest.get("step"),  # step of lowest validation loss (Frankle & Carbin 2019)
        "start_step": plan.step_offset, "steps": plan.steps, "history": history,
    }
