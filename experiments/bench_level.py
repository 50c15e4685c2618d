"""One IMP level with lottery vs a hand-written PyTorch loop doing the same training and masking.

Same model, masks, data order, optimizer, steps and seed; both validate once per epoch and test at
the end. lottery also writes an epoch checkpoint (for resuming) and the level's files, which the
hand-written loop does not: that is part of what is measured. Runs alternate in one process; cells
are medians over repetitions; a ratio is the median of the ratios of runs made side by side.
The plain loop steps an LR schedule and applies the masks, as lottery does; lottery also logs
training loss and accuracy per epoch.

    .venv/bin/python experiments/bench_level.py                   # ~3 min on 2 CPU cores
    .venv/bin/python experiments/bench_level.py --models resnet20 --epochs 2 --device cuda
"""
from __future__ import annotations

import argparse
import copy
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.config import load_config  # noqa: E402
from lottery.data.base import TensorDataModule  # noqa: E402
from lottery.imp import IMP  # noqa: E402
from lottery.rewind import LevelPlan  # noqa: E402
from lottery.schedule import lr_factor, make_optimizer  # noqa: E402
from lottery.trainer import train  # noqa: E402


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


SETTINGS = {  # model -> (config overrides, (input shape, train size, test size), default epochs)
    # LeNet-300-100 at its MNIST size (266k weights), batch 60 as in Frankle & Carbin 2019.
    "lenet": (["model.name=lenet_300_100", "data.batch_size=60"], ((1, 28, 28), 6256, 1000), 2),
    "resnet20": (["model.name=resnet20", "data.batch_size=128", "train.optim.optimizer=sgd", "train.optim.lr=0.1",
                  "train.optim.momentum=0.9", "train.optim.milestone_steps=[40]", "prune.strategy=global_magnitude"],
                 ((3, 32, 32), 2304, 512), 1),
}


def setup(name: str, epochs: int, device: str, root: Path) -> tuple:
    overrides, (shape, train_size, test_size), _ = SETTINGS[name]
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    cfg = load_config(None, [f"runs_dir={root}", f"train.epochs={epochs}", "trainer.progress=false",
                             f"trainer.accelerator={accelerator}", *overrides])
    imp = IMP(cfg, 0, root / name)
    imp.data = Synthetic(shape, train_size, test_size, batch_size=cfg.data.batch_size, val_size=256)
    imp.total_steps = epochs * imp.data.steps_per_epoch()
    return cfg, imp


def pruned(imp, device: str):
    model = imp.build(0).to(device)
    masks = imp.masks_for(model)
    masks.prune(0.8, imp.cfg.prune.strategy)
    return model, masks


def run_lottery(cfg, imp, device: str, out: Path, precision: str = "32-true", compile: bool = False) -> float:
    cfg = copy.deepcopy(cfg)
    cfg.trainer.precision, cfg.trainer.compile = precision, compile
    model, masks = pruned(imp, device)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    train(cfg, model, masks, LevelPlan(True, 0, imp.total_steps, False), imp.data, out, 0, "bench")
    return time.perf_counter() - start


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


def run_plain(cfg, imp, device: str) -> float:
    """The loop a careful researcher would write by hand."""
    model, masks = pruned(imp, device)
    start = time.perf_counter()
    optimizer = make_optimizer(model.parameters(), cfg.train.optim)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg.train.optim))
    train_loader, val_loader = imp.data.train_dataloader(), imp.data.val_dataloader()
    for epoch in range(cfg.train.epochs):
        train_loader.sampler.set_epoch(epoch)
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            masks.apply()
        _accuracy(model, val_loader, device)
    _accuracy(model, imp.data.test_dataloader(), device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=None, help="epochs per level (default: lenet 2, resnet20 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--extras", nargs="*", default=[], choices=["bf16", "compile"],
                        help="also time lottery with precision=bf16-mixed and/or trainer.compile=true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_level_"))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    extra_head = "".join(f" lottery {e} s | ratio |" for e in args.extras)
    print(f"\n| model | steps | plain loop s | lottery s | ratio | extra ms/step |{extra_head}\n"
          f"|---|---:|---:|---:|---:|---:|" + "---:|---:|" * len(args.extras))
    settings = {"bf16": dict(precision="bf16-mixed"), "compile": dict(compile=True)}
    for name in args.models:
        cfg, imp = setup(name, args.epochs or SETTINGS[name][2], args.device, root)
        out = root / name / "level"
        run_plain(cfg, imp, args.device)  # warm-up (allocator, kernels, data)
        run_lottery(cfg, imp, args.device, out)
        for extra in args.extras:  # warm-up: compilation happens once per process
            run_lottery(cfg, imp, args.device, out, **settings[extra])
        plain, ours, extras = [], [], {e: [] for e in args.extras}
        for i in range(args.repeats):
            # Alternate which runs first, and compare each lottery run with the plain run beside it:
            # a shared machine's slow phases then hit both sides of a ratio.
            pair = (lambda: plain.append(run_plain(cfg, imp, args.device)),
                    lambda: ours.append(run_lottery(cfg, imp, args.device, out)))
            for run in pair[::-1 if i % 2 else 1]:
                run()
            for extra in args.extras:
                extras[extra].append(run_lottery(cfg, imp, args.device, out, **settings[extra]))
        p, o = statistics.median(plain), statistics.median(ours)
        ratio = statistics.median(b / a for a, b in zip(plain, ours))
        cells = "".join(f" {statistics.median(v):.2f} | {statistics.median(b / a for a, b in zip(plain, v)):.2f}x |"
                        for v in extras.values())
        print(f"| {name} | {imp.total_steps} | {p:.2f} | {o:.2f} | {ratio:.2f}x | {(o - p) / imp.total_steps * 1e3:.2f} |"
              f"{cells}", flush=True)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
