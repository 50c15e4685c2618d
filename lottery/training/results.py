"""A finished training's results: its metrics.json (from the module's validation history and test result) and
the files that mark it done. One piece of code for a training alone and for every lane of a group."""
from __future__ import annotations

import shutil

from lottery.core.files import save_masks, save_tensors, write_json
from lottery.core.macs import layer_macs, training_cost
from lottery.core.masks import density, layer_density
from lottery.training.spec import RunSpec


def training_metrics(history: list[dict], test: dict, spec: RunSpec, updater=None) -> dict:
    """The metrics.json of a training: its validation history, test result, density, schedule position and cost;
    with a method that changed the masks while it trained, the densities it aimed at; with watchers (the early-bird
    detector), what each recorded, under `watched`."""
    best = max(history, key=lambda h: h["val/acc"]) if history else {}
    lowest = min(history, key=lambda h: h["val/loss"]) if history else {}
    layers = layer_density(spec.masks.masks)
    metrics = {
        "density": density(spec.masks.masks),
        "layer_density": layers,
        "test_acc": float(test["test/acc"]), "test_loss": float(test["test/loss"]),
        "final_val_acc": history[-1]["val/acc"] if history else None,
        "best_val_acc": best.get("val/acc"), "best_val_step": best.get("step"),
        "early_stop_step": lowest.get("step"),  # step of lowest validation loss (Frankle & Carbin 2019)
        "start_step": spec.plan.start_step, "steps": spec.plan.steps, "history": history,
        **cost(spec, updater, layers),
        # metrics a dataset asks for beside accuracy (lottery.training.metrics), e.g. test_f1, test_mcc for text
        **{f"test_{k.removeprefix('test/')}": float(v) for k, v in test.items() if k not in ("test/acc", "test/loss")},
    }
    if hasattr(spec.data, "majority_share"):  # the test accuracy of always predicting the most frequent class
        metrics["chance_acc"] = spec.data.majority_share("test")
    if getattr(updater, "density", None) is not None:
        metrics["target_density"] = dict(updater.density)
    if hasattr(updater, "watched"):
        metrics["watched"] = updater.watched()
    return metrics


def cost(spec: RunSpec, updater=None, layers: dict[str, float] | None = None) -> dict:
    """What the training cost (lottery.core.macs.training_cost): `cost` in dense trainings of the whole schedule,
    `macs` in multiply-accumulates, from its masks' densities over its steps (`density_over_time`, recorded when an
    updater changed them: [first step, density per tensor] from that step on), a dense layer for every unmasked one.
    layers: the masks' densities, when the caller has them already."""
    start, end = spec.plan.start_step, spec.plan.start_step + spec.plan.steps
    segments = updater.segments(start, end) if updater is not None else None
    changing = segments is not None
    if segments is None:
        segments = [(start, layers if layers is not None else layer_density(spec.masks.masks))]
    dense_grads = updater.dense_gradient_steps(end) if updater is not None else 0
    extra = updater.extra_iterations(end) if hasattr(updater, "extra_iterations") else 0
    macs = layer_macs(spec.model, spec.data.input_shape)
    relative = training_cost(macs, segments, end, end, dense_grads, extra)
    out = {"cost": relative, "macs": relative * 3 * sum(macs.values()) * end * getattr(spec.data, "batch_size", 1)}
    if changing:
        out["density_over_time"] = [[step, density] for step, density in segments]
    return out


def write_results(spec: RunSpec, metrics: dict, remove_checkpoints: bool = True) -> None:
    """Write the trained weights (spec.model's) and, where none is, the masks; then metrics.json, whose presence
    marks the training done.

    remove_checkpoints=False keeps the resume checkpoints until the caller removes them (a lane group keeps its
    one checkpoint, which lives in its first run's folder, until every lane is written).
    """
    save_tensors(spec.out.final, spec.model.state_dict())
    if not spec.out.mask.exists():  # a branch's masks, as they ended (an IMP level's were written before it trained)
        save_masks(spec.out.mask, spec.masks)
    write_json(spec.out.metrics, metrics)  # written last: its presence marks the training complete
    if remove_checkpoints:
        remove_resume_files(spec)


def remove_resume_files(spec: RunSpec) -> None:
    shutil.rmtree(spec.out.checkpoints, ignore_errors=True)  # final.safetensors holds the trained weights
