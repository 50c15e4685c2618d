"""A whole multi-seed IMP study in lottery (lanes, and one run after another) against a hand-written PyTorch loop.

The study: LeNet-300-100 on a 5,000-image MNIST-shaped training set with OpenLTH's LeNet settings
(SGD lr 0.1, momentum 0, batch 128, 40 epochs, no schedule), evaluation every epoch, IMP levels 0, 1, 2 (20% of the
remaining weights per level and layer, the output layer at half the rate, rewinding to the initial weights), seeds
0-4. Three variants run it in this one process, side by side:

  loop      a hand-written PyTorch loop: the 5 seeds one after another, each its 3 levels; validation every epoch,
            test at the end of each level; masks through lottery's MaskManager; its data read (torchvision) and its
            models built inside the clock, once. It writes no files.
  lanes     `lottery.cli.experiment.run` with trainer.lanes=auto (5 lanes per level), as `lottery run` does it:
            everything a run writes (checkpoint every epoch, metrics, masks, weights, CSV logs, curve, report, ticket).
  one-by-one  the same with trainer.lanes=1.

Data: MNIST's own IDX files (train-images-idx3-ubyte, ...), written to a temporary folder and filled with a learnable
synthetic task (10 class prototypes: strokes on a black background, shifted by up to 3 pixels, random contrast, noise;
LeNet reaches ~95% in 40 epochs), so that lottery reads them with its real `mnist` loader (torchvision) and the loop
with torchvision.datasets.MNIST, as a hand-written script would; both then hold the same tensors (same normalisation,
same validation split), and the loop draws the batches in the order lottery draws them (DistributedSampler's seed +
epoch permutation), so its accuracies are comparable too. 5,500 training images of which 500 are held out for
validation (5,000 trained on: 40 steps per epoch), 10,000 test images.

    .venv/bin/python experiments/bench_study.py                 # the study, ~4 min on 2 CPU cores
    .venv/bin/python experiments/bench_study.py --quick         # 2 epochs: a smoke test in seconds
    .venv/bin/python experiments/bench_study.py --repeats 3     # alternating rounds, medians
    .venv/bin/python experiments/bench_study.py --repeats 3 --fresh --variants loop,lanes
                                                 # each variant of each round in a process of its own
    .venv/bin/python experiments/bench_study.py --profile --epochs 10       # where a lane-step's time goes
    .venv/bin/python experiments/bench_study.py --profile-demo  # the same for experiments/configs/demo.yaml
    .venv/bin/python experiments/bench_study.py --sparse-demo   # experiments/configs/sparse_demo.yaml, per group
    .venv/bin/python experiments/bench_study.py --experiments   # micro-measures of the proposed changes
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib
import inspect
import math
import os
import platform
import pstats
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.cli.command import quiet_libraries  # noqa: E402
from lottery.cli import experiment  # noqa: E402
from lottery.cli.config import load_config  # noqa: E402
from lottery.core import seeds as seeding  # noqa: E402
from lottery.core.layout import RunLayout  # noqa: E402
from lottery.core.masks import MaskManager  # noqa: E402
from lottery.data.base import TensorDataModule  # noqa: E402
from lottery.models import create_model, output_layer  # noqa: E402
from lottery.core.schema import OptimConfig  # noqa: E402
from lottery.training.optimizers import make_optimizer  # noqa: E402
from lottery.training.trainer import runtime_cuda_probe  # noqa: E402

quiet_libraries()  # Lightning's banners at every fit would bury the tables

TRAIN_IMAGES, VAL_IMAGES, TEST_IMAGES = 5500, 500, 10000
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # lottery.data.vision.MNISTDataModule's


# -- data: MNIST's files, a learnable task ------------------------------------------------------------------
def synthetic_digits(n: int, seed: int, noise: float = 0.35) -> tuple[torch.Tensor, torch.Tensor]:
    """n 28x28 uint8 images of 10 classes: a smooth random stroke pattern per class (the same for every seed) on a
    black background (~25% of the pixels lit, as in MNIST), shifted by up to 3 pixels, random contrast, noise."""
    g = torch.Generator().manual_seed(1234)
    smooth = F.interpolate(torch.rand(10, 1, 7, 7, generator=g), size=(20, 20), mode="bicubic", align_corners=False)
    cut = smooth.flatten(1).quantile(0.75, dim=1).view(10, 1, 1, 1)
    prototypes = F.pad(((smooth - cut) * 8).clamp(0, 1), (4, 4, 4, 4))[:, 0]  # [10, 28, 28]
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    dx, dy = torch.randint(-3, 4, (2, n), generator=g)
    rows = (torch.arange(28).view(1, 28, 1) - dy.view(n, 1, 1)) % 28
    cols = (torch.arange(28).view(1, 1, 28) - dx.view(n, 1, 1)) % 28
    x = prototypes[y.view(n, 1, 1), rows, cols]  # each image its class's pattern, rolled by (dy, dx)
    x = x * (0.5 + 0.5 * torch.rand(n, 1, 1, generator=g)) + noise * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y.to(torch.uint8)


def _write_idx(path: Path, array: torch.Tensor) -> None:
    """MNIST's IDX format (LeCun): magic 0x0000 08 <ndim> (uint8), big-endian uint32 sizes, then the bytes."""
    header = struct.pack(">I", 0x0800 + array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.numpy().tobytes())


def write_mnist_files(root: Path) -> Path:
    """<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, where torchvision's MNIST reads them."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", TRAIN_IMAGES, 1), ("t10k", TEST_IMAGES, 2)):
        x, y = synthetic_digits(n, seed)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


# -- the study in lottery ---------------------------------------------------------------------------------
def study_overrides(runs: Path, data_root: Path, name: str, lanes: str, epochs: int, seeds: list[int], levels: int):
    return [f"name={name}", f"runs_dir={runs}", "model.name=lenet_300_100",
            "data.name=mnist", "data.batch_size=128", f"data.val_size={VAL_IMAGES}",
            f"data.options.root={data_root}", "data.options.download=false",
            f"train.epochs={epochs}", "train.optim.optimizer=sgd", "train.optim.lr=0.1", "train.optim.momentum=0.0",
            "prune.strategy=layer_magnitude", "prune.fraction=0.2", "prune.output_rate=0.5", f"prune.levels={levels}",
            "rewind.policy=init", "rewind.step=0", "branches=[]", f"seeds=[{','.join(map(str, seeds))}]",
            f"trainer.lanes={lanes}", "trainer.progress=false", "trainer.accelerator=cpu"]


def test_accuracies(run_dir: Path, seeds: list[int], levels: int, branches=()) -> dict[tuple, float]:
    """{(seed, level, branch or ''): test accuracy} from the run folder's metrics.json files."""
    import json

    layout, out = RunLayout(run_dir), {}
    for s in seeds:
        for level in range(levels + 1):
            folder = layout.seed(s).level(level)
            out[s, level, ""] = json.loads(folder.metrics.read_text())["test_acc"]
            for b in branches if level else ():
                out[s, level, b] = json.loads(folder.branch(b).metrics.read_text())["test_acc"]
    return out


