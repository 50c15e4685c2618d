"""Cost of keeping pruned weights at zero during training, per training step.

Times one step (forward, cross-entropy, backward, optimizer step, zero_grad) at the same masks for:
  dense     no masking (the baseline; ratios are relative to it)
  apply     `MaskManager.apply()` after `optimizer.step()`: one `torch._foreach_mul_` with the masks
            cached in the parameters' dtype
  prune     `torch.nn.utils.prune.custom_from_mask` (what Lightning's ModelPruning uses): a forward
            pre-hook recomputes weight = weight_orig * weight_mask every step
  loop      `for p, m in pairs: p.data.mul_(m)`, one kernel per tensor
  apply_u8, apply_float (opt-in, --variants): apply's multiply with the bool masks viewed as uint8
            (no copy), or converted to float masks (4 bytes per weight)
Variants run interleaved in one process (the order rotates each repetition) so machine noise hits all
alike; cells are medians over repetitions, and "dense range" ((max - min) / median of the dense
repetitions) gauges the noise. Because a step ratio cannot resolve 2% on a noisy machine, `apply()`
itself is also timed alone and shown as a share of the dense step: it is all the work apply adds.
Also printed: the mask memory each approach keeps beside the weights, and the time of the mask
multiply alone by mask dtype.

    .venv/bin/python experiments/bench_masks.py                      # ~1-2 min on 2 CPU cores
    .venv/bin/python experiments/bench_masks.py --models lenet --variants dense apply apply_u8 apply_float
"""
from __future__ import annotations

import argparse
import copy
import functools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.core.errors import LotteryError  # noqa: E402
from lottery.core.masks import MaskManager  # noqa: E402
from lottery.models import create_model  # noqa: E402

VARIANTS = ("dense", "apply", "prune", "loop", "apply_u8", "apply_float")


def small_cnn() -> nn.Module:
    """Two 3x3 conv layers (32, 64 filters) with max-pooling, then one linear layer; 3x32x32 input."""
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


_sgd = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
_adam = functools.partial(torch.optim.Adam, lr=1.2e-3)  # Frankle & Carbin's LeNet setting


# name -> (model factory, input shape (C, H, W), batch size, optimizer factory)
SETTINGS = {
    "lenet": (lambda: create_model("lenet_300_100", 10, (1, 28, 28)), (1, 28, 28), 60, _adam),
    "cnn": (small_cnn, (3, 32, 32), 128, _sgd),
    "resnet20": (lambda: create_model("resnet20", 10, (3, 32, 32)), (3, 32, 32), 128, _sgd),
    "resnet18": (lambda: create_model("torchvision:resnet18", 10, (3, 32, 32)), (3, 32, 32), 64, _sgd),
}


def _after_step(name: str, model: nn.Module, masks: MaskManager):
    """What runs after `optimizer.step()` in variant `name` (after pruning `model` if it is "prune")."""
    pairs = [(model.get_parameter(n), m.clone()) for n, m in masks.masks.items()]
    if name == "apply":
        mm = MaskManager(model)
        mm.set_masks(masks.masks)
        return mm.apply
    if name == "prune":
        for n, m in masks.masks.items():
            prune.custom_from_mask(model.get_submodule(n.rsplit(".", 1)[0]), "weight", m)
    if name == "loop":
        def loop():
            for p, m in pairs:
                p.data.mul_(m)
        return loop
    if name.startswith("apply_"):
        cast = [m.view(torch.uint8) if name == "apply_u8" else m.to(p.dtype) for p, m in pairs]
        return torch.no_grad()(lambda: torch._foreach_mul_([p for p, _ in pairs], cast))
    return lambda: None


def make_variants(base: nn.Module, masks: MaskManager, make_opt, names) -> dict:
    """One independent copy of the pruned `base` per variant: name -> (model, optimizer, after_step)."""
    out = {}
    for name in names:
        model = copy.deepcopy(base)
        after = _after_step(name, model, masks)  # first: prune swaps `weight` for `weight_orig`
        out[name] = (model, make_opt(model.parameters()), after)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(variant, x, y, steps: int, device: torch.device) -> float:
    """Seconds per training step, averaged over `steps` consecutive steps."""
    model, opt, after = variant
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        after()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    return (time.perf_counter() - start) / steps


