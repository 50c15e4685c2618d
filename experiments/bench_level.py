"""One IMP level with lottery vs a hand-written PyTorch loop doing the same training and masking.

Same model, masks, data order, optimizer, steps and seed; both validate once per epoch and test at
the end. lottery also writes an epoch checkpoint (for resuming) and the level's files, which the
hand-written loop does not: that is part of what is measured. Runs alternate in one process; cells
are medians over repetitions; a ratio is the median of the ratios of runs made side by side.
The plain loop steps an LR schedule and applies the masks, as lottery does; lottery also logs
training loss and accuracy per epoch. "Minimal Lightning" is the least a Lightning user writes for
the same training (a bare Trainer, a 20-line module, the MaskCallback): the floor that the Trainer's
own per-step bookkeeping sets, so that what lottery adds and what Lightning costs read apart.
`--extras fabric` times the hand-written loop on Lightning Fabric (no Trainer) beside them.
"lottery K=8 lanes" trains 8 such runs (seeds 0-7: own data order, same masks) as lanes of one network
under one Trainer (`trainer.lanes`) and reports the time per run: the Trainer's per-step cost, paid once
for the 8 runs, against the hand-written loop's one run (`--lanes 0` leaves it out).

    .venv/bin/python experiments/bench_level.py                   # ~4.5 min on 2 CPU cores
    .venv/bin/python experiments/bench_level.py --models lenet --extras fabric
    .venv/bin/python experiments/bench_level.py --models resnet20 --epochs 2 --device cuda
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.cli.command import quiet_libraries  # noqa: E402
from lottery.cli.config import load_config  # noqa: E402
from lottery.core.layout import RunLayout, TrainingDir  # noqa: E402
from lottery.core.rewind import TrainingPlan  # noqa: E402
from lottery.data.base import TensorDataModule  # noqa: E402
from lottery.imp.runner import SeedRunner  # noqa: E402
from lottery.training.callbacks import MaskCallback  # noqa: E402
from lottery.training.lane_group import train_lanes  # noqa: E402
from lottery.training.optimizers import make_optimizer  # noqa: E402
from lottery.core.schema import lr_factor  # noqa: E402
from lottery.training.single import train  # noqa: E402
from lottery.training.spec import RunSpec  # noqa: E402
from lottery.training.trainer import runtime_cuda_probe  # noqa: E402

quiet_libraries()  # Lightning's banners at every fit would bury the table


class Synthetic(TensorDataModule):
    """Random data shaped like MNIST or CIFAR-10 (the benchmark measures speed, not accuracy)."""

    num_classes = 10

    def __init__(self, input_shape: tuple[int, ...], train: int, test: int, **kwargs):
        super().__init__(**kwargs)
        self.input_shape, self.sizes = input_shape, (train, test)

    def load(self):
        g = torch.Generator().manual_seed(0)
        (n, m), shape = self.sizes, self.input_shape
        x, xt = torch.randn(n, *shape, generator=g), torch.randn(m, *shape, generator=g)
        return x, torch.randint(0, 10, (n,), generator=g), xt, torch.randint(0, 10, (m,), generator=g)


SETTINGS = {  # model -> (config overrides, (input shape, train size, test size), default epochs, default repeats)
    # LeNet-300-100 at its MNIST size (266k weights), batch 60 as in Frankle & Carbin 2019.
    "lenet": (["model.name=lenet_300_100", "data.batch_size=60"], ((1, 28, 28), 6256, 1000), 5, 7),
    "resnet20": (["model.name=resnet20", "data.batch_size=128", "train.optim.optimizer=sgd", "train.optim.lr=0.1",
                  "train.optim.momentum=0.9", "train.optim.milestone_steps=[8]", "prune.strategy=global_magnitude"],
                 ((3, 32, 32), 2304, 512), 1, 5),
}


def setup(name: str, epochs: int, device: str, root: Path) -> tuple:
    overrides, (shape, train_size, test_size), *_ = SETTINGS[name]
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    cfg = load_config(None, [f"runs_dir={root}", f"train.epochs={epochs}", "trainer.progress=false",
                             f"trainer.accelerator={accelerator}", *overrides])
    data = Synthetic(shape, train_size, test_size, batch_size=cfg.data.batch_size, val_size=256)
    imp = SeedRunner(cfg, RunLayout.of(root, name).seed(0), data, log=lambda *_: None)
    return cfg, imp


def pruned(imp, device: str):
    model = imp.models.fresh(0).to(device)
    masks = imp.models.masks_for(model)
    masks.prune(0.8, imp.cfg.prune.strategy)
    return model, masks


def run_lottery(cfg, imp, device: str, out: Path, precision: str = "32-true", compile: bool = False) -> float:
    settings = dataclasses.replace(cfg.trainer, precision=precision, compile=compile)
    model, masks = pruned(imp, device)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    train(RunSpec("bench", model, masks, TrainingPlan.from_start(imp.total_steps), imp.data, 0, TrainingDir(out)), settings, imp.optim)
    return time.perf_counter() - start


def run_lanes(cfg, imp, device: str, out: Path, lanes: int) -> float:
    """`lanes` runs of the level (seeds 0..K-1: data order; same masks) as lanes; seconds per run."""
    specs = []
    for k in range(lanes):
        model, masks = pruned(imp, device)
        specs.append(RunSpec(f"bench {k}", model, masks, TrainingPlan.from_start(imp.total_steps), imp.data.with_seed(k), k,
                             TrainingDir(out / f"lane_{k}")))
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    train_lanes(specs, cfg.trainer, imp.optim)
    return (time.perf_counter() - start) / lanes


@torch.no_grad()
def _accuracy(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum()
        total += len(y)
    model.train()
    return float(correct) / total  # one host sync per evaluation


def run_plain(cfg, imp, device: str, fabric: bool = False) -> float:
    """The loop a careful researcher would write by hand; with `fabric`, the same loop on Lightning Fabric.

    Such a script does not import Lightning's Trainer, so torch's CUDA probe in `optimizer.step()` is
    not the NVML one Lightning's import switches on: the probe is set back here as in such a process.
    """
    with runtime_cuda_probe(on_cpu=not device.startswith("cuda")):
        return _plain_loop(cfg, imp, device, fabric)


def _plain_loop(cfg, imp, device: str, fabric: bool) -> float:
    model, masks = pruned(imp, device)
    start = time.perf_counter()
    optimizer = make_optimizer(model.parameters(), imp.optim)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, imp.optim))
    loaders = imp.data.train_dataloader(), imp.data.val_dataloader(), imp.data.test_dataloader()
    backward = torch.Tensor.backward
    if fabric:  # devices, precision and DDP through Fabric's wrappers, no Trainer
        from lightning_fabric import Fabric

        runner = Fabric(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1)
        model, optimizer = runner.setup(model, optimizer)
        loaders = runner.setup_dataloaders(*loaders, use_distributed_sampler=False)
        backward = runner.backward
    train_loader, val_loader, test_loader = loaders
    for epoch in range(cfg.train.epochs):
        train_loader.sampler.set_epoch(epoch)
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            optimizer.step()
            schedule.step()
            masks.apply()
        _accuracy(model, val_loader, device)
    _accuracy(model, test_loader, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


class MinimalModule(pl.LightningModule):
    """The least a Lightning user writes for the same training: the floor the Trainer itself sets."""

    def __init__(self, model, optim):
        super().__init__()
        self.model, self.optim, self.automatic_optimization = model, optim, False

    def training_step(self, batch, batch_idx):
        x, y = batch
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(F.cross_entropy(self.model(x), y))
        optimizer.step()
        schedule.step()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("acc", (self.model(x).argmax(1) == y).float().mean())

    test_step = validation_step

    def configure_optimizers(self):
        optimizer = make_optimizer(self.parameters(), self.optim)
        return [optimizer], [torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, self.optim))]


def run_minimal(cfg, imp, device: str) -> float:
    """A bare Trainer (no logger, checkpoints or progress bar) with the MaskCallback."""
    model, masks = pruned(imp, device)
    start = time.perf_counter()
    trainer = pl.Trainer(max_steps=imp.total_steps, accelerator="gpu" if device.startswith("cuda") else "cpu",
                         devices=1, callbacks=[MaskCallback(masks)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         use_distributed_sampler=False)
    module = MinimalModule(model, imp.optim)
    with runtime_cuda_probe(on_cpu=not device.startswith("cuda")):  # as lottery.training.single.train does
        trainer.fit(module, datamodule=imp.data)
        trainer.test(module, datamodule=imp.data, verbose=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=None, help="epochs per level (default: lenet 5, resnet20 1)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per model (default: lenet 7, resnet20 5)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--extras", nargs="*", default=[], choices=["bf16", "compile", "fabric"],
                        help="also time lottery with precision=bf16-mixed and/or trainer.compile=true, "
                             "and/or the hand-written loop on Lightning Fabric")
    parser.add_argument("--lanes", type=int, default=8, help="K runs as lanes: time per run (0: leave out)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_level_"))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    heads = {"bf16": "lottery bf16", "compile": "lottery compile", "fabric": "Fabric loop"}
    extras = args.extras + (["lanes"] if args.lanes > 1 else [])
    heads["lanes"] = f"lottery K={args.lanes} lanes, per run"
    extra_head = "".join(f" {heads[e]} s | ratio |" for e in extras)
    print(f"\n| model | steps | plain loop s | minimal Lightning s | ratio | lottery (K=1) s | ratio | lottery - plain, ms/step |"
          f"{extra_head}\n|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(extras))
    settings = {"bf16": dict(precision="bf16-mixed"), "compile": dict(compile=True)}
    for name in args.models:
        cfg, imp = setup(name, args.epochs or SETTINGS[name][2], args.device, root)
        out = root / name / "level"
        runs = {"plain": lambda: run_plain(cfg, imp, args.device), "minimal": lambda: run_minimal(cfg, imp, args.device),
                "lottery": lambda: run_lottery(cfg, imp, args.device, out)}
        runs.update({e: (lambda e=e: run_plain(cfg, imp, args.device, fabric=True) if e == "fabric" else
                         run_lottery(cfg, imp, args.device, out, **settings[e])) for e in args.extras})
        if args.lanes > 1:
            runs["lanes"] = lambda: run_lanes(cfg, imp, args.device, root / name / "lanes", args.lanes)
        for run in runs.values():  # warm-up: allocator, kernels, data; compilation happens once per process
            run()
        times = {k: [] for k in runs}
        for i in range(args.repeats or SETTINGS[name][3]):
            # Alternate the order, and compare each run with the plain run of the same round:
            # a shared machine's slow phases then hit both sides of a ratio.
            for key, run in list(runs.items())[::-1 if i % 2 else 1]:
                times[key].append(run())
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = {k: statistics.median(b / a for a, b in zip(times["plain"], v)) for k, v in times.items()}
        cells = "".join(f" {med[e]:.2f} | {ratio[e]:.2f}x |" for e in extras)
        extra_ms = statistics.median(b - a for a, b in zip(times["plain"], times["lottery"])) / imp.total_steps * 1e3
        print(f"| {name} | {imp.total_steps} | {med['plain']:.2f} | {med['minimal']:.2f} | {ratio['minimal']:.2f}x | "
              f"{med['lottery']:.2f} | {ratio['lottery']:.2f}x | {extra_ms:.2f} |{cells}", flush=True)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
