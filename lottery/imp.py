"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    level 0: train the dense network (capturing the rewind point at step k)
    level L: prune the previous level's trained weights, rewind, retrain
    branches: controls and comparisons off level L at its sparsity (lottery.branches)

Every step reads its inputs from disk and writes its outputs atomically, so a run stopped at
any moment continues where it was: finished levels are skipped, an interrupted one resumes
from its last epoch checkpoint.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytorch_lightning as pl
import torch

from lottery import io, rewind
from lottery.config import ExperimentConfig
from lottery.data import create_datamodule
from lottery.branches import BRANCHES, CONTROL_SEED_OFFSET
from lottery.masks import MaskManager
from lottery.models import create_model, output_layer
from lottery.schedule import final_lr
from lottery.trainer import train


def rewind_file(seed_dir: Path, step: int) -> Path:
    """Where a seed's rewind point of iteration `step` lives (step 0: the initial weights)."""
    return Path(seed_dir) / ("init.safetensors" if step == 0 else f"rewind_step_{step}.safetensors")


class IMP:
    """One seed of an IMP experiment, living in `seed_dir`."""

    def __init__(self, cfg: ExperimentConfig, seed: int, seed_dir: Path, log=print):
        cfg = copy.deepcopy(cfg)  # milestones are resolved to steps below, for this run only
        self.cfg, self.seed, self.dir, self.log = cfg, seed, Path(seed_dir), log
        opts = dict(cfg.data.options)
        self.data = create_datamodule(cfg.data.name, batch_size=cfg.data.batch_size, val_size=cfg.data.val_size,
                                      seed=seed, split_seed=cfg.data.split_seed, **opts)
        steps_per_epoch = self.data.steps_per_epoch()
        self.total_steps = cfg.train.steps or cfg.train.epochs * steps_per_epoch
        cfg.train.optim.milestone_steps = sorted(cfg.train.optim.milestone_steps +
                                                 [e * steps_per_epoch for e in cfg.train.milestone_epochs])
        self.plan = rewind.plan(cfg.rewind.policy, cfg.rewind.step, self.total_steps)

    # -- building blocks ------------------------------------------------------------------------
    def build(self, seed: int) -> torch.nn.Module:
        """A freshly initialised model; the same seed gives the same weights."""
        torch.manual_seed(seed)
        return create_model(self.cfg.model.name, self.data.num_classes, self.data.input_shape)

    def masks_for(self, model: torch.nn.Module) -> MaskManager:
        p = self.cfg.prune
        prunable = MaskManager(model, include=p.include, exclude=p.exclude).names
        out = output_layer(model)  # its rate applies only if the output layer is pruned at all
        rates = {**({out: p.output_rate} if out in prunable else {}), **p.rates}
        return MaskManager(model, include=p.include, exclude=p.exclude, rates=rates)

    def level_dir(self, level: int) -> Path:
        return self.dir / f"level_{level:02d}"

    def rewind_path(self, step: int | None = None) -> Path:
        """This seed's rewind point of `step` (default: the config's rewind.step)."""
        return rewind_file(self.dir, self.cfg.rewind.step if step is None else step)

    def rewind_point(self) -> rewind.RewindPoint:
        return rewind.RewindPoint(self.cfg.rewind.step, io.load_tensors(self.rewind_path()))

    # -- the algorithm ---------------------------------------------------------------------------
    def run(self) -> list[dict]:
        results = [self.dense()]
        for level in range(1, self.cfg.prune.levels + 1):
            results.append(self.pruned_level(level))
        return results

    def dense(self) -> dict:
        pl.seed_everything(self.seed, verbose=False)
        model = self.build(self.seed)
        if not self.rewind_path(0).exists():
            io.save_tensors(self.rewind_path(0), model.state_dict())
        masks = self.masks_for(model)
        if not (self.level_dir(0) / "mask.safetensors").exists():
            io.save_masks(self.level_dir(0) / "mask.safetensors", masks)
        capture = {self.cfg.rewind.step: self.rewind_path()} if self.cfg.rewind.step > 0 else None
        full = rewind.LevelPlan(True, 0, self.total_steps, False)
        metrics = train(self.cfg, model, masks, full, self.data, self.level_dir(0), self.seed, "level 0", capture)
        self._report(0, metrics)
        return metrics

    def pruned_level(self, level: int) -> dict:
        out = self.level_dir(level)
        model = self.build(self.seed)
        model.load_state_dict(io.load_tensors(self.level_dir(level - 1) / "final.safetensors"))
        masks = self.masks_for(model)
        masks.load_state_dict(io.load_masks(self.level_dir(level - 1) / "mask.safetensors"))
        if (out / "mask.safetensors").exists():  # pruned before an interruption: never prune twice
            masks.load_state_dict(io.load_masks(out / "mask.safetensors"))
        else:
            masks.prune(self.cfg.prune.fraction, self.cfg.prune.strategy, torch.Generator().manual_seed(self.seed * 1000 + level))
            io.save_masks(out / "mask.safetensors", masks)
        if self.plan.from_rewind_point:
            rewind.restore(model, self.rewind_point(), masks)
        lr = final_lr(self.cfg.train.optim) if self.plan.constant_lr else None
        metrics = train(self.cfg, model, masks, self.plan, self.data, out, self.seed, f"level {level}", constant_lr=lr)
        metrics["controls"] = {c: self.control(level, c, masks) for c in self.cfg.controls}
        self._report(level, metrics)
        return metrics

    def control(self, level: int, kind: str, ticket_masks: MaskManager) -> dict:
        """Train branch `kind` (see lottery.branches) at this level's sparsity."""
        branch = BRANCHES[kind](self, level, ticket_masks)
        lr = final_lr(self.cfg.train.optim) if branch.constant_lr else None
        return train(self.cfg, branch.model, branch.masks, branch.plan, self.data,
                     self.level_dir(level) / f"control_{kind}", self.seed + CONTROL_SEED_OFFSET,
                     f"level {level} {kind}", constant_lr=lr)

    def _report(self, level: int, m: dict) -> None:
        controls = "  ".join(f"{k} {c['test_acc']:.2%}" for k, c in m.get("controls", {}).items())
        self.log(f"level {level:2d}  weights remaining {m['density']:7.2%}  test acc {m['test_acc']:.2%}  "
                 f"best val acc {m['best_val_acc']:.2%} @ step {m['best_val_step']}  {controls}".rstrip())