def run_lottery(overrides: list[str], config: str | None = None) -> tuple[float, Path]:
    """One `lottery run` in this process (config file + overrides); (seconds, run folder)."""
    cfg = load_config(config, overrides)
    shutil.rmtree(RunLayout.of(cfg.runs_dir, cfg.name).path, ignore_errors=True)
    start = time.perf_counter()
    path = experiment.run(cfg, log=lambda *_: None)
    return time.perf_counter() - start, path


# -- the hand-written loop ----------------------------------------------------------------------------------
class _NoParts:
    """The loop's part timer when nothing is profiled: a shared null context."""

    null = contextlib.nullcontext()

    def __call__(self, name: str):
        return self.null


NO_PARTS = _NoParts()


def read_mnist(root: Path, split_seed: int = 0):
    """What a hand-written script does: torchvision's MNIST, normalised, 500 held out (the split lottery draws)."""
    import torchvision

    train, test = (torchvision.datasets.MNIST(str(root), train=t, download=False) for t in (True, False))
    x = (train.data.unsqueeze(1).float() / 255 - MNIST_MEAN) / MNIST_STD
    xt = (test.data.unsqueeze(1).float() / 255 - MNIST_MEAN) / MNIST_STD
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    val, tr = perm[:VAL_IMAGES], perm[VAL_IMAGES:]
    return (x[tr], train.targets[tr]), (x[val], train.targets[val]), (xt, test.targets)


def read_digits(split_seed: int = 0):
    """The demo's data: scikit-learn's digits with lottery's split (its DigitsDataModule reads and splits them)."""
    from lottery.data.base import DigitsDataModule

    data = DigitsDataModule(split_seed=split_seed)
    data.setup()
    return tuple(tuple(data._sets[s].tensors) for s in ("train", "val", "test"))


@torch.no_grad()
def evaluate(model, x, y, batch: int = 1000) -> tuple[float, float]:
    """(mean loss, accuracy) over (x, y): one host sync."""
    model.eval()
    loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + batch]).sum()
    model.train()
    loss, correct = torch.stack((loss, correct.to(loss))).tolist()
    return loss / len(x), correct / len(x)


def train_loop(model, masks, optim: OptimConfig, data, data_seed: int, epochs: int, batch: int, T=NO_PARTS) -> float:
    """One training: `epochs` epochs of SGD/Adam on (x, y) in lottery's data order, validation each epoch; test acc."""
    (x, y), (xv, yv), (xt, yt) = data
    with T("per training: optimizer, model.train()"):
        optimizer = make_optimizer(model.parameters(), optim)  # fused SGD/Adam, as lottery makes it
        model.train()
    history = []
    for epoch in range(epochs):
        with T("data: gather (index, x[idx])"):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(data_seed + epoch))
        for start in range(0, len(x), batch):
            with T("data: gather (index, x[idx])"):
                index = order[start:start + batch]
                xb, yb = x[index], y[index]
            with T("forward"):
                logits = model(xb)
            with T("loss"):
                loss = F.cross_entropy(logits, yb)
            with T("optimizer: zero_grad"):
                optimizer.zero_grad(set_to_none=True)
            with T("backward (autograd)"):
                loss.backward()
            with T("optimizer: step (torch)"):
                optimizer.step()
            with T("masks: MaskManager.apply"):
                masks.apply()
        with T("evaluation: validation"):
            history.append(evaluate(model, xv, yv))
    with T("evaluation: test"):
        return evaluate(model, xt, yt)[1]


def loop_study(read, optim: OptimConfig, seeds: list[int], levels: int, epochs: int, batch: int, reinit: bool = False,
               T=NO_PARTS) -> tuple[float, dict]:
    """The study by hand: seeds one after another; per seed its levels (prune the trained weights by 20% per layer,
    output layer 10%, rewind to init), each level validated every epoch and tested; with `reinit`, each pruned
    level's random re-initialisation control too. (seconds, {(seed, level, branch): test acc})."""
    with runtime_cuda_probe(on_cpu=True):  # a script without Lightning has no NVML probe in optimizer.step()
        start = time.perf_counter()
        with T("study: data read"):
            data = read()
        shape = tuple(data[0][0].shape[1:])
        accs = {}
        for seed in seeds:
            with T("per training: models, masks, pruning, rewind"):
                torch.manual_seed(seed)
                model = create_model("lenet_300_100", 10, shape)
                init = {k: v.clone() for k, v in model.state_dict().items()}
                masks = MaskManager(model, rates={output_layer(model): 0.5})
            for level in range(levels + 1):
                if level:
                    with T("per training: models, masks, pruning, rewind"):
                        masks.prune(0.2, "layer_magnitude")
                        model.load_state_dict(init)
                        masks.apply()
                accs[seed, level, ""] = train_loop(model, masks, optim, data, seed, epochs, batch, T)
                if reinit and level:
                    with T("per training: models, masks, pruning, rewind"):
                        torch.manual_seed(seeding.branch(seed, level))
                        control = create_model("lenet_300_100", 10, shape)
                        control_masks = MaskManager(control, rates={output_layer(control): 0.5})
                        control_masks.set_masks(masks.masks)
                    accs[seed, level, "reinit"] = train_loop(control, control_masks, optim, data,
                                                             seeding.branch_training(seed), epochs, batch, T)
        return time.perf_counter() - start, accs


# -- the profile: exclusive time per part -----------------------------------------------------------------
class Parts:
    """Exclusive wall time per named part: methods wrapped in place (`wrap`), or `with parts("name"):` blocks.

    A part's time excludes the parts called inside it, so the parts add up to the wall time of the outermost one.
    An `absorb` part (evaluation, the checkpoint) keeps all time inside it: parts called within are not split out.
    """

    def __init__(self):
        self.time, self.calls = defaultdict(float), defaultdict(int)
        self.stack: list[list] = []
        self.patched: list[tuple] = []

    def _enter(self, name: str, absorb: bool):
        frame = [name, time.perf_counter(), 0.0, absorb]
        self.stack.append(frame)
        return frame

    def _exit(self, frame) -> None:
        self.stack.pop()
        elapsed = time.perf_counter() - frame[1]
        self.time[frame[0]] += elapsed - frame[2]
        self.calls[frame[0]] += 1
        if self.stack:
            self.stack[-1][2] += elapsed

    @contextlib.contextmanager
    def __call__(self, name: str, absorb: bool = False):
        if self.stack and self.stack[-1][3]:
            yield
            return
        frame = self._enter(name, absorb)
        try:
            yield
        finally:
            self._exit(frame)

    def wrap(self, owner, attr: str, name, absorb: bool = False) -> None:
        """Time `owner.attr` (a function, method, staticmethod) as part `name` (a string, or a function of the call's
        arguments giving one)."""
        static = inspect.getattr_static(owner, attr)
        original = getattr(owner, attr) if not isinstance(static, (staticmethod, classmethod)) else static.__func__
        parts = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if parts.stack and parts.stack[-1][3]:
                return original(*args, **kwargs)
            frame = parts._enter(name(*args) if callable(name) else name, absorb)
            try:
                return original(*args, **kwargs)
            finally:
                parts._exit(frame)

        setattr(owner, attr, staticmethod(timed) if isinstance(static, staticmethod) else timed)
        self.patched.append((owner, attr, static))

    def unwrap(self) -> None:
        for owner, attr, static in reversed(self.patched):
            setattr(owner, attr, static)
        self.patched.clear()


