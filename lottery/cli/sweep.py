"""A sweep: a grid of experiments x seeds, each one `lottery run` job, submitted through lottery.cli.launcher.

    runs/sweeps/<name>/sweep.yaml   the command: config, overrides, seeds, folder it was started from
    runs/sweeps/<name>/grid.csv     one row per grid point: experiment, axis values, run folder, command
    runs/sweeps/<name>/jobs.json    the last job submitted for each experiment/seed: job id, log files
    runs/sweeps/<name>/jobs/<id>/   submitit's files per job: logs, the pickled job, its result
    runs/sweeps/<name>/summary.csv, summary.png, summary.md   the grid points' curves side by side

Experiments live in the shared runs folder like any other (`runs/<name>,<key>=<value>/`), so a job
skips finished levels and resumes an interrupted one, and submitting the sweep again submits only
the experiment/seeds that are neither finished nor still queued or running.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from lottery.cli import grid, launcher
from lottery.cli.config import load_config
from lottery.cli.keys import check_keys
from lottery.core import files
from lottery.core.errors import LotteryError
from lottery.core.layout import RunLayout
from lottery.core.schema import ExperimentConfig
from lottery.report.curve import write_report
from lottery.report.markdown import markdown_report
from lottery.report.matching import sparsest_matching
from lottery.report.plots import plot_sweep
from lottery.report.rows import seed_rows


def _layout(cfg: ExperimentConfig) -> RunLayout:
    return RunLayout.of(cfg.runs_dir, cfg.name)


def finished_levels(cfg: ExperimentConfig, seed: int) -> list[int]:
    """Levels of `seed` whose ticket and branches are trained (metrics.json, written last, marks each done)."""
    def done(level: int) -> bool:
        files_of = _layout(cfg).seed(seed).level(level)
        return files_of.done and all(files_of.branch(b).done for b in (cfg.branches if level > 0 else []))

    return [level for level in range(cfg.prune.levels + 1) if done(level)]


@dataclass
class Job:
    """One `lottery run` of a grid point: one seed, or, when its runs train as lanes (trainer.lanes other
    than 1), all the sweep's seeds in one process, so that every seed's ticket and branches share each step."""

    point: grid.Point
    cfg: ExperimentConfig
    seeds: tuple[int, ...]

    @property
    def key(self) -> str:
        s = self.seeds
        return f"{self.point.name}/seed_{s[0]}" if len(s) == 1 else f"{self.point.name}/seeds_{'_'.join(map(str, s))}"

    @property
    def overrides(self) -> list[str]:
        s = self.seeds
        return [*self.point.overrides, f"seed={s[0]}" if len(s) == 1 else f"seeds=[{','.join(map(str, s))}]"]

    def finished_levels(self) -> list[int]:
        """Levels finished for every seed of the job."""
        return sorted(set.intersection(*(set(finished_levels(self.cfg, s)) for s in self.seeds)))


class Sweep:
    """The grid of `overrides` over `config`; every point's config is loaded and checked here."""

    def __init__(self, config: str | None, overrides: list[str], cwd: str | None = None):
        self.config, self.overrides, self.cwd = config, list(overrides), cwd or os.getcwd()
        self.grid = grid.parse(self.overrides)
        self.base = load_config(config, self.grid.fixed)
        launcher.check(self.base.launcher)
        self._resolved: dict[tuple, ExperimentConfig] = {}
        self.points = grid.points(self.grid, self.base.name, self._canonical)
        configs = {p.name: self._load(p.overrides) for p in self.points}
        seeds = self.grid.seeds if self.grid.seeds is not None else [self.base.seed]
        self.jobs = [Job(p, configs[p.name], group) for p in self.points
                     for group in ([tuple(seeds)] if configs[p.name].trainer.lanes != 1 else [(s,) for s in seeds])]
        self.seeds = seeds
        self.dir = Path(self.base.runs_dir) / "sweeps" / self.base.name

    def _load(self, overrides: list[str]) -> ExperimentConfig:
        key = tuple(overrides)
        if key not in self._resolved:
            try:
                self._resolved[key] = check_keys(load_config(self.config, overrides))[0]
            except LotteryError as e:
                raise LotteryError(f"grid point {' '.join(o for o in overrides if o not in self.grid.fixed)}: {e}") from None
        return self._resolved[key]

    def _canonical(self, overrides: list[str], key: str) -> str:
        return grid.format_value(OmegaConf.select(OmegaConf.structured(self._load(overrides)), key))

    def run_of(self, job: Job) -> launcher.LotteryRun:
        return launcher.LotteryRun(self.cwd, self.config, job.overrides)

    # -- state --------------------------------------------------------------------------------------
    def records(self) -> dict:
        path = self.dir / "jobs.json"
        return files.read_json(path) if path.exists() else {}

    def status(self) -> list[dict]:
        """Per job (experiment/seed): finished levels, state (done, running, pending, failed, unfinished) and log."""
        records, rows = self.records(), []
        submitted = [records[j.key] for j in self.jobs if j.key in records]
        known = dict(zip([j.key for j in self.jobs if j.key in records], launcher.states(submitted) if submitted else []))
        for job in self.jobs:
            done, total = job.finished_levels(), job.cfg.prune.levels + 1
            rec = records.get(job.key)
            state, detail = ("done", "") if len(done) == total else known[job.key] if rec else ("unfinished", "not submitted")
            if state in ("ended", "submitted") and len(done) < total:
                state, detail = ("unfinished", "ended before its last level") if state == "ended" else (state, detail)
            rows.append({"job": job, "key": job.key, "levels": done, "total": total, "state": state,
                         "detail": detail, "log": rec["stderr"] if rec and state == "failed" else ""})
        return rows

    # -- submission ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Check (and create) every experiment folder and write the sweep's own files; nothing is submitted."""
        from lottery.cli.plan import plan

        for point in self.points:
            plan(self._load(point.overrides)).start()
        files.write_text(self.dir / "sweep.yaml", OmegaConf.to_yaml({"config": self.config, "overrides": self.overrides,
                                                                  "seeds": self.seeds, "cwd": self.cwd}))
        keys = [k for k, _ in self.grid.axes]
        rows = [{"experiment": p.name, **{k: p.values[k] for k in keys}, "seeds": " ".join(map(str, self.seeds)),
                 "run_dir": str(_layout(self._load(p.overrides)).path),
                 "command": launcher.LotteryRun(self.cwd, self.config, p.overrides).command()
                 + (f" seeds=[{','.join(map(str, self.seeds))}]" if self._load(p.overrides).trainer.lanes != 1 else " seed=S")}
                for p in self.points]
        files.write_csv(self.dir / "grid.csv", rows)

    def todo(self) -> list[Job]:
        return [r["job"] for r in self.status() if r["state"] not in ("done", "running", "pending")]

    def submit(self, log=print) -> int:
        """Submit the unfinished jobs; with the local launcher, run them and write the summary. Returns an exit code."""
        lc = self.base.launcher
        todo = self.todo()
        tasks = self.base.trainer.devices if lc.kind == "slurm" and isinstance(self.base.trainer.devices, int) else 1
        ex = launcher.executor(lc, self.dir / "jobs", f"lottery-{self.base.name}", tasks_per_node=max(1, tasks),
                               nodes=self.base.trainer.num_nodes if lc.kind == "slurm" else 1)
        log(f"sweep {self.base.name}: {len(self.points)} experiment(s) x {len(self.seeds)} seed(s); "
            f"{len(todo)} of {len(self.jobs)} job(s) to {'run' if lc.kind == 'local' else 'submit'} ({self.dir})")
        if not todo:
            self.summary(log)
            return 0
        self.prepare()
        runs, records = [self.run_of(job) for job in todo], self.records()

        def submitted(i: int, sub) -> None:
            records[todo[i].key] = launcher.record(sub, lc.kind)
            files.write_json(self.dir / "jobs.json", records)

        if lc.kind == "slurm":
            jobs = launcher.submit_slurm(ex, runs)
            for i, sub in enumerate(jobs):
                submitted(i, sub)
            log(f"submitted {len(jobs)} job(s) (SLURM job {jobs[0].job_id.split('_')[0]}, {lc.parallel} at a time); "
                f"logs in {self.dir / 'jobs'}; follow with the same command and --status")
            return 0
        return self._run_here(ex, todo, runs, records, submitted, log)

    def _run_here(self, ex, todo: list[Job], runs: list, records: dict, submitted, log) -> int:
        """Run the jobs on this machine, `parallel` at a time, logging each end; then the summary."""
        start, ok = time.time(), []

        def ended(i: int, sub) -> None:
            state, detail = launcher.states([records[todo[i].key]])[0]
            ok.append(state == "ended")
            line = f"  {'done' if state == 'ended' else state:7s} {todo[i].key}  ({time.time() - start:.0f} s)"
            log(line if state == "ended" else f"{line}: {detail}; log {sub.paths.stderr}")

        launcher.run_local(ex, runs, self.base.launcher.parallel, submitted, ended)
        self.summary(log)
        failed = ok.count(False)
        if failed:
            log(f"{failed} job(s) failed; `lottery sweep ... --status` lists them, the same command resubmits them")
        return 1 if failed else 0

    # -- summary ------------------------------------------------------------------------------------
    def summary(self, log=print) -> Path | None:
        """summary.csv (every point's curve.csv, with its axis values), summary.png and summary.md."""
        rows, keys = [], [k for k, _ in self.grid.axes]
        for point in self.points:
            cfg = self._load(point.overrides)
            run = _layout(cfg)
            finished = seed_rows(run)
            if not finished:
                continue
            write_report(run, cfg, finished)  # rebuilt: seeds that ended together may each have written an older one
            for row in _read_csv(run.curve("csv")):
                rows.append({"experiment": point.name, **{k: point.values[k] for k in keys}, **row})
        if not rows:
            return None
        files.write_csv(self.dir / "summary.csv", rows)
        plot_sweep(rows, self.dir / "summary.png", f"sweep {self.base.name}: winning tickets, test accuracy (mean ± std over seeds)")
        agg = [{"experiment": r["experiment"], "level": int(r["level"]), "density_mean": float(r["density"]),
                "test_acc_mean": float(r["test_acc"]), "test_acc_std": float(r["test_acc_std"] or 0),
                "test_acc_n": int(r["seeds"])} for r in rows]
        tol = self.base.matching_tolerance
        report = markdown_report(agg, sparsest_matching(agg, tol, method_key="experiment"), tol, method_key="experiment")
        files.write_text(self.dir / "summary.md", f"# Sweep {self.base.name}\n\nTicket test accuracy per grid point, "
                      f"mean ± std over its finished seeds.\n\n{report}")
        log(f"summary: {self.dir / 'summary.csv'}, summary.png, summary.md")
        return self.dir / "summary.csv"


def _read_csv(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def format_status(rows: list[dict]) -> str:
    width = max([len("experiment/seed")] + [len(r["key"]) for r in rows])
    lines = [f"{'experiment/seed':{width}s}  {'levels':>7s}  {'state':10s}  detail"]
    for r in rows:
        done = f"{len(r['levels'])}/{r['total']}"
        detail = "; ".join(x for x in (r["detail"], f"log {r['log']}" if r["log"] else "") if x)
        lines.append(f"{r['key']:{width}s}  {done:>7s}  {r['state']:10s}  {detail}".rstrip())
    counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
