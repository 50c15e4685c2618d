"""Lightning callbacks: `MaskCallback` keeps any LightningModule's pruned weights at zero (and its masks
in checkpoints); the others are what the IMP trainer adds to a level: an atomic resume checkpoint at epoch
ends, rewind-point capture, a status line.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lottery.core.files import atomic_path, damaged, save_tensors
from lottery.core.progress import duration
from lottery.core.masks import MaskManager


class MaskCallback(pl.Callback):
    """Attach a MaskManager to an existing LightningModule without changing the module.

    Args:
        masks: a MaskManager over (a submodule of) the LightningModule, or a function
            `pl_module -> MaskManager` called at setup, e.g. ``lambda m: MaskManager(m.model)``.
            Default: a MaskManager over the whole LightningModule.
        updater: a method that changes the masks while the module trains (lottery.sparsity.updaters, e.g. RigL),
            started at setup (`start(masks)`: the methods that make their first mask themselves make it there) and
            called around every optimizer step of iteration t: `before_step(t, ...)` before it, `update(t, ...)`
            after it, with the gradients still there.

    The masks are applied after every optimizer step (so every checkpoint holds masked
    weights) and before validation and testing; they are saved in Lightning checkpoints (with the updater's
    state) and restored on `ckpt_path=` resume.
    """

    def __init__(self, masks: MaskManager | Callable[[pl.LightningModule], MaskManager] | None = None, updater=None):
        self._factory = masks if callable(masks) and not isinstance(masks, MaskManager) else None
        self.masks: MaskManager | None = masks if isinstance(masks, MaskManager) else None
        self.updater = updater
        self._pending: dict | None = None  # state restored from a checkpoint before setup ran

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.masks is None:
            self.masks = self._factory(pl_module) if self._factory else MaskManager(pl_module)
        if self._pending is not None:
            self.load_state_dict(self._pending)
            self._pending = None
        if hasattr(self.updater, "start"):  # before the first forward; nothing on a later setup or after a resume
            self.updater.start(self.masks)
        self.masks.apply()

    @staticmethod
    def _iteration(trainer, pl_module) -> int:
        """The schedule's index of the current iteration: steps taken before it (lottery's modules count from the
        rewind step k)."""
        return getattr(pl_module, "schedule_step", trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = self._iteration(trainer, pl_module)
        if self.updater is not None and not self.updater.done(step):
            self.updater.before_step(step, self.masks, optimizer)
        # A module that clips the gradient norm (after this hook) clips the sparse network's: pruned weights' left out,
        # but for a method that trains them (its shadow is in the parameters now: lottery.sparsity.shadow).
        if getattr(pl_module, "gradient_clip", None) is not None and not getattr(self.updater, "trains_pruned", False):
            self.masks.mask_gradients()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The iteration just taken: lottery's module maps it to its schedule step (an updater's extra iterations take
        # none), another module's is one less than the step count.
        step_of = getattr(pl_module, "step_of", None)
        step = step_of(trainer.global_step - 1) if step_of else self._iteration(trainer, pl_module) - 1
        if self.updater is not None and not self.updater.done(step):
            self.updater.update(step, self.masks, trainer.optimizers[0])
        self.masks.apply()  # right after optimizer.step(): one fused kernel, no host sync

    def on_validation_start(self, trainer, pl_module) -> None:
        self.masks.apply()

    def on_test_start(self, trainer, pl_module) -> None:
        self.masks.apply()

    def state_dict(self) -> dict:
        if self.masks is None:
            return {}
        state = self.masks.state_dict()
        if self.updater is not None:
            state["updater"] = self.updater.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self.masks is None:
            self._pending = state_dict
            return
        self.masks.load_state_dict(state_dict)
        if self.updater is not None and "updater" in state_dict:
            self.updater.load_state_dict(state_dict["updater"])


class _Sink(io.RawIOBase):
    """A file torch.save writes to, keeping the first OSError the file system raised (torch turns it into a
    RuntimeError that no longer says what went wrong)."""

    def __init__(self, file):
        self.file, self.error = file, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary name and renamed: `kill -9` never leaves half a file, and a
    full disk is the file system's OSError (one line from the `lottery` command), not a traceback from torch."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            sink = _Sink(f)
            try:
                torch.save(checkpoint, sink)
            except RuntimeError:
                if sink.error is None:
                    raise
                raise OSError(sink.error.errno, sink.error.strerror, str(path)) from None

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Tensors and plain containers only (`weights_only=True` on every torch): loading never runs code."""
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as e:  # truncated (RuntimeError), foreign pickle (UnpicklingError), unreadable (OSError)
            raise damaged(Path(path), e) from None