def instrument(parts: Parts) -> None:
    """Wrap the functions a lottery study runs through, by part (see the table's rows)."""
    import pytorch_lightning as pl
    from lightning_fabric.loggers.csv_logs import _ExperimentWriter
    from pytorch_lightning.core.optimizer import LightningOptimizer
    from pytorch_lightning.loops import evaluation_loop, fit_loop, training_epoch_loop
    from pytorch_lightning.loops.optimization import manual
    from pytorch_lightning.strategies.strategy import Strategy
    from pytorch_lightning.trainer.connectors.logger_connector.logger_connector import _LoggerConnector
    from torch.utils.data import dataloader

    from lottery.data import base
    from lottery.imp import runner
    from lottery.lanes import layers, net
    from lottery.training import (callbacks, lane_data, lane_group, module, optimizers, results, single, trainer,
                                  tracking)

    w = parts.wrap
    # data, per step
    w(dataloader._BaseDataLoaderIter, "__next__", "data: DataLoader next (sampler, collate)")
    w(base._BatchTensorDataset, "__getitems__", "data: gather (index, x[idx])")
    w(lane_data.LaneDataModule, "on_after_batch_transfer", "data: on_after_batch_transfer (view as lanes)")
    w(base.TensorDataModule, "on_after_batch_transfer", "data: on_after_batch_transfer (view as lanes)")
    w(Strategy, "batch_to_device", "data: Lightning transfer hooks (batch_to_device)")
    w(pl.LightningModule, "_on_before_batch_transfer", "data: Lightning transfer hooks (batch_to_device)")
    from pytorch_lightning.loops import fetchers
    w(fetchers._PrefetchDataFetcher, "__next__", "data: Lightning fetcher")
    # the step's arithmetic
    w(module.ClassificationModule, "forward", "forward")
    w(module, "lane_loss", "loss")
    w(F, "cross_entropy", "loss")
    w(pl.LightningModule, "backward", "backward (autograd)")
    w(torch.optim.Optimizer, "zero_grad", "optimizer: zero_grad")
    # LaneOptimizer's own lines (each lane's views) and its inner step; getattr: an older lottery profiled with this
    # script (before/after) may have neither PlainSGD nor lottery.lanes.optimizer
    lane_optimizer = getattr(importlib.import_module("lottery.lanes"), "optimizer", None)
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, getattr(optimizers, "PlainSGD", None),
                getattr(lane_optimizer, "LaneOptimizer", None)):
        if cls is not None:
            w(cls, "step", "optimizer: step (torch)")
    w(base.TensorDataModule, "setup", "per training: data setup")
    # lottery's step
    cls = module.ClassificationModule
    w(cls, "training_step", "lottery: training_step rest (metric sums, set_lr, optimizers())")
    w(cls, "_log_step", "logging: step/* every 50 steps")
    w(cls, "on_train_epoch_end", "lottery: epoch-end train metrics")
    w(cls, "on_train_batch_start", "lottery: on_train_batch_start (epoch reseed)")
    w(MaskManager, "apply", "masks: MaskManager.apply")
    w(callbacks.MaskCallback, "on_train_batch_end", "masks: MaskCallback hooks")
    w(callbacks.MaskCallback, "on_before_optimizer_step", "masks: MaskCallback hooks")
    # Lightning's machinery around the step
    w(pl.LightningModule, "manual_backward", "Lightning: manual_backward wrapper, hooks")
    w(LightningOptimizer, "step", "Lightning: optimizer wrapper, closure, hooks")
    w(training_epoch_loop._TrainingEpochLoop, "advance", "Lightning: per-step loop, hooks, progress")
    w(training_epoch_loop._TrainingEpochLoop, "on_advance_end", "Lightning: per-step loop, hooks, progress")
    w(manual._ManualOptimization, "run", "Lightning: per-step loop, hooks, progress")
    w(pl.LightningModule, "log_dict", "logging: log_dict, CSV logger")
    w(pl.LightningModule, "log", "logging: log_dict, CSV logger")
    w(_ExperimentWriter, "log_metrics", "logging: log_dict, CSV logger")
    w(_ExperimentWriter, "save", "logging: log_dict, CSV logger")
    for hook in ("update_train_step_metrics", "update_train_epoch_metrics", "on_batch_start", "on_batch_end",
                 "on_epoch_end"):
        w(_LoggerConnector, hook, "logging: Lightning logger connector")
    w(training_epoch_loop._TrainingEpochLoop, "run", "Lightning: per-epoch loop (hooks, new DataLoader iterator)")
    w(fit_loop._FitLoop, "advance", "Lightning: per-epoch loop (hooks, new DataLoader iterator)")
    w(fit_loop._FitLoop, "on_advance_start", "Lightning: per-epoch loop (hooks, new DataLoader iterator)")
    w(fit_loop._FitLoop, "on_advance_end", "Lightning: per-epoch loop (hooks, new DataLoader iterator)")
    w(evaluation_loop._EvaluationLoop, "run",
      lambda loop, *_: "evaluation: test" if loop.trainer.testing else "evaluation: validation", absorb=True)
    w(callbacks.EpochCheckpoint, "on_train_epoch_end", "checkpoint: EpochCheckpoint (every epoch)", absorb=True)
    # once per training (or lane group)
    w(pl.Trainer, "__init__", "per training: Trainer construction")
    w(pl.Trainer, "fit", "per training: Trainer.fit start/end (setup, restore, teardown)")
    w(fit_loop._FitLoop, "run", "per training: Trainer.fit start/end (setup, restore, teardown)")
    w(pl.Trainer, "test", "per training: Trainer.test/validate start/end")
    w(pl.Trainer, "validate", "per training: Trainer.test/validate start/end")
    w(trainer, "fit_and_test", "per training: lottery train()/train_lanes() rest")
    w(single, "train", "per training: lottery train()/train_lanes() rest")
    w(lane_group, "train_lanes", "per training: lottery train()/train_lanes() rest")
    w(lane_group, "_lane_net", "per training: pack lanes (LaneNet)")
    for namespace in (single, lane_group):
        w(namespace, "training_metrics", "per training: metrics.json, final weights, CSV logger close")
        w(namespace, "write_results", "per training: metrics.json, final weights, CSV logger close")
    w(lane_group, "finish", "per training: metrics.json, final weights, CSV logger close")
    w(single, "log_level", "per training: metrics.json, final weights, CSV logger close")
    w(lane_group, "remove_resume_files", "per training: metrics.json, final weights, CSV logger close")
    w(tracking.Tracking, "logger", "per training: metrics.json, final weights, CSV logger close")
    w(runner.SeedRunner, "specs", "per training: models, masks, pruning, rewind")
    w(runner.SeedRunner, "finished", "per training: models, masks, pruning, rewind")
    w(lane_group, "lane_groups", "per training: models, masks, pruning, rewind")
    # once per study
    w(experiment, "run", "study: config, locks, run_levels rest")
    w(experiment, "plan", "study: plan (data read, runners, checks)")
    w(base.TensorDataModule, "_build", "study: data read")
    w(experiment, "write_report", "study: curve.csv/png, report.md")
    w(experiment, "write_ticket", "study: ticket")
    del layers, net, results


