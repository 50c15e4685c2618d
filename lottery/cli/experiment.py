"""An experiment folder: the resolved config, one IMP run per seed, the curve and the exported ticket
(where each file lives: lottery.core.layout).

Before anything is written, `check(cfg)` builds what a run builds (data and its splits, the seeds' runners,
model, masks, optimizer, learning-rate schedule, the Lightning Trainer's settings) and checks the run folder;
a mistake is a LotteryError naming the key and the fix, so a failed start leaves no folder behind and the
corrected command starts in the same folder. The run then uses what the check built. An experiment is
identified by what it computes: its folder's name and location take no part.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch

from lottery.cli.config import load_saved, to_yaml, validate
from lottery.cli.tickets import write_ticket
from lottery.core import files
from lottery.core.errors import LotteryError
from lottery.core.layout import RunLayout
from lottery.imp.branches import BUILDS_ON, SPARSE_TRAINING
from lottery.imp.hparams import ExperimentConfig
from lottery.imp.runner import SeedRunner, run_levels, runners
from lottery.report import curve
from lottery.report.matching import winning_level
from lottery.report.rows import IMP_METHOD, seed_rows

# Keys that may change between starts of the same experiment: more levels, more branches, other
# hardware, another seed (each seed has its own folder), and where the folder is (a copied or
# moved run folder resumes wherever it lies, however runs_dir is spelt).
MUTABLE = {"prune.levels", "branches", "matching_tolerance", "trainer", "seed", "seeds", "launcher", "name",
           "runs_dir", "prune.allow_empty_layers"}
Log = Callable[[str], None]


# -- before anything is written ---------------------------------------------------------------------
def check(cfg: ExperimentConfig, seeds: Sequence[int] | None = None,
          log_of: Callable[[int], Log] = lambda seed: print) -> tuple[RunLayout, list[SeedRunner]]:
    """Build and check everything a run of `cfg` needs, writing nothing; return its run folder and the runners
    of `seeds` (default: the config's), their dataset loaded once, for the run to use.

    log_of(seed): where that seed's runner logs.
    """
    validate(cfg)
    run = RunLayout(check_folder(cfg))
    seeds = list(seeds or cfg.seeds or [cfg.seed])
    with torch.random.fork_rng(devices=[]):  # building a model draws random numbers: leave the run's untouched
        world_size = _trainer_world_size(cfg)
        seed_runners = runners(cfg, [run.seed(s) for s in seeds], log_of)
        _check_build(seed_runners[0], world_size)
    return run, seed_runners


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


def _check_build(runner: SeedRunner, world_size: int) -> None:
    """Data, model, masks, optimizer and schedule, built the way the IMP runner builds them."""
    from lottery.training.optimizers import make_optimizer

    cfg, data = runner.cfg, runner.data
    if hasattr(data, "per_process_batch"):
        data.per_process_batch(world_size)
    _check_batch_size(cfg, data)
    model = runner.models.fresh(runner.seed)
    runner.models.masks_for(model)
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
    _check_sparse_training(runner, runner.models.masks_for(model))


def _check_sparse_training(runner: SeedRunner, masks) -> None:
    """The sparse-training schedule fits the training, and the distributions can share out the sparsest level's
    density: the density IMP's pruning reaches there (fraction x each tensor's rate, per level)."""
    cfg, total = runner.cfg, runner.total_steps
    sparse = set(SPARSE_TRAINING) & set(cfg.branches)
    if sparse:
        end = runner.models.schedule(total).end_step
        if end >= total:
            raise LotteryError(f"sparse.end_step={end} is past the training ({total} steps: 0 .. {total - 1}); choose "
                               f"sparse.end_step < {total}, or null for 75% of it")
    p, levels = cfg.prune, cfg.prune.levels
    checks = ([(cfg.sparse.distribution, f"branches {sorted(sparse)}")] if sparse else []) + (
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
    run_dir = saved.parent
    old, new = load_saved(saved).flat(skip=MUTABLE), cfg.flat(skip=MUTABLE)
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


# -- the run -----------------------------------------------------------------------------------------
def prepare(cfg: ExperimentConfig, seeds: Sequence[int] | None = None,
            log_of: Callable[[int], Log] = lambda seed: print) -> tuple[RunLayout, list[SeedRunner]]:
    """Check everything the run needs (`check`), then create the run folder or reuse this experiment's.

    Returns the run folder and the runners the check built (for the run: the data is read once)."""
    run, seed_runners = check(cfg, seeds, log_of)  # writes nothing: a failed check leaves no folder behind
    files.write_text(run.config, to_yaml(cfg))
    return run, seed_runners


def run(cfg: ExperimentConfig, log=print) -> Path:
    """Run (or resume) every level of the experiment, then write the curve and export the ticket."""
    log = log if files.is_writer() else (lambda *_: None)
    seeds = cfg.seeds or [cfg.seed]
    prefix = (lambda s: f"seed {s}  ") if len(seeds) > 1 else (lambda s: "")
    run_layout, seed_runners = prepare(cfg, log_of=lambda s: (lambda line: log(prefix(s) + line)))
    log(f"experiment {cfg.name}: {cfg.model.name} on {cfg.data.name}, {cfg.prune.levels} levels of "
        f"{cfg.prune.fraction:.0%} {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step}), "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    with contextlib.ExitStack() as locks:
        for s in seeds:
            locks.enter_context(files.exclusive(run_layout.seed(s).lock, f"seed {s} of {run_layout.path}"))
        results = run_levels(seed_runners, log=log)
    # This run's metrics are in hand; other seeds in the folder (other processes' runs) are read once.
    rows = seed_rows(run_layout, known=_by_folder(seed_runners, results))
    write_curve(run_layout, cfg, rows)
    mine = [r for r in rows if r["seed"] == seeds[0] and r["method"] == IMP_METHOD]
    best = winning_level(mine, cfg.matching_tolerance)
    path = write_ticket(cfg, run_layout, best, run_layout.ticket_file)
    log(f"winning ticket{f' of seed {seeds[0]}' if len(seeds) > 1 else ''}: level {best['level']}, "
        f"{best['density']:.2%} of weights remaining, test acc {best['test_acc']:.2%} (dense {mine[0]['test_acc']:.2%}) -> {path}")
    log(f"curve: {run_layout.curve('png')}, table: {run_layout.curve('csv')}, report: {run_layout.report}")
    return run_layout.path


def _by_folder(seed_runners: list[SeedRunner], results: list[list[dict]]) -> dict[Path, dict]:
    """Each training's metrics by its folder: every level's and branch's of `run_levels`' results."""
    known = {}
    for runner, levels in zip(seed_runners, results):
        for level, metrics in enumerate(levels):
            folder = runner.files.level(level)
            known[folder.path] = metrics
            known.update({folder.branch(b).path: m for b, m in metrics.get("branches", {}).items()})
    return known


def write_curve(run_layout: RunLayout, cfg: ExperimentConfig, rows: list[dict] | None = None) -> list[dict]:
    """Rebuild curve.csv, curve_seeds.csv, curve.png and report.md from the finished levels of every seed
    (`rows`, read from the folder when not given)."""
    rows = seed_rows(run_layout) if rows is None else rows
    if not rows:
        raise LotteryError(f"{run_layout.path} has no finished level yet; run `lottery run` first")
    title = f"{cfg.model.name} on {cfg.data.name}: IMP {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step})"
    return curve.write_all(run_layout, rows, cfg.matching_tolerance, title, BUILDS_ON)
