"""The ticket of a run folder: which level (the winning one, or one asked for), written as a ticket file, or
exported in a deployable format (lottery.export)."""
from __future__ import annotations

import datetime
import platform
import tempfile
from pathlib import Path

import torch

from lottery.cli.config import load_saved
from lottery.core import files
from lottery.core.errors import LotteryError, require
from lottery.core.layout import RunLayout
from lottery.core.ticket import Ticket, save_ticket
from lottery.core.schema import ExperimentConfig
from lottery.report.matching import at_chance, winning_level
from lottery.report.rows import IMP_METHOD, seed_rows


def load_run_config(run_dir: Path) -> ExperimentConfig:
    path = RunLayout(Path(run_dir)).config
    if not path.exists():
        raise LotteryError(f"{run_dir} is not a lottery run folder (no config.yaml); pass e.g. runs/demo")
    return load_saved(path)


def export(run_dir: Path, level: int | None, out: Path, seed: int | None = None, branch: str | None = None) -> Path:
    """Write the ticket of `level` (default: the winning ticket, see lottery.report.matching.winning_level) to `out`;
    with `branch`, that branch's network off the level (default: its sparsest level that matches the dense one)."""
    run_layout = RunLayout(Path(run_dir))
    cfg = load_run_config(run_layout.path)
    seed = cfg.seed if seed is None else seed
    method = IMP_METHOD if branch is None else branch
    rows = seed_rows(run_layout, seed=seed)
    where = run_layout.seed(seed).path
    own = [r for r in rows if r["method"] == method]
    if not own:
        what = "level" if branch is None else f"training of branch {branch!r} (branches here: " \
            f"{', '.join(sorted({r['method'] for r in rows} - {IMP_METHOD})) or 'none'})"
        raise LotteryError(f"{where} has no finished {what} to export; run `lottery run` first")
    dense = next((r for r in rows if r["method"] == IMP_METHOD and r["level"] == 0), None)
    if level is None and dense is not None and at_chance(dense):
        raise LotteryError(f"{where} has no winning ticket: its dense network is at chance (test acc "
                           f"{dense['test_acc']:.2%}, the most frequent class {dense['chance_acc']:.2%}); export a "
                           "level of it with --level N if you want it anyway")
    row = winning_level(rows, cfg.matching_tolerance, method) if level is None else next(
        (r for r in own if r["level"] == level), None)
    if row is None:
        raise LotteryError(f"level {level} is not finished in {where}{'' if branch is None else f' for {branch}'}; "
                           f"finished levels: {[r['level'] for r in own]}")
    return write_ticket(cfg, run_layout, row, out)


def write_ticket(cfg: ExperimentConfig, run_layout: RunLayout, row: dict, out: Path) -> Path:
    """The ticket of the IMP level or branch `row` (a row of lottery.report.rows) of the run `cfg` describes, to
    `out`: its masks, the run's rewind point under them, the weights it trained to."""
    seed_dir = run_layout.seed(row["seed"])
    level_dir = seed_dir.level(row["level"])
    training = level_dir if row["method"] == IMP_METHOD else level_dir.branch(row["method"])
    masks = files.load_tensors(training.mask)
    rewind_state = files.load_tensors(seed_dir.rewind(cfg.rewind.step))
    rewind_state.update({n: rewind_state[n] * m for n, m in masks.items()})  # the ticket: rewind weights, pruned
    final = files.load_tensors(training.final)
    if not files.is_writer():
        return Path(out)
    return save_ticket(Ticket(masks, rewind_state, final, _metadata(cfg, row)), out)


def export_as(run_dir: str | Path, fmt: str, out: str | Path, level: int | None = None,
              seed: int | None = None, dtype: str = "fp32", log=print, branch: str | None = None) -> Path:
    """`lottery export RUN_DIR --format FMT`: the run's ticket (or a branch's, or a ticket file given as RUN_DIR),
    exported as `fmt`."""
    from lottery.export import FORMATS, export_ticket

    if fmt not in FORMATS:
        raise LotteryError(f"unknown export format {fmt!r}; choose one of: ticket, {', '.join(FORMATS)}")
    if fmt == "onnx":  # checked before anything is built or written
        require("onnx", "the ONNX export", "onnx"), require("onnxruntime", "checking the ONNX export", "onnx")
    if fmt == "hf":
        require("transformers", "the Hugging Face export", "hf")
    source = Path(run_dir)
    if source.is_file():
        return export_ticket(source, fmt, out, dtype, log)
    with tempfile.TemporaryDirectory() as tmp:
        ticket = export(source, level, Path(tmp) / "ticket.safetensors", seed=seed, branch=branch)
        return export_ticket(ticket, fmt, out, dtype, log)


def _metadata(cfg: ExperimentConfig, row: dict) -> dict:
    """What a ticket says about itself: architecture and input, where it came from, how good it is."""
    import pytorch_lightning

    import lottery
    from lottery.data import create_datamodule

    data = create_datamodule(cfg.data.name, **cfg.data.options)  # for its shapes; loads nothing
    return {
        "architecture": cfg.model.name, "num_classes": data.num_classes, "input_shape": list(data.input_shape),
        "dataset": cfg.data.name, "level": row["level"], "density": row["density"],
        "sparsity": 1 - row["density"], "test_acc": row["test_acc"], "val_acc": row["final_val_acc"], "seed": row["seed"],
        "rewind_policy": cfg.rewind.policy, "rewind_step": cfg.rewind.step, "fraction": cfg.prune.fraction,
        "strategy": cfg.prune.strategy, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **({} if row["method"] == IMP_METHOD else {  # a branch: which, its options, the densities it trained to
            "branch": row["method"], "options": cfg.methods.get(row["method"], {}),
            "target_density": row.get("target_density") or row.get("layer_density")}),
        "versions": {"lottery": lottery.__version__, "torch": torch.__version__,
                     "pytorch_lightning": pytorch_lightning.__version__, "python": platform.python_version()},
        **_hf_metadata(cfg),
    }


def _hf_metadata(cfg: ExperimentConfig) -> dict:
    """What rebuilds an hf: model and its tokenizer from a ticket (lottery.export.source); nothing for other models."""
    from lottery.models import HF

    if not cfg.model.name.startswith(HF):
        return {}
    tokenizer = cfg.data.options.get("tokenizer", cfg.model.name.removeprefix(HF)) if cfg.data.name == "text" else None
    return {"model_options": dict(cfg.model.options), **({"tokenizer": tokenizer} if tokenizer else {})}