# Rows of the table, in order; parts not listed are printed after them.
ROWS = [
    ("per step", ["data: DataLoader next (sampler, collate)", "data: gather (index, x[idx])", "data: Lightning fetcher",
                  "data: Lightning transfer hooks (batch_to_device)", "data: on_after_batch_transfer (view as lanes)",
                  "forward", "loss", "backward (autograd)", "optimizer: zero_grad", "optimizer: step (torch)",
                  "masks: MaskManager.apply", "masks: MaskCallback hooks",
                  "lottery: training_step rest (metric sums, set_lr, optimizers())",
                  "lottery: on_train_batch_start (epoch reseed)",
                  "Lightning: manual_backward wrapper, hooks", "Lightning: optimizer wrapper, closure, hooks",
                  "Lightning: per-step loop, hooks, progress", "logging: step/* every 50 steps",
                  "logging: Lightning logger connector"]),
    ("per epoch", ["evaluation: validation", "checkpoint: EpochCheckpoint (every epoch)",
                   "lottery: epoch-end train metrics", "logging: log_dict, CSV logger",
                   "Lightning: per-epoch loop (hooks, new DataLoader iterator)"]),
    ("per training", ["evaluation: test", "per training: Trainer construction",
                      "per training: Trainer.fit start/end (setup, restore, teardown)",
                      "per training: Trainer.test/validate start/end", "per training: data setup",
                      "per training: lottery train()/train_lanes() rest", "per training: pack lanes (LaneNet)",
                      "per training: models, masks, pruning, rewind", "per training: optimizer, model.train()",
                      "per training: metrics.json, final weights, CSV logger close"]),
    ("per study", ["study: data read", "study: plan (data read, runners, checks)",
                   "study: curve.csv/png, report.md", "study: ticket", "study: config, locks, run_levels rest",
                   "loop: Python between the parts"]),
]
ARITHMETIC = ("forward", "loss", "backward (autograd)", "optimizer: step (torch)", "masks: MaskManager.apply")


def profiled(parts: Parts, fn, lottery: bool = True):
    """Run fn() with lottery instrumented into `parts` (the loop times its own parts); (seconds, fn's result)."""
    if lottery:
        instrument(parts)
    try:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out
    finally:
        parts.unwrap()


def print_profile(columns: list[tuple[str, Parts, float, int, int]]) -> None:
    """columns: (title, parts, wall seconds, optimizer steps, lanes). Cells: ms per optimizer step of that variant;
    for lanes also per run (divided by the lanes)."""
    heads = []
    for title, _, _, _, lanes in columns:
        heads.append(f"{title} ms/step")
        if lanes > 1:
            heads.append(f"{title} ms/step per run")
    print("\n| part | " + " | ".join(heads) + " |\n|---|" + "---:|" * len(heads))
    listed = [name for _, names in ROWS for name in names]
    extra = sorted({n for _, p, *_ in columns for n in p.time} - set(listed))
    groups = ROWS + ([("other", extra)] if extra else [])

    def cells(values):
        out = []
        for (_, _, _, _, lanes), v in zip(columns, values):
            out.append("" if v is None else f"{v:.3f}")
            if lanes > 1:
                out.append("" if v is None else f"{v / lanes:.3f}")
        return " | ".join(out)

    for group, names in groups:
        for name in names:
            values = [p.time[name] / steps * 1e3 if name in p.time else None for _, p, _, steps, _ in columns]
            if any(v is not None for v in values):
                print(f"| {name} | {cells(values)} |")
        totals = [sum(p.time[n] for n in names if n in p.time) / steps * 1e3 for _, p, _, steps, _ in columns]
        print(f"| **{group}, all** | {cells(totals)} |")
    arithmetic = [sum(p.time[n] for n in ARITHMETIC if n in p.time) / steps * 1e3 for _, p, _, steps, _ in columns]
    print(f"| **arithmetic (forward, loss, backward, optimizer step, masks)** | {cells(arithmetic)} |")
    rest = [(sum(p.time.values()) / steps * 1e3) - a for (_, p, _, steps, _), a in zip(columns, arithmetic)]
    print(f"| **everything else** | {cells(rest)} |")
    print(f"| **sum of the parts** | {cells([sum(p.time.values()) / s * 1e3 for _, p, _, s, _ in columns])} |")
    print(f"| **wall time, ms/step** | {cells([wall / s * 1e3 for _, _, wall, s, _ in columns])} |")
    print("\n" + "; ".join(f"{title}: {wall:.2f} s, {steps} optimizer steps" for title, _, wall, steps, _ in columns))
    print("\nper call, ms (calls):")
    for group, names in groups[1:]:
        for name in names:
            if any(name in p.time and p.calls.get(name) for _, p, *_ in columns):
                print(f"  {name}: " + "; ".join(f"{title} {p.time[name] / p.calls[name] * 1e3:.2f} ({p.calls[name]})"
                                                for title, p, *_ in columns if p.calls.get(name)))


def count_calls(fn) -> int:
    """Python function calls (Python and built-in) of fn(), as cProfile counts them."""
    profile = cProfile.Profile()
    profile.runcall(fn)
    return pstats.Stats(profile).total_calls


def calls_in(owner, attr: str, fn) -> tuple[int, int]:
    """(function calls made inside owner.attr, times owner.attr was called) while fn() runs."""
    original, counts = getattr(owner, attr), [0, 0]

    def hook(frame, event, arg):
        if event in ("call", "c_call"):
            counts[0] += 1

    @functools.wraps(original)
    def counted(*args, **kwargs):
        counts[1] += 1
        sys.setprofile(hook)
        try:
            return original(*args, **kwargs)
        finally:
            sys.setprofile(None)

    setattr(owner, attr, counted)
    try:
        fn()
    finally:
        setattr(owner, attr, original)
    return counts[0], counts[1]


def print_calls(root: Path, data_root: Path, seeds: list[int], per_epoch: int) -> None:
    """Python calls per optimizer step: of the whole study (the difference between 6 and 2 epochs, so that what is
    paid once per training falls out; evaluation and checkpoints per epoch stay in), and inside Lightning's
    `_TrainingEpochLoop.advance` alone (one step: fetch, hooks, training_step, optimizer, mask callback)."""
    from pytorch_lightning.loops.training_epoch_loop import _TrainingEpochLoop

    print("\nPython function calls per optimizer step (cProfile / sys.setprofile counts):")
    for name in ("loop", "lanes", "one-by-one"):
        k = len(seeds) if name == "lanes" else 1
        totals = [count_calls(study_variants(root, data_root, e, seeds, 1)[name]) for e in (2, 6)]
        steps = len(seeds) * 2 * 4 * per_epoch // k  # 4 more epochs, 2 levels
        line = f"  {name}: {(totals[1] - totals[0]) / steps:,.0f} per step of the study"
        if name != "loop":
            calls, n = calls_in(_TrainingEpochLoop, "advance", study_variants(root, data_root, 2, seeds, 1)[name])
            line += f", {calls / n:,.0f} inside one Lightning training step (_TrainingEpochLoop.advance)"
        print(line + (f"; per run: / {k}" if k > 1 else ""), flush=True)


