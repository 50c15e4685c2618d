"""An experiment folder: the resolved config, one IMP run per seed, the curve and the exported ticket
(where each file lives: lottery.layout).

Before anything is written, `check(cfg)` builds what a run builds (data and its splits, model, masks,
optimizer, learning-rate schedule, the Lightning Trainer's settings) and checks the run folder; a
mistake is a LotteryError naming the key and the fix, so a failed start leaves no folder behind and
the corrected command starts in the same folder. An experiment is identified by what it computes:
its folder's name and location take no part.
"""
from __future__ import annotations

import contextlib
import datetime
import math
import platform
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch

from lottery import curve, files
from lottery.config import load_saved, to_yaml, validate
from lottery.errors import LotteryError
from lottery.hparams import ExperimentConfig
from lottery.imp import IMP, run_seeds
from lottery.layout import RunLayout
from lottery.ticket import Ticket, save_ticket

# Keys that may change between starts of the same experiment: more levels, more branches, other
# hardware, another seed (each seed has its own folder), and where the folder is (a copied or
# moved run folder resumes wherever it lies, however runs_dir is spelt).
MUTABLE = {"prune.levels", "branches", "matching_tolerance", "trainer", "seed", "seeds", "launcher", "name",
           "runs_dir", "prune.allow_empty_layers"}


# -- before anything is written ---------------------------------------------------------------------
def check(cfg: ExperimentConfig) -> tuple[Path, pl.LightningDataModule]:
    """Build and check everything a run of `cfg` needs, writing nothing; return its run folder and its
    dataset, loaded (the run reuses it instead of reading it again)."""
    validate(cfg)
    run_dir = check_folder(cfg)
    with torch.random.fork_rng(devices=[]):  # building a model draws random numbers: leave the run's untouched
        world_size = _trainer_world_size(cfg)
        return run_dir, _check_build(cfg, run_dir, world_size)


def _trainer_world_size(cfg) -> int:
    """Let Lightning check accelerator, devices, strategy and precision, as `lottery.trainer` passes them."""
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


def _check_build(cfg: ExperimentConfig, run_dir: Path, world_size: int) -> pl.LightningDataModule:
    """Data, model, masks, optimizer and schedule, built the way the IMP runner builds them."""
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
def prepare(cfg: ExperimentConfig) -> tuple[RunLayout, pl.LightningDataModule]:
    """Check everything the run needs (`check`), then create the run folder or reuse this experiment's.

    Returns the run folder and the dataset the check loaded (for the run: it is read once)."""
    run_dir, data = check(cfg)  # writes nothing: a failed check leaves no folder behind
    run = RunLayout(run_dir)
    files.write_text(run.config, to_yaml(cfg))
    return run, data


