"""One IMP level with lottery vs a hand-written PyTorch loop doing the same training and masking.

Same model, masks, data order, optimizer, steps and seed; both validate once per epoch and test at
the end. lottery also writes an epoch checkpoint (for resuming) and the level's files, which the
hand-written loop does not: that is part of what is measured. Runs alternate in one process; cells
are medians over repetitions.

    .venv/bin/python experiments/bench_level.py                   # ~2 min on 2 CPU cores
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
from lottery.schedule import make_optimizer  # noqa: E402
from lottery.trainer import train  # noqa: E402


class SyntheticCIFAR(TensorDataModule):
    """CIFAR-shaped random data (the benchmark measures speed, not accuracy)."""

    num_classes, input_shape = 10, (3, 32, 32)

    def load(self):
        g = torch.Generator().manual_seed(0)
        x, xt = torch.randn(2048, 3, 32, 32, generator=g), torch.randn(512, 3, 32, 32, generator=g)
        return x, torch.randint(0, 10, (2048,), generator=g), xt, torch.randint(0, 10, (512,), generator=g)


SETTINGS = {  # model -> (config overrides, datamodule or None for the config's own)
    "lenet": (["model.name=lenet_300_100", "data.name=digits", "data.batch_size=60"], None),
    "resnet20": (["model.name=resnet20", "data.batch_size=128", "train.optim.optimizer=sgd", "train.optim.lr=0.1",
                  "train.optim.momentum=0.9", "prune.strategy=global_magnitude"], SyntheticCIFAR),
}


def setup(name: str, epochs: int, device: str, root: Path) -> tuple:
    overrides, data_cls = SETTINGS[name]
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    cfg = load_config(None, [f"runs_dir={root}", f"train.epochs={epochs}", "trainer.progress=false",
                             f"trainer.accelerator={accelerator}", "data.val_size=256", *overrides])
    imp = IMP(cfg, 0, root / name)
    if data_cls is not None:
        imp.data = data_cls(batch_size=cfg.data.batch_size, val_size=256)
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
    train_loader, val_loader = imp.data.train_dataloader(), imp.data.val_dataloader()
    step = 0
    for epoch in range(cfg.train.epochs):
        train_loader.sampler.set_epoch(epoch)
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            masks.apply()
            step += 1
        _accuracy(model, val_loader, device)
    _accuracy(model, imp.data.test_dataloader(), device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=None, help="epochs per level (default: lenet 10, resnet20 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--extras", nargs="*", default=[], choices=["bf16", "compile"],
                        help="also time lottery with precision=bf16-mixed and/or trainer.compile=true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_level_"))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    extra_head = "".join(f" lottery {e} s | ratio |" for e in args.extras)
    print(f"\n| model | steps | plain loop s | lottery s | ratio |{extra_head}\n|---|---:|---:|---:|---:|"
          + "---:|---:|" * len(args.extras))
    settings = {"bf16": dict(precision="bf16-mixed"), "compile": dict(compile=True)}
    for name in args.models:
        epochs = args.epochs or {"lenet": 10, "resnet20": 1}[name]
        cfg, imp = setup(name, epochs, args.device, root)
        run_plain(cfg, imp, args.device)  # warm-up (allocator, kernels, data)
        for extra in args.extras:  # warm-up: compilation happens once per process
            run_lottery(cfg, imp, args.device, root / name / "level", **settings[extra])
        plain, ours, extras = [], [], {e: [] for e in args.extras}
        for _ in range(args.repeats):
            ours.append(run_lottery(cfg, imp, args.device, root / name / "level"))
            plain.append(run_plain(cfg, imp, args.device))
            for extra in args.extras:
                extras[extra].append(run_lottery(cfg, imp, args.device, root / name / "level", **settings[extra]))
        p, o = statistics.median(plain), statistics.median(ours)
        cells = "".join(f" {statistics.median(v):.2f} | {statistics.median(v) / p:.2f}x |" for v in extras.values())
        print(f"| {name} | {imp.total_steps} | {p:.2f} | {o:.2f} | {o / p:.2f}x |{cells}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