# -- micro-measures of proposed changes --------------------------------------------------------------------
def _median_us(fns: dict, repeats: int = 5, number: int = 100) -> dict[str, float]:
    """µs per call of each function, timed side by side: `repeats` alternating rounds of `number` calls, medians."""
    for fn in fns.values():
        for _ in range(5):
            fn()
    times = defaultdict(list)
    names = list(fns)
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            for _ in range(number):
                fns[name]()
            times[name].append((time.perf_counter() - start) / number * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def _lane_setup(lanes: int, batch: int, optimizer: str = "sgd"):
    from lottery.lanes.net import LaneNet, lane_loss, stack_masks

    models, managers = [], []
    for k in range(lanes):
        torch.manual_seed(k)
        model = create_model("lenet_300_100", 10, (1, 28, 28))
        masks = MaskManager(model, rates={"fc3.weight": 0.5})
        masks.prune(0.2, "layer_magnitude")
        models.append(model), managers.append(masks)
    net = LaneNet.from_models(models)
    lane_masks = MaskManager(net)
    lane_masks.set_masks(stack_masks([m.masks for m in managers]))
    optim = OptimConfig(optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 1.2e-3)
    x, y = torch.randn(5000, 1, 28, 28), torch.randint(0, 10, (5000,))
    return models, managers, net, lane_masks, optim, x, y, lane_loss


def _floor(steps: int = 500, repeats: int = 5) -> str:
    """µs per step of Trainer.fit and of a hand-written loop with no arithmetic: (time of 2N steps - time of N) / N,
    so that the fit's start and end fall out."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    class Scalar(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.ones(()))
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(self.p * batch[0].sum())
            optimizer.step()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-6)

    def trainer(n):
        loader = DataLoader(TensorDataset(torch.ones(n, 1)), batch_size=1)
        module = Scalar()
        t = pl.Trainer(max_steps=n, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                       limit_val_batches=0)
        with runtime_cuda_probe(on_cpu=True):
            start = time.perf_counter()
            t.fit(module, train_dataloaders=loader)
            return time.perf_counter() - start

    def loop(n):
        loader = DataLoader(TensorDataset(torch.ones(n, 1)), batch_size=1)
        module = Scalar()
        optimizer = module.configure_optimizers()
        with runtime_cuda_probe(on_cpu=True):
            start = time.perf_counter()
            for batch in loader:
                optimizer.zero_grad(set_to_none=True)
                (module.p * batch[0].sum()).backward()
                optimizer.step()
            return time.perf_counter() - start

    trainer(10), loop(10)
    times = defaultdict(list)
    for i in range(repeats):
        for name, fn in ((("trainer", trainer), ("loop", loop)) if i % 2 == 0 else (("loop", loop), ("trainer", trainer))):
            times[name].append((fn(2 * steps) - fn(steps)) / steps * 1e6)
    t, l = statistics.median(times["trainer"]), statistics.median(times["loop"])
    return f"Trainer.fit {t:.0f}, hand-written loop {l:.0f}: the Trainer adds {t - l:.0f} µs per step"


class _LaneLinearFunction(torch.autograd.Function):
    """LaneLinear's product with a hand-written backward: each lane's weight gradient computed as nn.Linear computes
    it (grad^T @ input, `mm` per lane), straight into the weight's own [K, out, in] layout. Autograd's backward of
    `baddbmm(b, x, W.transpose(1, 2))` computes x^T @ grad ([K, in, out]) and copies it transposed into W's layout
    (a strided copy of every weight, every step), and its batched product rounds the small output layer's gradient
    differently from nn.Linear's `mm`."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.stack([g.t().mm(xk) for g, xk in zip(grad, x)])
        return grad_x, grad_w, grad.sum(1)


def _layout_aware_forward(self, x):
    from lottery.lanes.layers import to_lanes

    x = to_lanes(x, self.lanes)
    if self.bias is None:
        return torch.bmm(x, self.weight.transpose(1, 2))
    return _LaneLinearFunction.apply(x, self.weight, self.bias)


def _loader_experiment(lanes: int) -> None:
    """µs per batch of iterating a training DataLoader (sampler, gather, collate; a new iterator per epoch, as
    Lightning makes one): TensorDataModule alone, LaneDataModule with 2 and K lanes, and the K lanes' batches
    drawn with torch alone (one randperm per lane and epoch, one index_select per step)."""
    from lottery.training.lane_data import LaneDataModule

    data = _Shaped(batch_size=128, val_size=500)
    data.setup()
    x, y = data._sets["train"].tensors

    def epoch(make):
        return lambda: sum(1 for _ in make())

    def by_hand(k):
        def batches():
            epoch_index = batches.epoch = getattr(batches, "epoch", -1) + 1
            orders = torch.stack([torch.randperm(len(x), generator=torch.Generator().manual_seed(s + epoch_index))
                                  for s in range(k)])
            for index in orders.split(data.batch_size, dim=1):
                index = index.reshape(-1)
                yield x.index_select(0, index), y.index_select(0, index)
        return batches

    loaders = {"TensorDataModule (one run)": data.train_dataloader(),
               "LaneDataModule, 2 lanes": LaneDataModule(data, [0, 1]).train_dataloader(),
               f"LaneDataModule, {lanes} lanes": LaneDataModule(data, list(range(lanes))).train_dataloader()}
    fns = {k: epoch(lambda v=v: v) for k, v in loaders.items()}
    fns[f"by hand, {lanes} lanes"] = epoch(by_hand(lanes))
    steps = data.steps_per_epoch()
    r = _median_us(fns, repeats=5, number=3)
    print(f"\ntraining batches, MNIST-shaped, batch 128, {steps} per epoch: µs per batch: " +
          ", ".join(f"{k} {v / steps:.0f}" for k, v in r.items()))


class _Shaped(TensorDataModule):
    """5,500 random MNIST-shaped training images (speed only)."""

    num_classes, input_shape = 10, (1, 28, 28)

    def load(self):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(TRAIN_IMAGES, 1, 28, 28, generator=g), torch.randint(0, 10, (TRAIN_IMAGES,), generator=g),
                torch.randn(100, 1, 28, 28, generator=g), torch.randint(0, 10, (100,), generator=g))


