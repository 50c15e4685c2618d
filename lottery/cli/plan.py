"""The plan of an experiment: its configuration checked once, and everything its run needs built, before anything
is written.

`plan(cfg)` checks every key (lottery.cli.keys) and the run folder (new, or this same experiment's), then builds
what the run builds (data and its splits, the seeds' runners, model, masks, optimizer, learning-rate schedule, the
Lightning Trainer's settings) and asks every method of the run to check itself against the model and the data.
A mistake is a LotteryError naming the key and the fix, so a failed start leaves no folder behind and the corrected
command starts in the same folder. The run then uses what the plan built; `Plan.start` writes config.yaml. An
experiment is identified by what it computes: its folder's name and location take no part.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch

from lottery.cli.config import load_saved, to_yaml
from lottery.cli.keys import check_keys, used_methods
from lottery.core import files
from lottery.core.errors import LotteryError
from lottery.core.layout import RunLayout
from lottery.core.methods import METHODS, Context
from lottery.core.schema import ExperimentConfig
from lottery.imp.runner import SeedRunner, runners
from lottery.models import output_layer
from lottery.sparsity.updaters import SPARSE_TRAINING
from lottery.training.optimizers import make_optimizer

# Keys that may change between starts of the same experiment: more levels, more branches, other
# hardware, another seed (each seed has its own folder), and where the folder is (a copied or
# moved run folder resumes wherever it lies, however runs_dir is spelt).
MUTABLE = {"prune.levels", "branches", "matching_tolerance", "trainer", "seed", "seeds", "launcher", "name",
           "runs_dir", "prune.allow_empty_layers", "methods"}
Log = Callable[[str], None]


@dataclass
class Plan:
    """What a run of an experiment executes: its configuration (each method's options resolved), its folder, and
    one runner per seed, their dataset read once."""

    cfg: ExperimentConfig
    layout: RunLayout
    runners: list[SeedRunner]

    def start(self) -> None:
        """Create the run folder (or reuse this experiment's) with the resolved config.yaml."""
        files.write_text(self.layout.config, to_yaml(self.cfg))


def plan(cfg: ExperimentConfig, seeds: Sequence[int] | None = None,
         log_of: Callable[[int], Log] = lambda seed: print) -> Plan:
    """Check and build everything a run of `cfg` needs, writing nothing, for `seeds` (default: the config's).

    log_of(seed): where that seed's runner logs.
    """
    cfg, options = check_keys(cfg)
    layout = RunLayout(check_folder(cfg))
    seeds = list(seeds or cfg.seeds or [cfg.seed])
    with torch.random.fork_rng(devices=[]):  # building a model draws random numbers: leave the run's untouched
        world_size = _trainer_world_size(cfg)
        seed_runners = runners(cfg, [layout.seed(s) for s in seeds], options, log_of)
        _check_build(seed_runners[0], world_size, options)
    return Plan(cfg, layout, seed_runners)


# -- what needs the data and the models ----------------------------------------------------------------
def _trainer_world_size(cfg) -> int:
    """Let Lightning check accelerator, devices, strategy and precision, as `lottery.training.trainer` passes them."""
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


def _check_build(runner: SeedRunner, world_size: int, options: dict) -> None:
    """Data, model, masks, optimizer and schedule, built the way the IMP runner builds them; then every method of
    the run checks itself against them."""
    cfg, data = runner.cfg, runner.data
    if hasattr(data, "per_process_batch"):
        data.per_process_batch(world_size)
    _check_batch_size(cfg, data)
    model = runner.models.fresh(runner.seed)
    masks = runner.models.masks_for(model)
    shape = tuple(data.input_shape)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *shape))
    except RuntimeError as e:
        raise LotteryError(f"model {cfg.model.name} cannot take the {cfg.data.name} inputs of shape {shape} "
                           f"({str(e).splitlines()[0]}); choose a model for this dataset") from None
    optim = runner.optim  # milestones resolved to steps
    try:
        make_optimizer(model.parameters(), optim)
    except ValueError as e:
        raise LotteryError(f"train.optim: {e}; fix the train.optim.* keys") from None
    lrs = [optim.lr_at(s) for s in {0, runner.total_steps - 1, *optim.milestone_steps}] + [optim.finetuning_lr]
    if not all(math.isfinite(lr) for lr in lrs):
        raise LotteryError(f"train.optim gives a learning rate that is not finite ({lrs}); lower train.optim.gamma or lr")
    _check_schedule(runner)
    _check_classes(cfg, data)
    _check_levels(cfg, model, masks)
    context = Context(model, masks, data, runner.total_steps, optim)
    for name in used_methods(cfg):
        method = METHODS[name]
        if method.check is not None:
            method.call(method.check, context, options=options[name])
    _check_sparse_training(runner, masks, options)


