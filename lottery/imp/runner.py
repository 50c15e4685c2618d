"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    level 0: train the dense network (capturing the rewind point at step k)
    level L: prune the previous level's trained weights, rewind, retrain
    branches: controls and comparisons off level L at its sparsity (lottery.imp.branches)

Every step reads its inputs from disk and writes its outputs atomically, so a run stopped at
any moment continues where it was: finished levels are skipped, an interrupted one resumes
from its last epoch checkpoint.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pytorch_lightning as pl
import torch

from lottery.core import rewind, seeds
from lottery.core.files import load_masks, read_json, save_masks, save_tensors
from lottery.core.layout import SeedDir
from lottery.core.progress import Estimate
from lottery.core.rewind import REWIND, Rewinding
from lottery.core.pruning import get_strategy
from lottery.core.schema import DataConfig, ExperimentConfig, ModelConfig
from lottery.data import create_datamodule
from lottery.imp.branches import BRANCHES, LevelPoint, trains_at, training
from lottery.imp.seed_models import SeedModels
from lottery.models import HF
from lottery.sparsity.watch import watching
from lottery.training.dispatch import train_all
from lottery.training.single import train
from lottery.training.spec import RunSpec
from lottery.training.tracking import Tracking


def datamodule(data: DataConfig, seed: int, model: ModelConfig | None = None) -> pl.LightningDataModule:
    """The experiment's dataset; `seed` sets the data order (the validation split has its own seed).

    Text is tokenized by the tokenizer of an hf: `model` unless data.options.tokenizer names another."""
    options = dict(data.options)
    if data.name == "text" and "tokenizer" not in options and model is not None and model.name.startswith(HF):
        options["tokenizer"] = model.name.removeprefix(HF)
    return create_datamodule(data.name, batch_size=data.batch_size, val_size=data.val_size, seed=seed,
                             split_seed=data.split_seed, **options)


class SeedRunner:
    """One seed of an IMP experiment, living in `files`, training on `data` (in this seed's data order).

    options: each method's options, by name (the strategy's and every branch's; lottery.cli.keys.method_options).
    The schedule is resolved here once, from the data: training length T and milestones in steps.
    """

    def __init__(self, cfg: ExperimentConfig, files: SeedDir, data: pl.LightningDataModule,
                 options: Mapping[str, object] | None = None, log=print):
        self.cfg, self.seed, self.files, self.data, self.log = cfg, files.seed, files, data, log
        self.options = dict(options or {})
        steps_per_epoch = data.steps_per_epoch()
        self.total_steps = cfg.train.total_steps(steps_per_epoch)
        self.optim = cfg.train.resolve(steps_per_epoch)
        self.rewinding = Rewinding(cfg.rewind.policy, cfg.rewind.step, self.total_steps, self.optim.finetuning_lr)
        strategy = get_strategy(cfg.prune.strategy)
        self.models = SeedModels(cfg, files, data, strategy.with_options(self.options.get(strategy.name)))
        self.penalty = self.models.penalty  # the strategy's term in every training's loss (network slimming's), or None
        self.tracking = Tracking.of(cfg)

    def train(self, spec: RunSpec) -> dict:
        return train(spec, self.cfg.trainer, self.optim, self.tracking)

    # -- the algorithm ---------------------------------------------------------------------------
    def specs(self, level: int) -> list[RunSpec]:
        """The trainings of `level`: the dense network at level 0; later the pruned level, then its branches."""
        if level == 0:
            return [self.dense()]
        pruned = self.pruned(level)
        point = LevelPoint(level, pruned.masks, seeds.branch(self.seed, level))
        return [pruned, *(self.branch(point, name) for name in self.branches(level))]

    def branches(self, level: int) -> list[str]:
        """The branches that train off pruned `level`: all of them, but a method with densities of its own once."""
        return [n for n in self.cfg.branches if trains_at(BRANCHES[n], level, self.models, self.options.get(n))]

    def finished(self, level: int) -> list[dict] | None:
        """The metrics of pruned `level`'s trainings (as `specs` orders them) when every one is done, else None: a
        resumed run reads a finished level instead of building its models and masks again (pruning at init scores
        data). Level 0 is always built: building it rewrites a deleted init.safetensors (lottery.core.layout.repair)."""
        if level == 0:
            return None
        files = self.files.level(level)
        outs = [files, *(files.branch(name) for name in self.branches(level))]
        return [read_json(out.metrics) for out in outs] if all(out.done for out in outs) else None

    def report(self, level: int, results: list[dict], note: str = "") -> dict:
        """The level's metrics (the pruned level's, with its branches'), logged in one line ending in `note`."""
        metrics, *branch_metrics = results
        if level > 0:
            metrics["branches"] = dict(zip(self.branches(level), branch_metrics))
        self._report(level, metrics, note)
        return metrics

    def dense(self) -> RunSpec:
        """Level 0: the dense network from its initialisation (saved: the rewind point of k = 0)."""
        pl.seed_everything(self.seed, verbose=False)
        model = self.models.fresh(self.seed)
        if not self.files.rewind(0).exists():
            save_tensors(self.files.rewind(0), model.state_dict())
        masks = self.models.masks_for(model)
        files = self.files.level(0)
        if not files.mask.exists():
            save_masks(files.mask, masks)
        k = self.cfg.rewind.step
        capture = {k: self.files.rewind(k)} if k > 0 else {}
        return RunSpec("level 0", model, masks, self.rewinding.dense_plan, self.data, self.seed, files, capture,
                       watching(self._watchers()), self.penalty)

    def _watchers(self) -> list:
        """What the branches that watch the dense training observe in it (the early-bird detector)."""
        methods = [BRANCHES[name] for name in self.cfg.branches]
        return [m.call(m.watch, self.models, options=self.options.get(m.name)) for m in methods if m.watch is not None]

    def pruned(self, level: int) -> RunSpec:
        """Prune the previous level's trained weights, rewind the survivors: the training of `level`."""
        files, previous = self.files.level(level), self.files.level(level - 1)
        model = self.models.with_weights(previous.final)
        masks = self.models.masks_for(model)
        masks.load_state_dict(load_masks(previous.mask))
        if files.mask.exists():  # pruned before an interruption: never prune twice
            masks.load_state_dict(load_masks(files.mask))
        else:
            self._prune(masks, level)
            save_masks(files.mask, masks)
        plan = self.rewinding.level_plan
        if plan.weights == REWIND:
            rewind.restore(model, self.models.rewind_point(), masks)
        return RunSpec(f"level {level}", model, masks, plan, self.data, self.seed, files, penalty=self.penalty)

    def _prune(self, masks, level: int) -> None:
        """IMP's pruning of `level`: prune.fraction of the remaining weights (times each tensor's rate), or with
        prune.distribution each tensor to its share of the level's density (1 - fraction)^level."""
        p, generator = self.cfg.prune, torch.Generator().manual_seed(seeds.prune(self.seed, level))
        if p.distribution is None:
            masks.prune(p.fraction, self.models.strategy, generator)
        else:
            masks.prune_to(self.models.layer_densities(masks, (1 - p.fraction) ** level, p.distribution),
                           self.models.strategy, generator)

    def branch(self, point: LevelPoint, name: str) -> RunSpec:
        """Branch `name` (lottery.imp.branches) off the level `point`, at its sparsity."""
        b = training(BRANCHES.lookup(name), point, self.models, self.rewinding, self.options.get(name))
        return RunSpec(f"level {point.level} {name}", b.model, b.masks, b.plan, self.data,
                       seeds.branch_training(self.seed), self.files.level(point.level).branch(name), updater=b.updater,
                       penalty=self.penalty)

    def _report(self, level: int, m: dict, note: str) -> None:
        parts = [f"level {level:2d}", f"weights remaining {m['density']:7.2%}", f"test acc {m['test_acc']:.2%}",
                 f"val acc {m['final_val_acc']:.2%}", f"early stop @ {m['early_stop_step']}",
                 *(f"{k} {c['test_acc']:.2%}" for k, c in m.get("branches", {}).items()), note]
        self.log("  ".join(p for p in parts if p))