def _layout_experiment(lanes: int, batch: int) -> None:
    """LaneLinear's backward as autograd does it vs hand-written (_LaneLinearFunction): time and bitwise equality."""
    from lottery.lanes import layers

    models, managers, net, lane_masks, optim, x, y, lane_loss = _lane_setup(lanes, batch)
    index = torch.stack([torch.randperm(5000, generator=torch.Generator().manual_seed(k))[:batch] for k in range(lanes)])
    xb, yb = x[index.reshape(-1)].view(lanes, batch, 1, 28, 28), y[index.reshape(-1)].view(lanes, batch)
    original = layers.LaneLinear.forward

    def fwd_bwd():
        net.zero_grad(set_to_none=True)
        lane_loss(net(xb), yb)[0].backward()

    def patched():
        layers.LaneLinear.forward = _layout_aware_forward
        try:
            fwd_bwd()
        finally:
            layers.LaneLinear.forward = original

    for m in models:
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(xb[models.index(m)]), yb[models.index(m)]).backward()
    equal = {}
    for name, fn in (("autograd", fwd_bwd), ("hand-written", patched)):
        fn()
        grads = dict(net.named_parameters())
        equal[name] = [n for n, p in models[0].named_parameters()
                       if not all(torch.equal(m.get_parameter(n).grad, grads[n].grad[k]) for k, m in enumerate(models))]
    r = _median_us({"autograd backward": fwd_bwd, "hand-written backward": patched}, number=30)
    print(f"\nLaneLinear forward+backward of LeNet, K={lanes}, batch {batch}: " + ", ".join(f"{k} {v:.0f} µs" for k, v in r.items()) +
          f" ({r['hand-written backward'] / r['autograd backward']:.2f}x); gradients not bitwise equal to the K runs "
          f"alone: autograd {equal['autograd'] or 'none'}, hand-written {equal['hand-written'] or 'none'}")


def experiments(args) -> None:
    """What each proposed change would save, measured in isolation (µs per call, side by side, medians)."""
    lanes = args.seeds
    for optimizer, batch in (("sgd", 128), ("adam", 60)):
        models, managers, net, lane_masks, optim, x, y, lane_loss = _lane_setup(lanes, batch, optimizer)
        single_opts = [make_optimizer(m.parameters(), optim) for m in models]
        lane_opt = make_optimizer(net.parameters(), optim)
        index = torch.stack([torch.randperm(5000, generator=torch.Generator().manual_seed(k))[:batch] for k in range(lanes)])
        flat = index.reshape(-1)
        xb, yb = x[flat].view(lanes, batch, 1, 28, 28), y[flat].view(lanes, batch)

        def singles():  # the arithmetic of one step of the K runs one by one (what the loop does)
            for k, (m, masks, opt) in enumerate(zip(models, managers, single_opts)):
                loss = F.cross_entropy(m(xb[k]), yb[k])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                masks.apply()

        def packed():  # the same arithmetic as one lane-step
            loss = lane_loss(net(xb), yb)[0]
            lane_opt.zero_grad(set_to_none=True)
            loss.backward()
            lane_opt.step()
            lane_masks.apply()

        def packed_keep_grads():  # the same, gradients zeroed in place instead of freed and allocated again
            loss = lane_loss(net(xb), yb)[0]
            lane_opt.zero_grad(set_to_none=False)
            loss.backward()
            lane_opt.step()
            lane_masks.apply()

        print(f"\nLeNet-300-100, batch {batch}, {optimizer}, K={lanes}: one step of all K runs, µs")
        r = _median_us({"K single steps (loop)": singles, "one packed lane-step": packed,
                        "packed, zero_grad(set_to_none=False)": packed_keep_grads}, number=50)
        print("  " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()) +
              f"  (packed / singles {r['one packed lane-step'] / r['K single steps (loop)']:.2f}x)")

        # forward / backward of the packed layers, apart
        loss = lane_loss(net(xb), yb)[0]
        def forward():
            with torch.no_grad():
                net(xb)
        def fwd_bwd():
            lane_loss(net(xb), yb)[0].backward()
        def single_fwd_bwd():
            for k, m in enumerate(models):
                F.cross_entropy(m(xb[k]), yb[k]).backward()
        r = _median_us({"packed forward (no grad)": forward, "packed forward+backward": fwd_bwd,
                        "K single forward+backward": single_fwd_bwd}, number=50)
        print("  " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()))

        # the optimizer step over the stacked parameters
        lane_opt.zero_grad(set_to_none=False)
        lane_loss(net(xb), yb)[0].backward()
        params = [p for p in net.parameters()]
        grads = [p.grad for p in params]
        variants = {"fused (lottery)": make_optimizer(params, optim)}
        if optimizer == "sgd":
            variants["foreach"] = torch.optim.SGD(params, lr=0.1, foreach=True)
            variants["for-loop"] = torch.optim.SGD(params, lr=0.1, foreach=False)
            fns = {k: o.step for k, o in variants.items()}
            fns["torch._foreach_add_ (no Optimizer)"] = lambda: torch._foreach_add_(params, grads, alpha=-0.1)
        else:
            variants["foreach"] = torch.optim.Adam(params, lr=1.2e-3, foreach=True)
            variants["for-loop"] = torch.optim.Adam(params, lr=1.2e-3, foreach=False)
            fns = {k: o.step for k, o in variants.items()}
        with torch.no_grad():
            before = [p.clone() for p in params]
            r = _median_us(fns)
            for p, b in zip(params, before):
                p.copy_(b)
        print("  optimizer.step over the K lanes' parameters: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()))
        r = _median_us({"zero_grad(set_to_none)": lambda: lane_opt.zero_grad(set_to_none=True),
                        "MaskManager.apply (lanes)": lane_masks.apply,
                        "K x MaskManager.apply (singles)": lambda: [m.apply() for m in managers]})
        print("  " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()))

        # data: one gather of the K lanes' batch (what LaneDataModule does) vs K gathers, vs list -> tensor
        indices = flat.tolist()
        from lottery.data.base import _BatchTensorDataset
        dataset = _BatchTensorDataset(x, y)
        r = _median_us({"one gather x[K*B index]": lambda: (x[flat], y[flat]),
                        "K gathers x[B index]": lambda: [(x[i], y[i]) for i in index],
                        "__getitems__(list of K*B ints)": lambda: dataset.__getitems__(indices),
                        "__getitems__(index tensor)": lambda: dataset.__getitems__(flat),
                        "index_select(0, K*B index)": lambda: (x.index_select(0, flat), y.index_select(0, flat))})
        print("  data: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()))

    _loader_experiment(lanes)
    r = _median_us({"torch.manual_seed": lambda: torch.manual_seed(1),
                    "torch.default_generator.manual_seed": lambda: torch.default_generator.manual_seed(1)}, number=50)
    print("\nreseeding at each epoch start (ClassificationModule.on_train_batch_start), µs: " +
          ", ".join(f"{k} {v:.1f}" for k, v in r.items()))
    _layout_experiment(lanes, 128)
    _layout_experiment(lanes, 60)

    # the Trainer's own cost per step: a step with no arithmetic, under the Trainer (lottery's settings) vs by hand
    print(f"\nper-step floor with no arithmetic (a scalar parameter, the same DataLoader): µs per step, {_floor()}")

    # the per-epoch checkpoint of a K=5 lane group, as Lightning writes it
    from lottery.training.callbacks import AtomicCheckpointIO
    _, _, net, lane_masks, optim, *_ = _lane_setup(lanes, 128)
    opt = make_optimizer(net.parameters(), optim)
    state = {"state_dict": net.state_dict(), "optimizer_states": [opt.state_dict()],
             "callbacks": {"MaskCallback": lane_masks.state_dict()}}
    io, folder = AtomicCheckpointIO(), Path(tempfile.mkdtemp())
    r = _median_us({"torch.save checkpoint (atomic)": lambda: io.save_checkpoint(state, folder / "last.ckpt"),
                    "MaskManager.state_dict (copies the masks)": lane_masks.state_dict}, repeats=5, number=10)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"\ncheckpoint of {lanes} lanes: " + ", ".join(f"{k} {v / 1e3:.2f} ms" for k, v in r.items()))


