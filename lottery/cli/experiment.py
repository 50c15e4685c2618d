"""An experiment folder: the resolved config, one IMP run per seed, the curve and the exported ticket (where each
file lives: lottery.core.layout).

`run(cfg)`: the plan (lottery.cli.plan: every check, nothing written), then config.yaml, every level of every seed
(lottery.imp.runner), the report of the folder's rows (lottery.report), and the winning ticket it names.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from lottery.cli.plan import Plan, plan
from lottery.cli.tickets import write_ticket
from lottery.core import files
from lottery.core.layout import RunLayout
from lottery.core.progress import duration
from lottery.core.schema import ExperimentConfig
from lottery.imp.runner import run_levels
from lottery.report.curve import write_report
from lottery.report.rows import seed_rows


def run(cfg: ExperimentConfig, log=print, verbose: bool = False) -> Path:
    """Run (or resume) every level of the experiment, then write the report and export the ticket.

    verbose: also say how each level's runs were grouped as lanes, and why."""
    log = log if files.is_writer() else (lambda *_: None)
    started, seeds = time.monotonic(), cfg.seeds or [cfg.seed]
    prefix = (lambda s: f"seed {s}  ") if len(seeds) > 1 else (lambda s: "")
    p = plan(cfg, log_of=lambda s: (lambda line: log(prefix(s) + line)))  # writes nothing: a failed check leaves no folder
    p.start()
    cfg = p.cfg
    log(f"experiment {cfg.name}: {cfg.model.name} on {cfg.data.name}, {cfg.prune.levels} level{'s' if cfg.prune.levels != 1 else ''} of "
        f"{cfg.prune.fraction:.0%} {cfg.prune.strategy}, rewind {cfg.rewind.policy} (k={cfg.rewind.step}), "
        f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    with contextlib.ExitStack() as locks:
        for s in seeds:
            locks.enter_context(files.exclusive(p.layout.seed(s).lock, f"seed {s} of {p.layout.path}"))
        results = run_levels(p.runners, detail=log if verbose else None)
    # This run's metrics are in hand; other seeds in the folder (other processes' runs) are read once.
    report = write_report(p.layout, cfg, seed_rows(p.layout, known=_by_folder(p, results)))
    best = report.ticket(seeds[0])
    path = write_ticket(cfg, p.layout, best, p.layout.ticket_file) if best is not None else None
    log(report.verdict(seeds[0], of_seed=len(seeds) > 1) + (f" -> {path}" if path else ""))
    log(f"done in {duration(time.monotonic() - started)}; curve: {p.layout.curve('png')}, table: "
        f"{p.layout.curve('csv')}, report: {p.layout.report}")
    return p.layout.path


def _by_folder(p: Plan, results: list[list[dict]]) -> dict[Path, dict]:
    """Each training's metrics by its folder: every level's and branch's of `run_levels`' results."""
    known = {}
    for runner, levels in zip(p.runners, results):
        for level, metrics in enumerate(levels):
            folder = runner.files.level(level)
            known[folder.path] = metrics
            known.update({folder.branch(b).path: m for b, m in metrics.get("branches", {}).items()})
    return known


def write_curve(run_layout: RunLayout, cfg: ExperimentConfig):
    """Rebuild curve.csv, curve_seeds.csv, curve.png and report.md from the finished levels of every seed."""
    return write_report(run_layout, cfg, seed_rows(run_layout))
