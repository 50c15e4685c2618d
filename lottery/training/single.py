"""One run spec trained alone, under the one Trainer, resumably; its files written to its folder."""
from __future__ import annotations

from lottery.core.files import read_json
from lottery.training.callbacks import CaptureRewindPoints
from lottery.training.metrics import data_metrics
from lottery.training.module import ClassificationModule
from lottery.core.schema import OptimConfig
from lottery.training.results import training_metrics, write_results
from lottery.core.schema import TrainerConfig
from lottery.training.spec import RunSpec
from lottery.training.tracking import Tracking, log_level
from lottery.training.trainer import fit_and_test


def train(spec: RunSpec, settings: TrainerConfig, optim: OptimConfig, tracking: Tracking | None = None) -> dict:
    """Train `spec` and write its results to `spec.out`; a finished training is read, not retrained.

    settings: where and how the Trainer runs (accelerator, devices, num_nodes, strategy, precision,
    compile, progress). tracking: the loggers its metrics also go to (none without it). Returns the
    training's metrics (those of metrics.json).
    """
    out = spec.out
    if out.done:
        return read_json(out.metrics)
    module = ClassificationModule(spec.model, spec.data.num_classes, optim, start_step=spec.plan.start_step,
                                  constant_lr=spec.plan.constant_lr, seed=spec.seed, compile=settings.compile,
                                  metrics=data_metrics(spec.data), gradient_clip=settings.gradient_clip_val, penalty=spec.penalty)
    capture = [CaptureRewindPoints(dict(spec.capture))] if spec.capture else []
    updater = spec.updater.build() if spec.updater is not None else None
    trainer, _ = fit_and_test(module, spec.data, settings, spec.plan.steps, spec.masks, out.checkpoint, spec.label,
                                 capture, logger=tracking.logger(out.path) if tracking else False, updater=updater)
    metrics = training_metrics(module.history, module.results["test"][0], spec, updater)
    if trainer.is_global_zero:
        write_results(spec, metrics)
    log_level(trainer, metrics)
    trainer.strategy.barrier("training written")  # other ranks read these files next
    return metrics