def runners(cfg: ExperimentConfig, seed_dirs: Sequence[SeedDir], options: Mapping[str, object] | None = None,
            log_of: Callable[[int], Callable[[str], None]] = lambda seed: print) -> list[SeedRunner]:
    """One runner per seed folder, logging to log_of(seed); the dataset is read once and shared (each seed has
    its own data order). options: each method's (SeedRunner)."""
    data = datamodule(cfg.data, seed_dirs[0].seed, cfg.model)
    return [SeedRunner(cfg, d, data if i == 0 else data.with_seed(d.seed), options, log_of(d.seed))
            for i, d in enumerate(seed_dirs)]


def run_levels(seed_runners: list[SeedRunner], detail=None) -> list[list[dict]]:
    """IMP for one or several seeds of an experiment, level by level: train, prune, rewind, repeat.

    All trainings of a level (every seed's pruned network and branches) are independent of each other; a level
    needs only the previous level's results. Returns each seed's metrics per level; each level's line says the time
    spent and about how long is left (or that the level was read from disk). detail: where lines on how runs were
    grouped as lanes go (None: nowhere).
    """
    first = seed_runners[0]
    cfg = first.cfg
    clock = Estimate(len(seed_runners) * (1 + cfg.prune.levels * (1 + len(cfg.branches))))
    results: list[list[dict]] = [[] for _ in seed_runners]
    for level in range(cfg.prune.levels + 1):
        finished = [r.finished(level) for r in seed_runners]
        specs = [r.specs(level) if done is None else [] for r, done in zip(seed_runners, finished)]
        todo = [spec for group in specs for spec in group]
        already = sum(spec.out.done for spec in todo)  # trainings of a level it builds anyway (level 0), read back
        read = [done is not None or all(spec.out.done for spec in group) for done, group in zip(finished, specs)]
        trained = iter(train_all(todo, cfg.trainer, first.optim, first.tracking, detail))
        clock.done(len(todo) - already, already + sum(len(done) for done in finished if done is not None))
        for runner, done, group, out, was_read in zip(seed_runners, finished, specs, results, read):
            note = "(read from disk)" if was_read else f"[{clock}]"
            out.append(runner.report(level, done if done is not None else [next(trained) for _ in group], note))
    return results
