"""K runs trained as lanes of one network vs the same K runs one after another: runs per hour.

Same models, masks (50% pruned, layer-wise magnitude), data (each run its own order), optimizer and steps on
both sides. "plain" is a hand-written PyTorch loop; "Lightning" is a whole `Trainer.fit` per run (one by one:
ClassificationModule + MaskCallback, as a lottery level trains) against one `Trainer.fit` of the same module over a LaneNet for all
K. The ratio is (time of K runs one by one) / (time of the K runs as lanes) = the gain in runs per hour;
measured side by side in one process (alternating order, median over repeats), so machine noise hits both.

    .venv/bin/python experiments/bench_lanes.py                              # ~4 min on 2 CPU cores
    .venv/bin/python experiments/bench_lanes.py --models lenet --lanes 1 8 16 --steps 300 --repeats 3
    .venv/bin/python experiments/bench_lanes.py --device cuda --lanes 1 2 4 8 16 --compile   # on a GPU
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.cli.command import quiet_libraries  # noqa: E402
from lottery.core.macs import step_macs  # noqa: E402
from lottery.core.masks import MaskManager  # noqa: E402
from lottery.data.base import TensorDataModule  # noqa: E402
from lottery.lanes.count import choose_lanes  # noqa: E402
from lottery.lanes.net import LaneNet, lane_loss, stack_masks  # noqa: E402
from lottery.models import create_model  # noqa: E402
from lottery.training.callbacks import MaskCallback  # noqa: E402
from lottery.training.lane_data import LaneDataModule  # noqa: E402
from lottery.training.module import ClassificationModule  # noqa: E402
from lottery.training.optimizers import make_optimizer  # noqa: E402
from lottery.core.schema import OptimConfig  # noqa: E402

quiet_libraries()  # Lightning's banners at every fit would bury the table
from lottery.training.trainer import runtime_cuda_probe  # noqa: E402

SETTINGS = {  # name -> (model, input shape, batch, optimizer, default steps per run, default lane counts)
    "lenet": ("lenet_300_100", (1, 28, 28), 60, OptimConfig(optimizer="adam", lr=1.2e-3), 100, [1, 2, 4, 8, 16]),
    "conv2": ("conv2", (3, 32, 32), 60, OptimConfig(optimizer="adam", lr=2e-4), 3, [1, 2, 4, 8]),
    "resnet20": ("resnet20", (3, 32, 32), 128, OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
                 2, [1, 2, 4]),
}


class Synthetic(TensorDataModule):
    """Random data of the model's input shape, one epoch = the benchmark's steps (speed, not accuracy)."""

    num_classes = 10

    def __init__(self, input_shape, size: int, **kwargs):
        super().__init__(val_size=0, **kwargs)
        self.input_shape, self.size = input_shape, size

    def load(self):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(self.size, *self.input_shape, generator=g), torch.randint(0, 10, (self.size,), generator=g)
        return x, y, x[:1], y[:1]


def _runs(name: str, lanes: int, device: str):
    model, shape, *_ = SETTINGS[name]
    torch.manual_seed(0)
    models = [create_model(model, 10, shape).to(device) for _ in range(lanes)]
    masks = [MaskManager(m) for m in models]
    for m in masks:
        m.prune(0.5, "layer_magnitude")
    return models, masks


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain(name: str, lanes: int, steps: int, device: str, together: bool, compile: bool = False) -> float:
    """K runs of `steps` steps in a hand-written loop, one after another or as lanes.

    With `compile`, the lanes' forward runs through torch.compile(mode="reduce-overhead") and the clock starts
    after three warm-up steps, which compile (and record the CUDA graphs).
    """
    _, shape, batch, optim, *_ = SETTINGS[name]
    models, masks = _runs(name, lanes, device)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(steps * batch, *shape, generator=g).to(device), torch.randint(0, 10, (steps * batch,), generator=g).to(device)
    orders = torch.stack([torch.randperm(steps * batch, generator=torch.Generator().manual_seed(k)) for k in range(lanes)]).to(device)
    groups = [(LaneNet.from_models(models), list(range(lanes)))] if together else [(m, [k]) for k, m in enumerate(models)]
    start = time.perf_counter()
    for net, ks in groups:
        step_fn = torch.compile(net, mode="reduce-overhead") if compile else net
        warmup = 3 if compile else 0
        if together:
            manager = MaskManager(net)
            manager.set_masks(stack_masks([masks[k].masks for k in ks]))
        else:
            manager = masks[ks[0]]
        optimizer = make_optimizer(net.parameters(), optim)
        for step in range(-warmup, steps):
            if step == 0 and warmup:
                _sync(device)
                start = time.perf_counter()
            index = orders[ks, max(step, 0) * batch:(max(step, 0) + 1) * batch]
            xb, yb = x[index], y[index]
            if together:
                loss = lane_loss(step_fn(xb), yb)[0]
            else:
                loss = F.cross_entropy(step_fn(xb[0]), yb[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = optim.lr_at(max(step, 0))
            optimizer.step()
            manager.apply()
    _sync(device)
    return time.perf_counter() - start


def _trainer(steps: int, masks: MaskManager, device: str) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
                      callbacks=[MaskCallback(masks)], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                      use_distributed_sampler=False)


def lightning(name: str, lanes: int, steps: int, device: str, together: bool) -> float:
    """K runs as K `Trainer.fit`s one after another, or as one `Trainer.fit` of the lanes."""
    _, shape, batch, optim, *_ = SETTINGS[name]
    models, masks = _runs(name, lanes, device)
    data = Synthetic(shape, steps * batch, batch_size=batch)
    start = time.perf_counter()
    with runtime_cuda_probe(on_cpu=not device.startswith("cuda")):
        if together:
            net = LaneNet.from_models(models)
            manager = MaskManager(net)
            manager.set_masks(stack_masks([m.masks for m in masks]))
            _trainer(steps, manager, device).fit(ClassificationModule(net, 10, optim), datamodule=LaneDataModule(data, range(lanes)))
        else:
            for k, (model, mask) in enumerate(zip(models, masks)):
                _trainer(steps, mask, device).fit(ClassificationModule(model, 10, optim, seed=k), datamodule=data.with_seed(k))
    _sync(device)
    return time.perf_counter() - start


def measure(fn, name: str, lanes: int, steps: int, device: str, repeats: int) -> tuple[float, float, float]:
    """(one-by-one seconds, lanes seconds, median paired ratio), alternating the order across repeats."""
    for together in (False, True):  # warm-up: allocator, kernels, traced graph
        fn(name, lanes, min(steps, 3), device, together)
    pairs = []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        times = {together: fn(name, lanes, steps, device, together) for together in order}
        pairs.append((times[False], times[True]))
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            statistics.median(a / b for a, b in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--lanes", nargs="+", type=int, default=None, help="lane counts K (default per model)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: lenet 100, conv2 3, resnet20 2)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--loops", nargs="+", default=["plain", "lightning"], choices=["plain", "lightning"])
    parser.add_argument("--compile", action="store_true", help="also time the plain lanes loop under "
                        "torch.compile(mode='reduce-overhead') (CUDA graphs; for GPUs)")
    parser.add_argument("--fig3", action="store_true", help="project the wall time of Frankle & Carbin's Figure 3 "
                        "from the step rate of 15 LeNet lanes")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print("\n| model | loop | K | steps/run | K runs one by one s | K runs as lanes s | runs/hour ratio | per-lane step ms |"
          "\n|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        steps = args.steps or SETTINGS[name][4]
        for loop in args.loops:
            fn = plain if loop == "plain" else lightning
            for lanes in args.lanes or SETTINGS[name][5]:
                alone, together, ratio = measure(fn, name, lanes, steps, args.device, args.repeats)
                print(f"| {name} | {loop} | {lanes} | {steps} | {alone:.2f} | {together:.2f} | {ratio:.2f}x | "
                      f"{together / steps / lanes * 1e3:.2f} |", flush=True)
        model, shape, batch, *_ = SETTINGS[name]
        lanes, reason = choose_lanes(16, args.device.split(":")[0], step_macs(create_model(model, 10, shape), shape, batch))
        print(f"choose_lanes(16 runs of {name}) -> {lanes}: {reason}", flush=True)
    if args.compile:
        for name in args.models:
            steps = args.steps or SETTINGS[name][4]
            lanes = 8
            try:
                eager = plain(name, lanes, steps, args.device, True)
                compiled = plain(name, lanes, steps, args.device, True, compile=True)
            except Exception as error:  # a measurement, not a requirement: say what failed and go on
                print(f"compile(reduce-overhead) {name} K={lanes}: failed ({type(error).__name__}: {error})"[:300])
                continue
            print(f"compile(reduce-overhead) {name} K={lanes}: eager {eager:.2f} s, compiled {compiled:.2f} s "
                  f"({eager / compiled:.2f}x)", flush=True)
    if args.fig3:
        # 15 lanes = 5 seeds x (ticket, reinit, random pruning) of one level; 21 levels in sequence.
        steps, runs, iterations = args.steps or 200, 5 * 21 * 3, 50_000
        for loop, fn in (("plain loop", plain), ("lottery's Trainer", lightning)):
            fn("lenet", 15, 3, args.device, True), fn("lenet", 1, 3, args.device, True)  # warm-up
            seconds = fn("lenet", 15, steps, args.device, True)
            solo = fn("lenet", 1, steps, args.device, False) / steps
            print(f"Frankle & Carbin 2019 Fig. 3 ({runs} runs of {iterations} iterations, LeNet-300-100), {loop}: "
                  f"{seconds / steps * 1e3:.2f} ms per step of 15 lanes -> {21 * iterations * seconds / steps / 60:.1f} min "
                  f"projected (one run at a time: {runs * iterations * solo / 3600:.1f} h)", flush=True)


if __name__ == "__main__":
    main()