def run(cfg: ExperimentConfig, log=print) -> Path:
    """Run (or resume) every level of the experiment, then write the curve and export the ticket."""
    log = log if files.is_writer() else (lambda *_: None)
    run_layout, data = prepare(cfg)
    seeds = cfg.seeds or [cfg.seed]
    log(f"experiment {cfg.name}: {cfg.model.name} on {cfg.data.name}, {cfg.prune.levels} levels of "
        f"{cfg.prune.fraction:.0%} {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step}), "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    with contextlib.ExitStack() as locks:
        for s in seeds:
            locks.enter_context(files.exclusive(run_layout.seed(s).lock, f"seed {s} of {run_layout.path}"))
        prefix = (lambda s: f"seed {s}  ") if len(seeds) > 1 else (lambda s: "")
        # The dataset is read once (by the check), for every seed.
        imps = [IMP(cfg, run_layout.seed(s), log=lambda line, s=s: log(prefix(s) + line), shared=data) for s in seeds]
        run_seeds(imps, log=log)
    write_curve(run_layout, cfg)
    rows = curve.seed_rows(run_layout, seed=seeds[0], method=curve.TICKET)
    best = curve.winning_level(rows, cfg.matching_tolerance)
    path = write_ticket(cfg, run_layout, best["level"], run_layout.ticket, seed=seeds[0])
    log(f"winning ticket{f' of seed {seeds[0]}' if len(seeds) > 1 else ''}: level {best['level']}, "
        f"{best['density']:.2%} of weights remaining, test acc {best['test_acc']:.2%} (dense {rows[0]['test_acc']:.2%}) -> {path}")
    log(f"curve: {run_layout.curve('png')}, table: {run_layout.curve('csv')}, report: {run_layout.report}")
    return run_layout.path


def write_curve(run_layout: RunLayout, cfg: ExperimentConfig) -> list[dict]:
    """Rebuild curve.csv, curve_seeds.csv, curve.png and report.md from the finished levels of every seed."""
    if not curve.seed_rows(run_layout):
        raise LotteryError(f"{run_layout.path} has no finished level yet; run `lottery run` first")
    title = f"{cfg.model.name} on {cfg.data.name}: IMP {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step})"
    return curve.write_all(run_layout, cfg.matching_tolerance, title)


def load_run_config(run_dir: Path) -> ExperimentConfig:
    path = RunLayout(Path(run_dir)).config
    if not path.exists():
        raise LotteryError(f"{run_dir} is not a lottery run folder (no config.yaml); pass e.g. runs/demo")
    return load_saved(path)


def export(run_dir: Path, level: int | None, out: Path, seed: int | None = None) -> Path:
    """Write the ticket of `level` (default: the winning ticket, see curve.winning_level) to `out`."""
    run_layout = RunLayout(Path(run_dir))
    return write_ticket(load_run_config(run_layout.path), run_layout, level, out, seed)


def write_ticket(cfg: ExperimentConfig, run_layout: RunLayout, level: int | None, out: Path, seed: int | None = None
                 ) -> Path:
    """`export` of the run `cfg` describes, whose folder is `run_layout`."""
    seed = cfg.seed if seed is None else seed
    seed_dir = run_layout.seed(seed)
    table = curve.seed_rows(run_layout, seed=seed, method=curve.TICKET)
    if not table:
        raise LotteryError(f"{seed_dir.path} has no finished level to export; run `lottery run` first")
    row = curve.winning_level(table, cfg.matching_tolerance) if level is None else next(
        (r for r in table if r["level"] == level), None)
    if row is None:
        raise LotteryError(f"level {level} is not finished in {seed_dir.path}; finished levels: {[r['level'] for r in table]}")
    level_dir = seed_dir.level(row["level"])
    masks = files.load_tensors(level_dir.mask)
    rewind_state = files.load_tensors(seed_dir.rewind(cfg.rewind.step))
    rewind_state.update({n: rewind_state[n] * m for n, m in masks.items()})  # the ticket: rewind weights, pruned
    final = files.load_tensors(level_dir.final)
    if not files.is_writer():
        return Path(out)
    return save_ticket(Ticket(masks, rewind_state, final, _metadata(cfg, row, seed)), out)


def export_as(run_dir: str | Path, fmt: str, out: str | Path, level: int | None = None,
               seed: int | None = None, dtype: str = "fp32", log=print) -> Path:
    """`lottery export RUN_DIR --format FMT`: the run's ticket (or a ticket file given as RUN_DIR), exported as `fmt`."""
    import tempfile

    from lottery.export import FORMATS, export_ticket
    from lottery.errors import require

    if fmt not in FORMATS:
        raise LotteryError(f"unknown export format {fmt!r}; choose one of: ticket, {', '.join(FORMATS)}")
    if fmt == "onnx":  # checked before anything is built or written
        require("onnx", "the ONNX export", "onnx"), require("onnxruntime", "checking the ONNX export", "onnx")
    source = Path(run_dir)
    if source.is_file():
        return export_ticket(source, fmt, out, dtype, log)
    with tempfile.TemporaryDirectory() as tmp:
        ticket = export(source, level, Path(tmp) / "ticket.safetensors", seed=seed)
        return export_ticket(ticket, fmt, out, dtype, log)


def _metadata(cfg: ExperimentConfig, row: dict, seed: int) -> dict:
    """What a ticket says about itself: architecture and input, where it came from, how good it is."""
    import pytorch_lightning

    import lottery
    from lottery.data import create_datamodule

    data = create_datamodule(cfg.data.name, **cfg.data.options)  # for its shapes; loads nothing
    return {
        "architecture": cfg.model.name, "num_classes": data.num_classes, "input_shape": list(data.input_shape),
        "dataset": cfg.data.name, "level": row["level"], "density": row["density"],
        "sparsity": 1 - row["density"], "test_acc": row["test_acc"], "val_acc": row["final_val_acc"], "seed": seed,
        "rewind_policy": cfg.rewind.policy, "rewind_step": cfg.rewind.step, "fraction": cfg.prune.fraction,
        "strategy": cfg.prune.strategy, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"lottery": lottery.__version__, "torch": torch.__version__,
                     "pytorch_lightning": pytorch_lightning.__version__, "python": platform.python_version()},
    }