CHECKPOINT_SECONDS = 60.0  # after the first epoch, a resume checkpoint at most this often: what a kill may cost


class EpochCheckpoint(pl.Callback):
    """Overwrite one resume checkpoint at an epoch end (after that epoch's validation): after the first epoch, then
    at most every `seconds`, and never after the last, whose checkpoint would be removed as soon as the training's
    files are written (a small model's epoch costs about as much as writing its checkpoint: docs/speed.md)."""

    def __init__(self, path: Path, seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.path, self.clock = path, clock
        self.seconds = CHECKPOINT_SECONDS if seconds is None else seconds
        self.last: float | None = None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.global_step >= trainer.max_steps:
            return
        now = self.clock()
        due = self.last is None or now - self.last >= self.seconds
        if trainer.strategy.broadcast(due, src=0):  # every process saves together (rank 0's clock decides)
            self.last = now
            trainer.save_checkpoint(self.path)  # atomic through AtomicCheckpointIO; rank 0 writes


class CaptureRewindPoints(pl.Callback):
    """Save the weights after schedule step k: the rewind points of late rewinding (Frankle et al. 2020).

    Reads `pl_module.schedule_step`, and the weights through `state(pl_module)`: by default
    `pl_module.model.state_dict()` (ClassificationModule's); a lane's with `LaneNet.lane_state_dict`.
    """

    def __init__(self, points: dict[int, Path], state: Callable[[pl.LightningModule], dict] | None = None):
        self.points = points  # step -> file
        self.state = state or (lambda pl_module: pl_module.model.state_dict())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        path = self.points.get(pl_module.schedule_step)
        if path is not None and trainer.is_global_zero and not path.exists():
            save_tensors(path, self.state(pl_module), {"step": str(pl_module.schedule_step)})


PROGRESS_SECONDS = 30.0  # where output is not a terminal, at most one progress line per this many seconds


class LevelProgress(pl.Callback):
    """Where a training is: level, epoch, validation accuracy and the time it has taken.

    On a terminal, one status line rewritten each epoch. Elsewhere (output piped or redirected: a log file, CI,
    a SLURM job), a line at an epoch's end at most every PROGRESS_SECONDS; with mode "log" (trainer.progress=log)
    a line at every epoch's end, terminal or not.
    """

    def __init__(self, label: str, mode: bool | str = True, clock: Callable[[], float] = time.monotonic):
        self.label, self.lines, self.clock = label, mode == "log", clock
        self.tty = sys.stderr.isatty() and not self.lines
        self.start = self.last = clock()

    def on_train_epoch_end(self, trainer, pl_module):
        m, now = trainer.callback_metrics, self.clock()
        if not trainer.is_global_zero or (not self.tty and "val/acc" not in m):
            return  # (an epoch restarted from its end-of-epoch checkpoint ends again, without validation)
        if not (self.tty or self.lines or now - self.last >= PROGRESS_SECONDS):
            return
        self.last = now
        total = -(-trainer.max_steps // max(1, trainer.num_training_batches))
        # Validation has run by now; train/acc is logged after this hook, so it is left out.
        accs = f"val/acc {float(m['val/acc']):.2%}" if "val/acc" in m else ""
        line = f"{self.label}  epoch {trainer.current_epoch + 1}/{total}  {accs}  ({duration(now - self.start)})"
        sys.stderr.write(f"\r\033[K{line}" if self.tty else f"{line}\n")
        sys.stderr.flush()

    def on_fit_end(self, trainer, pl_module):
        if self.tty and trainer.is_global_zero:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class Resumed(pl.Callback):
    """Print "resuming <label> from epoch E/N" when training continues from a checkpoint."""

    def __init__(self, label: str):
        self.label = label

    def on_train_start(self, trainer, pl_module):
        if trainer.ckpt_path and trainer.is_global_zero:
            per_epoch = max(1, trainer.num_training_batches)
            done, total = trainer.global_step // per_epoch, -(-trainer.max_steps // per_epoch)
            print(f"resuming {self.label} from epoch {done + 1}/{total} ({done} done, from {trainer.ckpt_path})", flush=True)
