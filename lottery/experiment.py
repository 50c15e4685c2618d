"""An experiment folder: the resolved config, one IMP run per seed, the curve and the exported ticket.

    runs/<name>/config.yaml             the resolved config (checked on every start)
    runs/<name>/seed_<s>/init.safetensors, level_<NN>/{mask,final}.safetensors, metrics.json
    runs/<name>/curve.csv, curve.png    the sparsity-vs-accuracy curve
    runs/<name>/ticket.safetensors      the winning ticket
"""
from __future__ import annotations

import datetime
import platform
from pathlib import Path

import torch

from lottery import curve, io, preflight
from lottery.config import ExperimentConfig, to_yaml
from lottery.errors import LotteryError
from lottery.imp import IMP, rewind_file
from lottery.ticket import Ticket, save_ticket

def prepare(cfg: ExperimentConfig) -> Path:
    """Check everything the run needs (lottery.preflight), then create the run folder or reuse this experiment's."""
    run_dir = preflight.check(cfg)  # writes nothing: a failed check leaves no folder behind
    io.write_text(run_dir / "config.yaml", to_yaml(cfg))
    return run_dir


def run(cfg: ExperimentConfig, log=print) -> Path:
    """Run (or resume) every level of the experiment, then write the curve and export the ticket."""
    log = log if io.is_writer() else (lambda *_: None)
    run_dir = prepare(cfg)
    seed_dir = run_dir / f"seed_{cfg.seed}"
    log(f"experiment {cfg.name}: {cfg.model.name} on {cfg.data.name}, {cfg.prune.levels} levels of "
        f"{cfg.prune.fraction:.0%} {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step}), seed {cfg.seed}")
    with io.exclusive(seed_dir / ".lock", f"seed {cfg.seed} of {run_dir}"):
        IMP(cfg, cfg.seed, seed_dir, log=log).run()
    write_curve(run_dir, cfg)
    rows = [r for r in curve.seed_rows(run_dir) if r["seed"] == cfg.seed and r["method"] == curve.TICKET]
    best = curve.matching_level(rows, cfg.matching_tolerance)
    path = export(run_dir, best["level"], run_dir / "ticket.safetensors")
    log(f"winning ticket: level {best['level']}, {best['density']:.2%} of weights remaining, "
        f"test acc {best['test_acc']:.2%} (dense {rows[0]['test_acc']:.2%}) -> {path}")
    log(f"curve: {run_dir / 'curve.png'}, table: {run_dir / 'curve.csv'}, report: {run_dir / 'report.md'}")
    return run_dir


def write_curve(run_dir: Path, cfg: ExperimentConfig) -> list[dict]:
    """Rebuild curve.csv, curve_seeds.csv, curve.png and report.md from the finished levels of every seed."""
    if not curve.seed_rows(run_dir):
        raise LotteryError(f"{run_dir} has no finished level yet; run `lottery run` first")
    title = f"{cfg.model.name} on {cfg.data.name}: IMP {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step})"
    return curve.write_all(run_dir, cfg.matching_tolerance, title)


def load_run_config(run_dir: Path) -> ExperimentConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise LotteryError(f"{run_dir} is not a lottery run folder (no config.yaml); pass e.g. runs/demo")
    return preflight.load_saved(path)


def export(run_dir: Path, level: int | None, out: Path, seed: int | None = None) -> Path:
    """Write the ticket of `level` (default: the sparsest matching level) to `out`."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    seed = cfg.seed if seed is None else seed
    seed_dir = run_dir / f"seed_{seed}"
    table = [r for r in curve.seed_rows(run_dir) if r["seed"] == seed and r["method"] == curve.TICKET]
    if not table:
        raise LotteryError(f"{seed_dir} has no finished level to export; run `lottery run` first")
    row = curve.matching_level(table, cfg.matching_tolerance) if level is None else next(
        (r for r in table if r["level"] == level), None)
    if row is None:
        raise LotteryError(f"level {level} is not finished in {seed_dir}; finished levels: {[r['level'] for r in table]}")
    level_dir = seed_dir / f"level_{row['level']:02d}"
    masks = io.load_tensors(level_dir / "mask.safetensors")
    rewind_state = io.load_tensors(rewind_file(seed_dir, cfg.rewind.step))
    rewind_state.update({n: rewind_state[n] * m for n, m in masks.items()})  # the ticket: rewind weights, pruned
    import lottery
    import pytorch_lightning

    from lottery.data import create_datamodule

    data = create_datamodule(cfg.data.name, **cfg.data.options)  # for its shapes; loads nothing
    metadata = {
        "architecture": cfg.model.name, "num_classes": data.num_classes, "input_shape": list(data.input_shape),
        "dataset": cfg.data.name, "level": row["level"], "density": row["density"],
        "sparsity": 1 - row["density"], "test_acc": row["test_acc"], "val_acc": row["final_val_acc"], "seed": seed,
        "rewind_policy": cfg.rewind.policy, "rewind_step": cfg.rewind.step, "fraction": cfg.prune.fraction,
        "strategy": cfg.prune.strategy, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"lottery": lottery.__version__, "torch": torch.__version__,
                     "pytorch_lightning": pytorch_lightning.__version__, "python": platform.python_version()},
    }
    final = io.load_tensors(level_dir / "final.safetensors")
    if not io.is_writer():
        return Path(out)
    return save_ticket(Ticket(masks, rewind_state, final, metadata), out)
