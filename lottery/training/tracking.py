"""Experiment tracking through Lightning's loggers: one logger run per level and per branch.

    trainer.logger=csv          (default) <level folder>/metrics.csv
    trainer.logger=tensorboard  event files in each level folder: `tensorboard --logdir runs/<name>` shows one
                                run per seed/level[/branch] folder
    trainer.logger=wandb        one W&B run per level and branch, named <name>/seed_<s>/level_<NN>..., grouped by
                                experiment (project: $WANDB_PROJECT, default "lottery"; offline: WANDB_MODE=offline)
    trainer.logger=mlflow       one MLflow run per level and branch in the MLflow experiment <name>
                                ($MLFLOW_TRACKING_URI, default a SQLite store runs_dir/mlflow.db, artifacts in
                                runs_dir/mlartifacts: MLflow 3 refuses its old file store ./mlruns by default)
    trainer.logger=none         nothing

Every logger receives what metrics.json holds: per epoch train/loss, train/acc, val/loss, val/acc (the
module's own metrics) and test/* at the end; every `log_every_n_steps` steps (Lightning's setting, 50)
step/lr, step/train_loss and step/train_acc (means over the epoch so far; the module logs them with one host
sync per interval, and nothing per step without a logger); and
per level level/<key> for every number of metrics.json: density, layer_density/<parameter>, test_acc,
best_val_acc, early_stop_step, ... W&B, MLflow and TensorBoard also get the resolved config as hyperparameters.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl

from lottery.core.errors import LotteryError, Registry, installed, missing

# trainer.logger: each kind -> the packages that provide it (any one of them)
LOGGERS: Registry[tuple[str, ...]] = Registry("trainer.logger", {
    "csv": (), "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",), "none": (),
}, summaries={
    "csv": "metrics.csv in each level and branch folder (the default)",
    "tensorboard": "event files in each level folder: `tensorboard --logdir runs/<name>` (the tensorboard extra)",
    "wandb": "one W&B run per level and branch, grouped by experiment (the wandb extra; offline: WANDB_MODE=offline)",
    "mlflow": "one MLflow run per level and branch in the experiment <name> (the mlflow extra)",
    "none": "nothing beyond metrics.json",
})

# A level folder already holds the mask when its logger starts, and digits epochs are shorter than 50 steps.
warnings.filterwarnings("ignore", message=r".*Experiment logs directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")


def check_logger(kind: str) -> None:
    """An unknown logger, or one whose package is missing, is an error before anything runs."""
    if kind not in LOGGERS:
        raise LotteryError(f"unknown trainer.logger {kind!r}; choose one of: {', '.join(LOGGERS)}")
    packages = LOGGERS[kind]
    if packages and not any(installed(p) for p in packages):
        raise LotteryError(f"{missing(packages[0], f'trainer.logger={kind}', kind)}, or choose trainer.logger=csv")


def make_logger(kind: str, out: Path, experiment: str, run: str, hparams: dict | None = None, store: Path | None = None):
    """A Lightning logger writing run `run` (e.g. seed_0/level_01) of `experiment`; False for `none`.

    out: the level folder (files of csv and tensorboard); store: the folder of MLflow's default store (the runs
    folder; default: the level folder).
    """
    check_logger(kind)
    out = Path(out)
    if kind == "none":
        return False
    if kind == "csv":
        return pl.loggers.CSVLogger(save_dir=str(out), name="", version="")
    if kind == "tensorboard":
        logger = pl.loggers.TensorBoardLogger(save_dir=str(out), name="", version="", default_hp_metric=False)
    elif kind == "wandb":
        run_id = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]  # a resumed level continues its W&B run
        logger = pl.loggers.WandbLogger(name=f"{experiment}/{run}", group=experiment, id=run_id, resume="allow",
                                        project=os.environ.get("WANDB_PROJECT", "lottery"), save_dir=str(out))
    else:
        folder = Path(store or out).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{folder / 'mlflow.db'}"
        logger = pl.loggers.MLFlowLogger(experiment_name=experiment, run_name=run, tracking_uri=uri,
                                         tags={"experiment": experiment, "run": run},
                                         artifact_location=None if "MLFLOW_TRACKING_URI" in os.environ
                                         else (folder / "mlartifacts").as_uri())
    if hparams:
        logger.log_hyperparams(hparams)
    return logger


@dataclass(frozen=True)
class Tracking:
    """Where an experiment's trainings log: the logger kind, the experiment's name and folder, its config."""

    kind: str  # a name in LOGGERS
    experiment: str
    root: Path  # the experiment folder: a training's run name is its folder relative to this one
    hparams: dict = field(default_factory=dict)  # the resolved config, for loggers that show hyperparameters

    @classmethod
    def of(cls, cfg) -> "Tracking":
        """The tracking of experiment config `cfg` (an ExperimentConfig)."""
        from lottery.core.layout import RunLayout

        hparams = {} if cfg.trainer.logger in ("csv", "none") else cfg.flat()
        return cls(cfg.trainer.logger, cfg.name, RunLayout.of(cfg.runs_dir, cfg.name).path, hparams)

    @property
    def concurrent(self) -> bool:
        """Whether several logger runs may be open at once in one process, as lanes need to log while they train
        (W&B holds one run per process: lanes are then sent to it one after another, when they end)."""
        return self.kind != "wandb"

    def logger(self, out: Path):
        """The logger of the training written to `out` (a level's or a branch's folder), named after its place."""
        out = Path(out)
        try:
            run = out.relative_to(self.root).as_posix()
        except ValueError:
            run = out.name
        return make_logger(self.kind, out, self.experiment, run, {**self.hparams, "run": run} if self.hparams else None,
                           store=self.root.parent)


def _level_values(metrics: dict) -> dict[str, float]:
    values = {f"level/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    values.update({f"level/layer_density/{n}": float(d) for n, d in metrics.get("layer_density", {}).items()})
    return values


def _close(logger) -> None:
    logger.finalize("success")
    finish = getattr(getattr(logger, "experiment", None), "finish", None) if isinstance(
        logger, pl.loggers.WandbLogger) else None
    if finish is not None:
        finish()  # the next level starts a new W&B run instead of continuing this one


def finish(logger, metrics: dict, step: int) -> None:
    """Send a finished training's metrics.json numbers as level/<key> and close its logger run."""
    logger.log_metrics(_level_values(metrics), step=step)
    _close(logger)


def log_level(trainer: pl.Trainer, metrics: dict) -> None:
    """`finish` the logger runs of a Trainer's training."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            finish(logger, metrics, trainer.global_step)


def replay(tracking: Tracking, out: Path, metrics: dict) -> None:
    """Send a training's metrics.json to its own logger run after the fact: its validation history, test result
    and level values (no per-step values). For lanes with a logger that holds one run per process (W&B)."""
    logger = tracking.logger(out)
    if not logger:
        return
    for entry in metrics["history"]:
        logger.log_metrics({k: v for k, v in entry.items() if k != "step"}, step=entry["step"] - metrics["start_step"])
    logger.log_metrics({"test/acc": metrics["test_acc"], "test/loss": metrics["test_loss"]}, step=metrics["steps"])
    finish(logger, metrics, metrics["steps"])