# -- main ---------------------------------------------------------------------------------------------------
def study_variants(root: Path, data_root: Path, epochs: int, seeds: list[int], levels: int):
    """name -> a function running that variant of the study: (seconds, {(seed, level, branch): test acc})."""
    optim = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.0)

    def lottery(lanes: str):
        def go():
            seconds, path = run_lottery(study_overrides(root, data_root, f"study_{lanes}", lanes, epochs, seeds, levels))
            return seconds, test_accuracies(path, seeds, levels)
        return go

    def loop(T=NO_PARTS):
        return loop_study(lambda: read_mnist(data_root), optim, seeds, levels, epochs, 128, T=T)

    return dict(zip(VARIANTS, (loop, lottery("auto"), lottery("1"))))


VARIANTS = ("loop", "lanes", "one-by-one")


def measure_study(args, root: Path, data_root: Path) -> None:
    seeds, levels = list(range(args.seeds)), args.levels
    variants = study_variants(root, data_root, args.epochs, seeds, levels)
    if not args.no_warmup and not args.fresh:  # first calls: imports, allocator, fx tracing (--fresh: each child's)
        for run in study_variants(root, data_root, 1, seeds[:2], 1).values():
            run()
    times, accs = defaultdict(list), {}
    names = [n for n in variants if n in args.variants]
    for i in range(args.repeats):
        order = names[i % len(names):] + names[:i % len(names)]  # rotate the order round by round
        for name in order:
            seconds, accs[name] = variants[name]() if not args.fresh else fresh_variant(args, name, root, data_root)
            times[name].append(seconds)
            print(f"round {i + 1}: {name} {seconds:.2f} s", flush=True)
    print_study(args, names, times, accs)