ZERO_LR_SHARE = 0.05  # the share of a training's steps at learning rate 0 that still counts as training


def _check_schedule(runner: SeedRunner) -> None:
    """The learning-rate schedule fits the training: every milestone inside it, the warm-up shorter than it (and
    than a linear decay), and a learning rate of 0 for at most ZERO_LR_SHARE of its steps."""
    cfg, total, optim = runner.cfg, runner.total_steps, runner.optim
    given, spe = cfg.train.optim, runner.data.steps_per_epoch()
    past = [m for m in given.milestone_steps if m >= total]
    past_epochs = [e for e in cfg.train.milestone_epochs if e * spe >= total]
    if past or past_epochs:
        key, values = ("train.optim.milestone_steps", past) if past else ("train.milestone_epochs", past_epochs)
        raise LotteryError(f"{key}: {values} {'is' if len(values) == 1 else 'are'} past the end of the training "
                           f"({total} steps, {-(-total // spe)} epochs of {spe}): the learning rate would never change "
                           "there; remove it or train longer")
    if given.warmup_steps and given.warmup_steps >= total:
        raise LotteryError(f"train.optim.warmup_steps={given.warmup_steps} is not shorter than the training ({total} "
                           f"steps): the learning rate would never reach train.optim.lr={given.lr}; choose fewer steps")
    if optim.schedule == "linear" and optim.decay_steps <= given.warmup_steps:
        raise LotteryError(f"train.optim.warmup_steps={given.warmup_steps} is not shorter than the linear decay "
                           f"(train.optim.decay_steps={optim.decay_steps}): the learning rate would fall before it rose")
    zero = sum(1 for s in range(total) if optim.lr_at(s) == 0)
    if zero > ZERO_LR_SHARE * total:
        raise LotteryError(f"the learning rate is 0 for {zero} of the {total} steps of the training ({zero / total:.0%}; "
                           f"train.optim.decay_steps={optim.decay_steps}): those steps train nothing; set "
                           f"train.optim.decay_steps to the training length or leave it null")


def _check_levels(cfg: ExperimentConfig, model, masks) -> None:
    """Every prunable tensor keeps a weight at the last level (unless prune.allow_empty_layers), and the output
    layer's rate, when given, applies to a prunable output layer."""
    p = cfg.prune
    if p.output_rate != type(p)().output_rate and output_layer(model) not in masks.names:
        raise LotteryError(f"prune.output_rate={p.output_rate} has no effect: the output layer {output_layer(model)!r} "
                           "is not among the prunable tensors; remove it or make the layer prunable")
    if p.distribution is not None or p.allow_empty_layers or p.levels == 0:
        return
    for name, mask in masks.masks.items():
        if round(mask.numel() * (1 - min(1.0, p.fraction * masks.rates[name])) ** p.levels) < 1:
            raise LotteryError(f"prune.levels={p.levels} of prune.fraction={p.fraction} leave {name} "
                               f"({mask.numel()} weights) without a weight by the last level; run fewer levels, or set "
                               "prune.allow_empty_layers=true if that is what you want")


def _check_classes(cfg: ExperimentConfig, data) -> None:
    """The data can train a classifier: two classes or more in the training split, and none in the test split that
    training never sees (a test accuracy that counts them would mean nothing)."""
    if not hasattr(data, "class_counts"):
        return  # a datamodule of the user's own, without tensors to count
    train, test = data.class_counts("train"), data.class_counts("test")
    if len(train) < 2:
        raise LotteryError(f"the training split of {cfg.data.name} holds examples of {len(train)} class"
                           f"{'es' if len(train) != 1 else ''} ({sorted(train)}): a classifier needs two or more; "
                           "check the labels of the data")
    if unseen := sorted(set(test) - set(train)):
        raise LotteryError(f"the test split of {cfg.data.name} holds classes {unseen} that the training split never has "
                           f"({sum(test[c] for c in unseen)} examples): the test accuracy would count them as errors; "
                           "split the data so that training sees every class")


