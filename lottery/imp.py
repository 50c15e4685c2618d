"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    level 0: train the dense network (capturing the rewind point at step k)
    level L: prune the previous level's trained weights, rewind, retrain
    branches: controls and comparisons off level L at its sparsity (lottery.branches)

Every step reads its inputs from disk and writes its outputs atomically, so a run stopped at
any moment continues where it was: finished levels are skipped, an interrupted one resumes
from its last epoch checkpoint.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from lottery import rewind, seeds
from lottery.branches import BRANCHES, BranchContext
from lottery.data import create_datamodule
from lottery.files import load_masks, load_tensors, read_json, save_masks, save_tensors
from lottery.hparams import DataConfig, ExperimentConfig
from lottery.layout import SeedDir
from lottery.masks import MaskManager
from lottery.models import create_model, output_layer
from lottery.rewind import REWIND, LevelPlan
from lottery.tracking import Tracking
from lottery.trainer import RunSpec, train, train_all


def datamodule(data: DataConfig, seed: int) -> pl.LightningDataModule:
    """The experiment's dataset; `seed` sets the data order (the validation split has its own seed)."""
    return create_datamodule(data.name, batch_size=data.batch_size, val_size=data.val_size, seed=seed,
                             split_seed=data.split_seed, **data.options)


class IMP:
    """One seed of an IMP experiment, living in `seed_dir`.

    The schedule is resolved here once, from the data: training length T and milestones in steps.
    """

    def __init__(self, cfg: ExperimentConfig, seed_dir: SeedDir, log=print, shared: pl.LightningDataModule | None = None):
        """shared: another seed's datamodule of this experiment, whose loaded data this seed reuses."""
        self.cfg, self.seed, self.dir, self.log = cfg, seed_dir.seed, seed_dir, log
        self.data = datamodule(cfg.data, self.seed) if shared is None else shared.with_seed(self.seed)
        steps_per_epoch = self.data.steps_per_epoch()
        self.total_steps = cfg.train.total_steps(steps_per_epoch)
        self.optim = cfg.train.resolve(steps_per_epoch)
        self.finetune_lr = cfg.train.finetune_lr(self.optim)
        self.plan = rewind.plan(cfg.rewind.policy, cfg.rewind.step, self.total_steps, self.finetune_lr)
        self.tracking = Tracking.of(cfg)

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

    def rewind_point(self) -> rewind.RewindPoint:
        k = self.cfg.rewind.step
        return rewind.RewindPoint(k, load_tensors(self.dir.rewind(k)))

    def train(self, spec: RunSpec) -> dict:
        return train(spec, self.cfg.trainer, self.optim, self.tracking)

    # -- the algorithm ---------------------------------------------------------------------------
    def run(self) -> list[dict]:
        return run_seeds([self])[0]

    def specs(self, level: int) -> list[RunSpec]:
        """The trainings of `level`: the dense network at level 0; later the ticket, then its branches."""
        if level == 0:
            return [self.dense()]
        ticket = self.ticket(level)
        return [ticket, *(self.branch(level, name, ticket.masks) for name in self.cfg.branches)]

    def finished(self, level: int) -> list[dict] | None:
        """The metrics of pruned `level`'s trainings (as `specs` orders them) when every one is done, else None: a
        resumed run reads a finished level instead of building its models and masks again (pruning at init scores
        data). Level 0 is always built: building it rewrites a deleted init.safetensors (lottery.layout.repair)."""
        if level == 0:
            return None
        ticket = self.dir.level(level)
        outs = [ticket, *(ticket.branch(name) for name in self.cfg.branches)]
        return [read_json(out.metrics) for out in outs] if all(out.done for out in outs) else None

    def report(self, level: int, results: list[dict]) -> dict:
        """The level's metrics (the ticket's, with its branches'), logged in one line."""
        metrics, *branch_metrics = results
        if level > 0:
            metrics["branches"] = dict(zip(self.cfg.branches, branch_metrics))
        self._report(level, metrics)
        return metrics

    def dense(self) -> RunSpec:
        """Level 0: the dense network from its initialisation (saved: the rewind point of k = 0)."""
        pl.seed_everything(self.seed, verbose=False)
        model = self.build(self.seed)
        if not self.dir.rewind(0).exists():
            save_tensors(self.dir.rewind(0), model.state_dict())
        masks = self.masks_for(model)
        files = self.dir.level(0)
        if not files.mask.exists():
            save_masks(files.mask, masks)
        k = self.cfg.rewind.step
        capture = {k: self.dir.rewind(k)} if k > 0 else {}
        return RunSpec("level 0", model, masks, LevelPlan.from_start(self.total_steps), self.data, self.seed, files, capture)

    def ticket(self, level: int) -> RunSpec:
        """Prune the previous level's trained weights, rewind the survivors: the training of `level`."""
        files, previous = self.dir.level(level), self.dir.level(level - 1)
        model = self.build(self.seed)
        model.load_state_dict(load_tensors(previous.final))
        masks = self.masks_for(model)
        masks.load_state_dict(load_masks(previous.mask))
        if files.mask.exists():  # pruned before an interruption: never prune twice
            masks.load_state_dict(load_masks(files.mask))
        else:
            masks.prune(self.cfg.prune.fraction, self.cfg.prune.strategy,
                        torch.Generator().manual_seed(seeds.prune(self.seed, level)))
            save_masks(files.mask, masks)
        if self.plan.weights == REWIND:
            rewind.restore(model, self.rewind_point(), masks)
        return RunSpec(f"level {level}", model, masks, self.plan, self.data, self.seed, files)

    def branch(self, level: int, name: str, ticket: MaskManager) -> RunSpec:
        """Branch `name` (lottery.branches) off this level, at its sparsity."""
        b = BRANCHES.lookup(name)(self.branch_context(level, ticket))
        return RunSpec(f"level {level} {name}", b.model, b.masks, b.plan, self.data, seeds.branch_training(self.seed),
                       self.dir.level(level).branch(name))

    def branch_context(self, level: int, ticket: MaskManager) -> BranchContext:
        return BranchContext(level=level, ticket=ticket, plan=self.plan, total_steps=self.total_steps,
                             rewind_step=self.cfg.rewind.step, finetune_lr=self.finetune_lr,
                             strategy=self.cfg.prune.strategy, run_seed=self.seed, seed_dir=self.dir,
                             build=self.build, masks_for=self.masks_for, data=self.data)

    def _report(self, level: int, m: dict) -> None:
        branches = "  ".join(f"{k} {c['test_acc']:.2%}" for k, c in m.get("branches", {}).items())
        self.log(f"level {level:2d}  weights remaining {m['density']:7.2%}  test acc {m['test_acc']:.2%}  "
                 f"best val acc {m['best_val_acc']:.2%} @ step {m['best_val_step']}  {branches}".rstrip())


def run_seeds(imps: list[IMP], log=None) -> list[list[dict]]:
    """IMP for one or several seeds of an experiment, level by level: train, prune, rewind, repeat.

    All trainings of a level (every seed's ticket and branches) are independent of each other; a level
    needs only the previous level's results. Returns each seed's metrics per level. log: where lines about
    all seeds go (how runs were grouped as lanes); default the first seed's.
    """
    levels = imps[0].cfg.prune.levels
    results: list[list[dict]] = [[] for _ in imps]
    for level in range(levels + 1):
        finished = [imp.finished(level) for imp in imps]
        specs = [imp.specs(level) if done is None else [] for imp, done in zip(imps, finished)]
        trained = iter(train_all([spec for group in specs for spec in group], imps[0].cfg.trainer, imps[0].optim,
                                   imps[0].tracking, log or imps[0].log))
        for imp, done, group, out in zip(imps, finished, specs, results):
            out.append(imp.report(level, done if done is not None else [next(trained) for _ in group]))
    return results