def fresh_variant(args, name: str, root: Path, data_root: Path) -> tuple[float, dict]:
    """One variant in a process of its own (its own warm-up first, untimed): what a user's one run of it sees, and no
    state left by the variants before it. (seconds, accuracies) from the child's last line (JSON)."""
    import json
    import subprocess

    command = [sys.executable, __file__, "--variant", name, "--data-root", str(data_root), "--runs", str(root),
               "--epochs", str(args.epochs), "--seeds", str(args.seeds), "--levels", str(args.levels)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.no_warmup:
        command.append("--no-warmup")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{name} failed in its process:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["seconds"], {tuple(key): acc for *key, acc in out["accs"]}


def run_variant(args, root: Path, data_root: Path) -> None:
    """--variant: one variant in this process (warm-up, then timed); prints {"seconds", "accs"} as its last line."""
    import json

    seeds = list(range(args.seeds))
    if not args.no_warmup:
        study_variants(root, data_root, 1, seeds[:2], 1)[args.variant]()
    seconds, accs = study_variants(root, data_root, args.epochs, seeds, args.levels)[args.variant]()
    print(json.dumps({"seconds": seconds, "accs": [[*key, acc] for key, acc in accs.items()]}))


def print_study(args, names: list[str], times: dict, accs: dict) -> None:
    seeds, levels = list(range(args.seeds)), args.levels
    steps = len(seeds) * (levels + 1) * args.epochs * math.ceil((TRAIN_IMAGES - VAL_IMAGES) / 128)
    where = "each variant in a fresh process" if args.fresh else "one process"
    print(f"\n{len(seeds)} seeds x {levels + 1} levels x {args.epochs} epochs: {steps} optimizer steps of one run; "
          f"{args.repeats} round(s), {where}, medians; ratio = median over rounds of variant / loop in the same round\n")
    print("| variant | wall s | ratio to the loop | ms per optimizer step of one run |\n|---|---:|---:|---:|")
    for name in names:
        ratio = (f"{statistics.median(v / loop for v, loop in zip(times[name], times['loop'])):.3f}x"
                 if "loop" in times else "–")
        median = statistics.median(times[name])
        print(f"| {name} | {median:.2f} | {ratio} | {median / steps * 1e3:.3f} |")
    print(f"\ntest accuracy per seed (level {' / '.join(map(str, range(levels + 1)))}), %:")
    for name in names:
        print(f"  {name:11s} " + "   ".join(" / ".join(f"{100 * accs[name][s, level, '']:.2f}" for level in range(levels + 1))
                                         for s in seeds))
    for a, b in (("lanes", "one-by-one"), ("lanes", "loop"), ("one-by-one", "loop")):
        if a in accs and b in accs:
            diff = max(abs(accs[a][k] - accs[b][k]) for k in accs[a]) * 100
            print(f"max |{a} - {b}| over seeds and levels: {diff:.2f} points")


def median_parts(rounds: list[Parts]) -> Parts:
    """Each part's median over rounds (rounds of one variant, run alternately with the others)."""
    out = Parts()
    for name in {n for p in rounds for n in p.time}:
        out.time[name] = statistics.median(p.time.get(name, 0.0) for p in rounds)
        out.calls[name] = rounds[0].calls.get(name, 0)
    return out


def wrapper_cost() -> float:
    """Seconds one call through a Parts wrapper adds (timed on a no-op method)."""
    class Probe:
        def noop(self):
            return None

    probe, parts = Probe(), Parts()
    plain = min(_timeit(probe.noop) for _ in range(5))
    parts.wrap(Probe, "noop", "probe")
    wrapped = min(_timeit(probe.noop) for _ in range(5))
    return wrapped - plain


def _timeit(fn, number: int = 20000) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def print_instrumentation(columns) -> None:
    """What the wrappers themselves add to the lottery columns' wall time."""
    cost = wrapper_cost()
    for title, parts, wall, steps, _ in columns:
        if title != "loop":
            calls = sum(parts.calls.values())
            print(f"instrumentation, {title}: {calls / steps:.0f} wrapped calls per step x {cost * 1e6:.2f} µs = "
                  f"{calls * cost / steps * 1e3:.3f} ms per step of the wall time above")


def profile_study(args, root: Path, data_root: Path) -> None:
    seeds, levels = list(range(args.seeds)), args.levels
    variants = study_variants(root, data_root, args.epochs, seeds, levels)
    for name, run in study_variants(root, data_root, 1, seeds[:2], 1).items():  # warm-up
        if name in args.variants:
            run()
    per_epoch = math.ceil((TRAIN_IMAGES - VAL_IMAGES) / 128)
    steps_run = len(seeds) * (levels + 1) * args.epochs * per_epoch
    names = [n for n in ("lanes", "one-by-one", "loop") if n in args.variants]
    rounds, walls = defaultdict(list), defaultdict(list)
    for i in range(args.repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotated, so that a slow phase of the machine hits all three
            parts = Parts()
            if name == "loop":
                wall, _ = profiled(parts, lambda: variants["loop"](parts), lottery=False)
                parts.time["loop: Python between the parts"] += wall - sum(parts.time.values())
            else:
                wall, _ = profiled(parts, variants[name])
            rounds[name].append(parts)
            walls[name].append(wall)
            print(f"round {i + 1}: {name} {wall:.2f} s (profiled)", flush=True)
    columns = []
    for name in names:
        lanes = len(seeds) if name == "lanes" else 1
        columns.append((f"lottery {name} (K={lanes})" if name != "loop" else "loop", median_parts(rounds[name]),
                        statistics.median(walls[name]), steps_run // lanes, lanes))
    print(f"\nThe study: {len(seeds)} seeds x {levels + 1} levels x {args.epochs} epochs of {per_epoch} steps; "
          "exclusive wall time per part, ms per optimizer step of that variant (lanes: one step of all K lanes); "
          f"medians over {args.repeats} round(s)")
    print_profile(columns)
    print_instrumentation(columns)
    if args.calls:
        print_calls(root, data_root, seeds, per_epoch)


def profile_config(args, root: Path, config: str, overrides: list[str], lanes_options=("auto", "1"), loop=None,
                   steps_of=None, label: str = "") -> None:
    """A config of experiments/configs under the profile, lanes=auto and =1 (and a hand-written loop beside)."""
    columns = []
    for lanes in lanes_options:
        over = [f"runs_dir={root}", f"name=profile_{lanes}", f"trainer.lanes={lanes}", "trainer.progress=false",
                "trainer.accelerator=cpu", *overrides]
        plain = run_lottery(over, config)[0]  # unprofiled warm-up, and the time to compare with
        parts, groups = Parts(), []
        import lottery.training.trainer as trainer_module

        original = trainer_module.fit_and_test

        def counted(module, data, settings, steps, *a, **k):
            start = time.perf_counter()
            try:
                return original(module, data, settings, steps, *a, **k)
            finally:
                groups.append((getattr(module, "lanes", None) or 1, steps, time.perf_counter() - start, a[2]))

        trainer_module.fit_and_test = counted
        for namespace in ("lottery.training.single", "lottery.training.lane_group"):
            sys.modules[namespace].fit_and_test = counted
        try:
            wall, _ = profiled(parts, lambda: run_lottery(over, config))
        finally:
            trainer_module.fit_and_test = original
            for namespace in ("lottery.training.single", "lottery.training.lane_group"):
                sys.modules[namespace].fit_and_test = original
        steps = sum(g[1] for g in groups)
        runs = sum(g[0] for g in groups)
        k_mean = runs / len(groups)
        print(f"\n{label} trainer.lanes={lanes}: {wall:.1f} s profiled ({plain:.1f} s unprofiled just before), "
              f"{len(groups)} Trainer.fit calls for {runs} trainings ({k_mean:.2f} lanes per fit on average), {steps} "
              f"optimizer steps ({steps / len(groups):.0f} per fit)")
        columns.append((f"lanes={lanes}", parts, wall, steps, round(k_mean) if lanes != "1" else 1))
        per_fit = sum(v for n, v in parts.time.items() if n.startswith(("per training", "evaluation: test")))
        print(f"  per-training overhead (Trainer construction, fit/test start and end, test epoch, files, models): "
              f"{per_fit:.1f} s = {per_fit / len(groups) * 1e3:.0f} ms per Trainer.fit; steps and epochs: "
              f"{wall - per_fit - sum(v for n, v in parts.time.items() if n.startswith('study')):.1f} s")
        by_size = defaultdict(lambda: [0, 0.0, 0])
        for k, s, seconds, _ in groups:
            by_size[k][0] += 1
            by_size[k][1] += seconds
            by_size[k][2] += s
        for k in sorted(by_size):
            n, seconds, s = by_size[k]
            print(f"  fits of {k} lane(s): {n}, {seconds:.1f} s in fit_and_test ({seconds / n:.2f} s each, "
                  f"{seconds / s * 1e3:.2f} ms per step incl. its evaluation)")
        if args.groups:
            for k, s, seconds, name in groups:
                print(f"    {name}: {k} lane(s), {s} steps, {seconds:.2f} s")
    if loop is not None:
        parts = Parts()
        wall, _ = profiled(parts, lambda: loop(parts), lottery=False)
        parts.time["loop: Python between the parts"] += wall - sum(parts.time.values())
        columns.append(("loop", parts, wall, steps_of, 1))
    print_profile(columns)
    print_instrumentation(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--levels", type=int, default=2, help="pruned levels after level 0")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the three variants, order rotated")
    parser.add_argument("--quick", action="store_true", help="2 epochs: a smoke test")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--fresh", action="store_true",
                        help="each variant of each round in a process of its own (no state left by the others)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which variants, comma-separated")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # --fresh's child: run this one variant, print JSON
    parser.add_argument("--data-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="where the study's step time goes, by part")
    parser.add_argument("--calls", action="store_true", help="with --profile: Python calls per step (cProfile)")
    parser.add_argument("--profile-demo", action="store_true", help="the same for experiments/configs/demo.yaml")
    parser.add_argument("--demo-levels", type=int, default=12)
    parser.add_argument("--sparse-demo", action="store_true", help="experiments/configs/sparse_demo.yaml, lanes=auto")
    parser.add_argument("--groups", action="store_true", help="with --sparse-demo/--profile-demo: every Trainer.fit")
    parser.add_argument("--experiments", action="store_true", help="micro-measures of the proposed changes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's: one per core); on a machine shared with other jobs, 1: "
                             "a 2-thread step waits for a descheduled thread at every parallel region (10-50x slower)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs = 2
    args.variants = args.variants.split(",")
    if unknown := sorted(set(args.variants) - set(VARIANTS)):
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {','.join(VARIANTS)}")
    if args.variant:
        return run_variant(args, args.runs, args.data_root)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    root = Path(tempfile.mkdtemp(prefix="bench_study_"))
    configs = Path(__file__).resolve().parent / "configs"
    try:
        data_root = write_mnist_files(root / "data")
        if args.experiments:
            experiments(args)
        elif args.profile:
            profile_study(args, root / "runs", data_root)
        elif args.profile_demo:
            levels = args.demo_levels
            optim = OptimConfig(optimizer="adam", lr=1.2e-3)
            steps = 30 * 19 * (1 + 2 * levels)
            profile_config(args, root / "runs", str(configs / "demo.yaml"), [f"prune.levels={levels}"],
                           loop=lambda T: loop_study(read_digits, optim, [0], levels, 30, 60, reinit=True, T=T),
                           steps_of=steps, label="demo.yaml")
        elif args.sparse_demo:
            profile_config(args, root / "runs", str(configs / "sparse_demo.yaml"), [], lanes_options=("auto",),
                           label="sparse_demo.yaml")
        else:
            measure_study(args, root / "runs", data_root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")


if __name__ == "__main__":
    main()
