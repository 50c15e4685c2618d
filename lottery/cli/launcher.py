"""How `lottery sweep` hands its jobs to a scheduler: submitit's SLURM executor (one job array) or its
local executor (processes on this machine, `parallel` at a time).

A job is one `lottery run` (LotteryRun). It resumes from disk, so a job requeued by SLURM (submitit
catches the signal sent before a time limit or preemption and requeues it, see `checkpoint`) or
submitted again continues where the last one stopped: finished levels are skipped, an interrupted
level continues from its last epoch checkpoint.
"""
from __future__ import annotations

import datetime
import os
import shlex
import shutil
import time
from pathlib import Path

from lottery.cli.config import LauncherConfig
from lottery.core.errors import LotteryError, require

KINDS = ("local", "slurm")


def check(launcher: LauncherConfig) -> None:
    if launcher.kind not in KINDS:
        raise LotteryError(f"unknown launcher {launcher.kind!r}; choose one of: {', '.join(KINDS)}")
    if launcher.parallel < 1 or launcher.time_min < 1 or launcher.gpus < 0:
        raise LotteryError(f"launcher.parallel={launcher.parallel} and launcher.time_min={launcher.time_min} must be "
                           f">= 1 and launcher.gpus={launcher.gpus} >= 0")


class LotteryRun:
    """One job: `lottery run --config CONFIG OVERRIDES`, started in the folder it was submitted from."""

    def __init__(self, cwd: str, config: str | None, overrides: list[str]):
        self.cwd, self.config, self.overrides = cwd, config, list(overrides)

    def command(self) -> str:
        return shlex.join(["lottery", "run", *(["--config", self.config] if self.config else []), *self.overrides])

    def __call__(self) -> str:
        os.chdir(self.cwd)
        from lottery.cli import experiment
        from lottery.cli.config import load_config

        return str(experiment.run(load_config(self.config, self.overrides)))

    def checkpoint(self, *args, **kwargs):
        """Called by submitit before a time limit or on preemption: requeue the same run, which resumes from disk."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def executor(launcher: LauncherConfig, folder: Path, job_name: str, tasks_per_node: int = 1, nodes: int = 1):
    """A submitit executor writing its files (logs, pickled jobs, results) to folder/<job id>/."""
    submitit = require("submitit", "lottery sweep", "sweep")
    folder = Path(folder) / "%j"
    if launcher.kind == "slurm":
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            raise LotteryError(f"SLURM is not available here (no {' or '.join(missing)} on PATH): submit from a login "
                               "node of the cluster, or run the sweep on this machine with --launcher local")
        ex = submitit.SlurmExecutor(folder)
        params = dict(job_name=job_name, time=launcher.time_min, partition=launcher.partition, nodes=nodes,
                      ntasks_per_node=tasks_per_node, gpus_per_node=launcher.gpus or None, cpus_per_task=launcher.cpus,
                      mem=f"{launcher.mem_gb:g}GB" if launcher.mem_gb else None, array_parallelism=launcher.parallel,
                      setup=list(launcher.setup) or None, additional_parameters=dict(launcher.slurm) or None)
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex
    ex = submitit.LocalExecutor(folder)
    gpus = _local_gpus(launcher.gpus)
    ex.update_parameters(timeout_min=launcher.time_min, tasks_per_node=tasks_per_node, gpus_per_node=len(gpus),
                         visible_gpus=gpus)
    return ex


def _local_gpus(requested: int) -> list[int]:
    """The GPUs a local job sees: those this shell sees (submitit would otherwise hide them all)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        visible = [int(x) for x in env.split(",") if x.strip().isdigit()]
    else:
        import torch

        visible = list(range(torch.cuda.device_count()))
    return visible[:requested] if requested else visible


def record(job, launcher: str) -> dict:
    """What `lottery sweep --status` needs to know about a submitted job, as JSON."""
    return {"job_id": str(job.job_id), "launcher": launcher, "folder": str(job.paths.folder),
            "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
            "submitted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def submit_slurm(ex, runs: list[LotteryRun]) -> list:
    """All runs as one job array (at most `parallel` of its tasks running at once)."""
    if len(runs) == 1:
        return [ex.submit(runs[0])]
    return ex.submit_array(runs)


def run_local(ex, runs: list[LotteryRun], parallel: int, on_submit, on_done, poll_s: float = 0.5) -> None:
    """Start the runs on this machine, `parallel` at a time, and wait for all of them.

    on_submit(index, job) when a job starts, on_done(index, job) when it ends. Interrupted (Ctrl-C), the
    running jobs are stopped; their finished levels stay on disk.
    """
    pending, running = list(range(len(runs))), {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                i = pending.pop(0)
                running[i] = ex.submit(runs[i])
                on_submit(i, running[i])
            time.sleep(poll_s)
            for i, job in list(running.items()):
                if job.done():
                    del running[i]
                    on_done(i, job)
    except BaseException:
        for job in running.values():
            job.cancel()
        raise


def states(records: list[dict]) -> list[tuple[str, str]]:
    """(state, detail) of submitted jobs from submitit's files: running, pending, failed, ended or submitted."""
    submitit = require("submitit", "lottery sweep", "sweep")
    # Every SLURM job is registered with submitit's watcher before the first state is read: one sacct call for all.
    slurm = {i: submitit.SlurmJob(r["folder"], r["job_id"]) for i, r in enumerate(records) if r["launcher"] == "slurm"}
    return [_state(r, slurm.get(i)) for i, r in enumerate(records)]


def _state(rec: dict, slurm_job) -> tuple[str, str]:
    from submitit.core.utils import JobPaths, pickle_load

    paths = JobPaths(rec["folder"], rec["job_id"], task_id=0)
    if paths.result_pickle.exists():
        outcome, value = pickle_load(paths.result_pickle)
        if outcome == "error":
            lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
            return "failed", lines[-1] if lines else "error"
        return "ended", ""
    if slurm_job is not None:
        slurm_state = slurm_job.state
        if slurm_state in ("PENDING", "REQUEUED", "CONFIGURING", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"):
            return "pending", slurm_state
        if slurm_state in ("RUNNING", "COMPLETING"):
            return "running", ""
        return ("submitted", "state unknown: sacct unavailable") if slurm_state == "UNKNOWN" else ("failed", slurm_state)
    if _alive(rec["job_id"]):
        return "running", ""
    return "failed", "stopped without a result (killed?)"


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True