def _check_sparse_training(runner: SeedRunner, masks, options: dict) -> None:
    """The sparse-training schedule fits the training; each method whose options fix its densities says them in one
    line; the distributions can share out the sparsest level's density (the density IMP's pruning reaches there:
    fraction x each tensor's rate, per level)."""
    cfg, total = runner.cfg, runner.total_steps
    sparse = [name for name in cfg.branches if name in SPARSE_TRAINING]
    if sparse:
        s = cfg.sparse
        if s.end_step is None and s.start_step > s.last_update(total):
            raise LotteryError(f"sparse.start_step={s.start_step} is after the last update, sparse.end_step="
                               f"{s.last_update(total)} (the default: 75% of the training's {total} steps); choose an "
                               "earlier start or set sparse.end_step")
        end = runner.models.schedule(total).end_step
        if end >= total:
            raise LotteryError(f"sparse.end_step={end} is past the training ({total} steps: 0 .. {total - 1}); choose "
                               f"sparse.end_step < {total}, or null for 75% of it")
    readers = [name for name in sparse if _reads_distribution(runner, name, masks, options.get(name))]
    p, levels = cfg.prune, cfg.prune.levels
    checks = ([(cfg.sparse.distribution, f"branches {sorted(readers)}")] if readers else []) + (
        [(p.distribution, "prune.distribution")] if p.distribution is not None else [])
    if levels == 0 or not checks:
        return
    sizes = {n: m.numel() for n, m in masks.masks.items()}
    kept = sum(n * (1 - min(1.0, p.fraction * masks.rates[name])) ** levels for name, n in sizes.items())
    density = (1 - p.fraction) ** levels if p.distribution is not None else kept / sum(sizes.values())
    for distribution, what in checks:
        try:
            runner.models.layer_densities(masks, density, distribution)
        except LotteryError as e:
            raise LotteryError(f"{what}: level {levels} ({density:.2%} of the weights) with distribution "
                               f"{distribution}: {e}") from None


def _reads_distribution(runner: SeedRunner, name: str, masks, options) -> bool:
    """Whether branch `name` shares a density out by sparse.distribution; a method whose options fix its densities
    (SR-STE's N:M) says them in one line, which layers it keeps dense among them."""
    method = SPARSE_TRAINING[name]
    if method.densities is None:
        return True
    shared = []

    def share(density):
        shared.append(density)
        return runner.models.layer_densities(masks, density)

    own = method.call(method.densities, masks, share, options=options)
    if own is None:
        return True
    dense = [n for n, d in own.items() if d >= 1.0]
    pruned = ", ".join(f"{n} {100 * d:.1f}%" for n, d in own.items() if d < 1.0)
    runner.log(f"{name}: densities of its own, trained once off level 1: {pruned}; dense: {', '.join(dense) or 'none'}")
    return bool(shared)


def _check_batch_size(cfg: ExperimentConfig, data: pl.LightningDataModule) -> None:
    """A batch larger than the training set would train full-batch without a word: refuse it, with what fits."""
    size = data.train_size() if hasattr(data, "train_size") else None
    if size is not None and cfg.data.batch_size > size:
        raise LotteryError(f"data.batch_size={cfg.data.batch_size} is larger than the {size} training examples of "
                           f"{cfg.data.name} (data.val_size={cfg.data.val_size} more are held out for validation): every "
                           f"step would see the whole training set; choose data.batch_size <= {size}")


# -- the run folder ----------------------------------------------------------------------------------
def check_folder(cfg) -> Path:
    """The run folder of `cfg`, after checking that it is new or holds this same experiment, and writable."""
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


def _check_same(cfg, saved: Path) -> None:
    """The saved experiment computes what `cfg` does: every key but the MUTABLE ones, and the options of each method
    both use (a branch added later brings its options; one trained already keeps them)."""
    run_dir, old_cfg = saved.parent, load_saved(saved)
    both = set(used_methods(old_cfg)) & set(used_methods(cfg))
    # a tuple option (its default) and the list the saved YAML holds of it are the same value
    methods = lambda c: {f"methods.{n}.{k}": list(v) if isinstance(v, tuple) else v
                         for n, o in c.methods.items() if n in both for k, v in o.items()}
    old, new = old_cfg.flat(skip=MUTABLE) | methods(old_cfg), cfg.flat(skip=MUTABLE) | methods(cfg)
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