def bench_model(key: str, args, device: torch.device):
    """Median ms/step per variant for model `key`, plus the extra mask bytes per prunable weight."""
    factory, shape, batch, make_opt = SETTINGS[key]
    torch.manual_seed(0)
    base = factory().to(device)
    masks = MaskManager(base)
    masks.prune(args.sparsity, "global_magnitude")
    variants = make_variants(base, masks, make_opt, args.variants)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    for v in variants.values():  # warm-up: allocator, kernels, optimizer state
        time_steps(v, x, y, 3, device)
    steps = args.steps or max(2, round(args.target_s / time_steps(variants["dense"], x, y, 3, device)))
    names, times = list(variants), {n: [] for n in variants}
    for r in range(args.repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:  # rotate: no variant always runs first
            times[n].append(time_steps(variants[n], x, y, steps, device))
    ms = {n: 1e3 * statistics.median(t) for n, t in times.items()}
    ms["noise"] = 100 * (max(times["dense"]) - min(times["dense"])) / statistics.median(times["dense"])
    if "apply" in variants:  # the only work apply adds to a step, timed alone: sharper than a step ratio
        ms["apply_alone"] = 1e-3 * _time_us(variants["apply"][2], device)
    return ms, steps, extra_bytes(masks, copy.deepcopy(base)), mask_op_cost(masks, device)


def extra_bytes(masks: MaskManager, pruned: nn.Module) -> dict[str, float]:
    """Bytes kept beside each prunable weight: our bool masks and their copies in the parameters' dtype
    (what the fused multiply uses) vs prune's float mask + materialized weight."""
    _after_step("prune", pruned, masks)
    numel = sum(m.numel() for m in masks.masks.values())
    ours = sum(m.numel() * m.element_size() for m in [*masks.masks.values(), *masks._masks])  # bool + multiply copies
    theirs = 0
    for n in masks.names:
        module = pruned.get_submodule(n.rsplit(".", 1)[0])
        # weight_orig replaces the parameter; prune adds the mask buffer and the recomputed `weight`.
        theirs += sum(t.numel() * t.element_size() for t in (module.weight_mask, module.weight))
    return {"apply": ours / numel, "prune": theirs / numel}


def _time_us(fn, device: torch.device, reps: int = 200) -> float:
    """Median over 5 runs of the microseconds per call of `fn`, over `reps` calls."""
    def run():
        fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        return 1e6 * (time.perf_counter() - start) / reps
    return statistics.median(run() for _ in range(5))


def mask_op_cost(masks: MaskManager, device: torch.device) -> dict[str, float]:
    """Microseconds for the mask multiply alone, by mask dtype, on fresh tensors shaped like the weights."""
    params = [torch.randn_like(masks.model.get_parameter(n)) for n in masks.names]
    bools = [masks.masks[n] for n in masks.names]
    u8s, floats = [m.view(torch.uint8) for m in bools], [m.to(p.dtype) for p, m in zip(params, bools)]
    fns = {"foreach bool": lambda: torch._foreach_mul_(params, bools),
           "foreach bool.view(uint8)": lambda: torch._foreach_mul_(params, u8s),
           "foreach float": lambda: torch._foreach_mul_(params, floats),
           "loop bool": lambda: [p.mul_(m) for p, m in zip(params, bools)]}
    return {k: _time_us(f, device) for k, f in fns.items()}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    return next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.processor() or "cpu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=0, help="timed steps per repetition; 0: enough for --target-s")
    p.add_argument("--target-s", type=float, default=0.5, help="seconds per variant per repetition when --steps=0")
    p.add_argument("--repeats", type=int, default=9, help="interleaved repetitions; cells are medians")
    p.add_argument("--models", nargs="+", default=["lenet", "cnn", "resnet20"], choices=list(SETTINGS),
                   help="resnet18 (torchvision) is opt-in on the CPU: seconds per step")
    p.add_argument("--sparsity", type=float, nargs="+", default=[0.8], help="fractions of prunable weights removed")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS[:4]), choices=VARIANTS[1:],
                   help="variants timed beside dense")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0: torch's default")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.variants = ["dense"] + [v for v in args.variants if v != "dense"]
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device_name(device)}, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats, load average {os.getloadavg()[0]:.2f} (want ~0)\n")
    shown = args.variants[1:]
    alone = "apply" in shown
    head = ("| model | sparsity | device | steps | dense ms | dense range | "
            + " | ".join(f"{v} ms | {v}/dense" for v in shown) + (" | apply() alone ms | % of dense step" * alone) + " |")
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    notes = []
    sparsities = args.sparsity
    for key, sparsity in ((k, s) for k in args.models for s in sparsities):
        args.sparsity = sparsity
        try:
            ms, steps, mem, ops = bench_model(key, args, device)
        except LotteryError as e:
            notes.append(f"{key}: skipped ({e})")
            continue
        cells = " | ".join(f"{ms[v]:.3f} | {ms[v] / ms['dense']:.3f}x" for v in shown)
        if alone:
            cells += f" | {ms['apply_alone']:.3f} | {100 * ms['apply_alone'] / ms['dense']:.2f}%"
        print(f"| {key} | {sparsity:g} | {device.type} | {steps} | {ms['dense']:.3f} | {ms['noise']:.1f}% | {cells} |",
              flush=True)
        notes.append(f"{key}: extra bytes per prunable weight: apply {mem['apply']:.1f}, prune {mem['prune']:.1f}; "
                     "mask multiply alone (us): " + ", ".join(f"{k} {v:.1f}" for k, v in ops.items()))
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
