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
from pathlib import Path, PurePath

import torch

from lottery.errors import LotteryError

# Keys that may change between starts of the same experiment: more levels, more branches, other
# hardware, another seed (each seed has its own folder), and where the folder is (a copied or
# moved run folder resumes wherever it lies, however runs_dir is spelt).
MUTABLE = {"prune.levels", "branches", "matching_tolerance", "trainer", "seed", "seeds", "launcher", "name",
           "runs_dir", "prune.allow_empty_layers"}


def read_yaml(path: Path, what: str, fix: str):
    """The mapping the YAML file `path` holds, or a LotteryError saying what is wrong with the file."""
    import yaml
    from omegaconf import DictConfig, OmegaConf

    path = Path(path)
    if path.is_dir():
        raise LotteryError(f"{what} {path} is a directory; {fix}")
    if not path.exists():
        raise LotteryError(f"{what} {path} does not exist; {fix}")
    try:
        data = OmegaConf.load(path)
    except UnicodeDecodeError:
        raise LotteryError(f"{what} {path} is not a text file; {fix}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise LotteryError(f"{what} {path} is not valid YAML ({problem}{where}); {fix}") from None
    except OSError as e:
        raise LotteryError(f"cannot read {what} {path} ({e.strerror}); check that it is a readable file") from None
    if not isinstance(data, DictConfig):
        raise LotteryError(f"{what} {path} holds a {type(data).__name__.removesuffix('Config').lower()}, not a mapping "
                           f"of keys (name: ..., train: ...); {fix}")
    return data


def _fail(key: str, value, rule: str) -> LotteryError:
    return LotteryError(f"{key}={value} {rule}")


def check_ranges(cfg) -> None:
    """Range checks OmegaConf's types cannot express (called by `lottery.config.validate`)."""
    _check_name(cfg.name)
    ints = {"seed": cfg.seed, "data.split_seed": cfg.data.split_seed, "rewind.step": cfg.rewind.step,
            "train.optim.warmup_steps": cfg.train.optim.warmup_steps}
    for key, value in ints.items():
        if value < 0:
            raise _fail(key, value, "must be >= 0")
    if cfg.data.batch_size < 1:
        raise _fail("data.batch_size", cfg.data.batch_size, "must be >= 1: the examples per optimizer step")
    if cfg.data.val_size < 1:
        raise _fail("data.val_size", cfg.data.val_size, "must be >= 1: levels are compared by validation accuracy")
    for key, value in (("train.steps", cfg.train.steps), ("train.epochs", cfg.train.epochs)):
        if value is not None and value < 1:
            raise _fail(key, value, "must be >= 1 (or null to use the other of train.steps and train.epochs)")
    for key, values in (("train.milestone_epochs", cfg.train.milestone_epochs),
                        ("train.optim.milestone_steps", cfg.train.optim.milestone_steps)):
        if any(v < 0 for v in values):
            raise _fail(key, values, "must all be >= 0")
    _check_optim(cfg.train.optim)
    if not math.isfinite(cfg.matching_tolerance) or cfg.matching_tolerance < 0:
        raise _fail("matching_tolerance", cfg.matching_tolerance, "must be >= 0 accuracy points")
    _check_rates(cfg.prune)
    _check_trainer(cfg.trainer)


def _check_name(name: str) -> None:
    parts = PurePath(name).parts
    if not parts or not name.strip() or PurePath(name).is_absolute() or ".." in parts or name.startswith("~"):
        raise LotteryError(f"name={name!r} must be a folder name inside runs_dir, like name=lenet_mnist; "
                           "to put runs elsewhere set runs_dir=...")


def _check_optim(o) -> None:
    # The optimizer's name is checked by its registry in config.validate, before these ranges.
    if not (math.isfinite(o.lr) and o.lr > 0):
        raise _fail("train.optim.lr", o.lr, "must be > 0: the peak learning rate")
    for key, value in (("momentum", o.momentum), ("weight_decay", o.weight_decay)):
        if not (math.isfinite(value) and value >= 0):
            raise _fail(f"train.optim.{key}", value, "must be >= 0")
    if o.nesterov and (o.optimizer != "sgd" or o.momentum <= 0):
        raise LotteryError("train.optim.nesterov=true needs train.optim.optimizer=sgd and train.optim.momentum > 0")
    if not (math.isfinite(o.gamma) and o.gamma > 0):
        raise _fail("train.optim.gamma", o.gamma, "must be > 0: the factor applied to the learning rate at each milestone")
    if o.finetune_lr is not None and not (math.isfinite(o.finetune_lr) and o.finetune_lr > 0):
        raise _fail("train.optim.finetune_lr", o.finetune_lr, "must be > 0 (or null: the schedule's final learning rate)")


def _check_rates(p) -> None:
    rates = {"prune.output_rate": p.output_rate, **{f"prune.rates[{k!r}]": v for k, v in p.rates.items()}}
    for key, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 0:
            raise _fail(key, rate, "must be a number >= 0: a multiplier of prune.fraction")
        if p.fraction * rate >= 1 and not p.allow_empty_layers:
            raise LotteryError(f"prune.fraction={p.fraction} x {key}={rate} = {p.fraction * rate:g} >= 1 removes every "
                               "weight of that tensor in the first pruned level; lower the rate or the fraction, or set "
                               "prune.allow_empty_layers=true if that is what you want")


def _check_trainer(t) -> None:
    if t.progress not in (True, False, "log"):
        raise _fail("trainer.progress", t.progress, "must be true (a status line on a terminal), false, or log (one line per epoch)")
    if isinstance(t.devices, int) and t.devices < 1 and t.devices != -1:
        raise _fail("trainer.devices", t.devices, "must be >= 1, -1 (all), \"auto\", or a list of device ids like \"0,1\"")
    if t.num_nodes < 1:
        raise _fail("trainer.num_nodes", t.num_nodes, "must be >= 1")


# -- the whole experiment ----------------------------------------------------------------------------
def check(cfg) -> Path:
    """Build and check everything a run of `cfg` needs, writing nothing; return its run folder."""
    from lottery.config import validate

    validate(cfg)
    run_dir = check_folder(cfg)
    with torch.random.fork_rng(devices=[]):  # building a model draws random numbers: leave the run's untouched
        world_size = _trainer_world_size(cfg)
        _check_build(cfg, run_dir, world_size)
    return run_dir


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


def _check_build(cfg, run_dir: Path, world_size: int) -> None:
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


def load_saved(saved: Path):
    """The ExperimentConfig a run folder's config.yaml holds, or a LotteryError naming the damage and the fix."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from lottery.hparams import ExperimentConfig

    fix = f"restore it from a copy, or delete {saved.parent} to start over"
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConfig),
                                                   read_yaml(saved, "the run's config", fix=fix)))
    except OmegaConfBaseException as e:
        raise LotteryError(f"the run's config {saved} does not fit this version of lottery "
                           f"({str(e).splitlines()[0]}); {fix}") from None


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
