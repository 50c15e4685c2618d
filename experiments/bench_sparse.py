"""The training cost of a mask update (GMP, SET, RigL) amortised over its update interval ΔT, against dense steps.

For each model, at 10% of the weights kept (ERK, as the RigL paper trains), times side by side in one process:
  step     one training step: forward, cross-entropy, backward, optimizer step, `MaskManager.apply()`
  update   one mask update of each method at an update step (`updater.update`: scores, one top-k per tensor over all
           lanes, regrown weights and their optimizer state reset, the masks applied); RigL's update step also skips
           the optimizer step (`before_step`), which a step would have cost, and that saving is left out here
Cells are medians over alternating repetitions. "amortised" is the update's time over ΔT steps as a share of a
step: what a method adds to training when it updates every ΔT steps (target: <= 3% at ΔT = 100).

    .venv/bin/python experiments/bench_sparse.py                     # ~1 min on 2 CPU cores
    .venv/bin/python experiments/bench_sparse.py --device cuda --interval 100
"""
from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.core.masks import MaskManager  # noqa: E402
from lottery.models import create_model  # noqa: E402
from lottery.sparsity.distributions import erdos_renyi_kernel  # noqa: E402
from lottery.sparsity.schedule import UpdateSchedule  # noqa: E402
from lottery.sparsity.updaters import SPARSE_TRAINING  # noqa: E402

_sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
_adam = functools.partial(torch.optim.Adam, lr=1.2e-3)
# name -> (model, input shape, batch size, optimizer)
SETTINGS = {
    "lenet": ("lenet_300_100", (1, 28, 28), 60, _adam),
    "resnet20": ("resnet20", (3, 32, 32), 128, _sgd),
}
METHODS = ("gmp", "set", "rigl")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _setup(name: str, device: str, method: str, interval: int):
    model_name, shape, batch, optimizer = SETTINGS[name]
    torch.manual_seed(0)
    model = create_model(model_name, 10, shape).to(device)
    masks = MaskManager(model)
    density = erdos_renyi_kernel({n: tuple(m.shape) for n, m in masks.masks.items()}, 0.1)
    record = SPARSE_TRAINING[method]
    if not record.starts_dense:
        masks.prune_to(density, "layer_random", torch.Generator().manual_seed(0))
    opt = optimizer(model.parameters())
    updater = record.call(record.updater, UpdateSchedule(end_step=10 * interval, interval=interval), density, [0])
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    return model, masks, opt, updater, x, y


def _step(model, masks, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    masks.apply()


def measure(name: str, device: str, interval: int, steps: int, repeats: int) -> list[dict]:
    rows = []
    for method in METHODS:
        model, masks, opt, updater, x, y = _setup(name, device, method, interval)
        for _ in range(3):
            _step(model, masks, opt, x, y)  # warm up (and give the optimizer its state)
        step_times, update_times = [], []
        for r in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                _step(model, masks, opt, x, y)
            _sync(device)
            step_times.append((time.perf_counter() - start) / steps)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()  # an update step's gradients, as RigL reads them
            update_step = interval * (r % 5)
            _sync(device)
            start = time.perf_counter()
            updater.update(update_step, masks, opt)
            _sync(device)
            update_times.append(time.perf_counter() - start)
        step, update = statistics.median(step_times), statistics.median(update_times)
        rows.append({"model": name, "method": method, "step_ms": 1e3 * step, "update_ms": 1e3 * update,
                     "amortised": update / (interval * step)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--interval", type=int, default=100, help="ΔT, steps between updates")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per repetition")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {args.device}, "
          f"{torch.get_num_threads()} threads; 10% of weights kept (ERK), ΔT = {args.interval}")
    print("\n| model | method | step (ms) | update (ms) | update / (ΔT x step) |\n|---|---|---:|---:|---:|")
    for name in args.models:
        for r in measure(name, args.device, args.interval, args.steps, args.repeats):
            print(f"| {r['model']} | {r['method']} | {r['step_ms']:.2f} | {r['update_ms']:.2f} | {100 * r['amortised']:.2f}% |")


if __name__ == "__main__":
    main()
