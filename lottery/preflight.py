"""Check a whole experiment before anything is written: a failed start leaves no folder behind.

`check(cfg)` builds what a run builds (data and its splits, model, masks, optimizer, learning-rate
schedule, the Lightning Trainer's settings) and checks the run folder, writing nothing; a mistake
is a LotteryError naming the key and the fix, so the corrected command starts in the same folder.
An experiment is identified by what it computes: its folder's name and location take no part.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lottery.config import load_saved, validate
from lottery.errors import LotteryError

if TYPE_CHECKING:
    import pytorch_lightning as pl

# Keys that may change between starts of the same experiment: more levels, more branches, other
# hardware, another seed (each seed has its own folder), and where the folder is (a copied or
# moved run folder resumes wherever it lies, however runs_dir is spelt).
MUTABLE = {"prune.levels", "branches", "matching_tolerance", "trainer", "seed", "seeds", "launcher", "name",
           "runs_dir", "prune.allow_empty_layers"}


# -- the whole experiment ----------------------------------------------------------------------------
def check(cfg) -> tuple[Path, "pl.LightningDataModule"]:
    """Build and check everything a run of `cfg` needs, writing nothing; return its run folder and its
    dataset, loaded (the run reuses it instead of reading it again)."""
    validate(cfg)
    run_dir = check_folder(cfg)
    with torch.random.fork_rng(devices=[]):  # building a model draws random numbers: leave the run's untouched
        world_size = _trainer_world_size(cfg)
        return run_dir, _check_build(cfg, run_dir, world_size)


def _trainer_world_size(cfg) -> int:
    """Let Lightning check accelerator, devices, strategy and precision, as `lottery.trainer` passes them."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    t = cfg.trainer
    try:
        trainer = pl.Trainer(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                             precision=t.precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LotteryError(f"Lightning cannot run trainer.accelerator={t.accelerator} trainer.devices={t.devices} "
                           f"trainer.strategy={t.strategy} trainer.precision={t.precision} here: {first}; fix the trainer.* "
                           "keys (e.g. trainer.accelerator=cpu)") from None
    return trainer.world_size


def _check_build(cfg, run_dir: Path, world_size: int) -> "pl.LightningDataModule":
    """Data, model, masks, optimizer and schedule, built the way the IMP runner builds them."""
    from lottery.imp import IMP
    from lottery.layout import RunLayout
    from lottery.schedule import make_optimizer

    imp = IMP(cfg, RunLayout(run_dir).seed(cfg.seed), log=lambda *_: None)  # data, splits, step counts, plan
    if hasattr(imp.data, "per_process_batch"):
        imp.data.per_process_batch(world_size)
    model = imp.build(cfg.seed)
    imp.masks_for(model)
    shape = tuple(imp.data.input_shape)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *shape))
    except RuntimeError as e:
        raise LotteryError(f"model {cfg.model.name} cannot take the {cfg.data.name} inputs of shape {shape} "
                           f"({str(e).splitlines()[0]}); choose a model for this dataset") from None
    optim = imp.optim  # milestones resolved to steps
    try:
        make_optimizer(model.parameters(), optim)
    except ValueError as e:
        raise LotteryError(f"train.optim: {e}; fix the train.optim.* keys") from None
    lrs = [optim.lr_at(s) for s in {0, imp.total_steps - 1, *optim.milestone_steps}] + [imp.finetune_lr]
    if not all(math.isfinite(lr) for lr in lrs):
        raise LotteryError(f"train.optim gives a learning rate that is not finite ({lrs}); lower train.optim.gamma or lr")
    return imp.data


# -- the run folder ----------------------------------------------------------------------------------
def check_folder(cfg) -> Path:
    """The run folder of `cfg`, after checking that it is new or holds this same experiment, and writable."""
    from lottery.layout import RunLayout

    run_dir = RunLayout.of(cfg.runs_dir, cfg.name).path
    if run_dir.exists() and not run_dir.is_dir():
        raise LotteryError(f"{run_dir} is a file, not a run folder; choose another name=... or runs_dir=...")
    saved = RunLayout(run_dir).config
    if saved.exists():
        _check_same(cfg, saved)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise LotteryError(f"{run_dir} exists and is not a lottery run (no config.yaml); choose another name=... or runs_dir=...")
    _check_writable(run_dir)
    return run_dir


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in MUTABLE:
            continue
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _check_same(cfg, saved: Path) -> None:
    run_dir = saved.parent
    old = load_saved(saved)
    old, new = _flat(asdict(old)), _flat(asdict(cfg))
    diff = [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise LotteryError(f"{run_dir} holds a different experiment ({'; '.join(diff[:3])}). "
                           f"Choose another name (name=...) or delete {run_dir} to start over")


def _check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LotteryError(f"cannot create {folder}: {existing} is a file; choose another runs_dir=...")
    try:
        with tempfile.TemporaryFile(dir=existing):  # unnamed where the system allows: nothing left behind
            pass
    except OSError as e:
        raise LotteryError(f"cannot write in {existing} ({e.strerror}); choose a runs_dir=... you can write to") from None
