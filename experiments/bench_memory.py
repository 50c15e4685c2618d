"""What masks and tickets cost in memory and on disk.

  training: bytes per prunable weight kept beside the weights by MaskManager (a bool mask, and a
            copy in the parameters' dtype that the fused multiply uses) and by
            torch.nn.utils.prune (a float mask plus the `weight_orig` copy of the weight);
  on disk:  the size of a ticket (bit-packed masks + rewind weights + final weights, safetensors)
            against `torch.save` of the same masks (bool) and weights.

    .venv/bin/python experiments/bench_memory.py        # a few seconds
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery import MaskManager, Ticket, save_ticket  # noqa: E402
from lottery.models import create_model  # noqa: E402

MODELS = {"lenet_300_100": (1, 28, 28), "resnet20": (3, 32, 32), "vgg16": (3, 32, 32)}


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def training_overhead(name: str, shape) -> tuple[int, float, float]:
    model = create_model(name, 10, shape)
    masks = MaskManager(model)
    masks.prune(0.8)
    prunable = sum(m.numel() for m in masks.masks.values())
    ours = (_bytes(masks.masks.values()) + _bytes(masks._masks)) / prunable  # bool masks + the multiply's copies
    hooked = create_model(name, 10, shape)
    for n, m in masks.masks.items():
        module = hooked.get_submodule(n.rsplit(".", 1)[0])
        prune.custom_from_mask(module, "weight", m)
    extra = [b for n, b in hooked.named_buffers() if n.endswith("weight_mask")]
    extra += [p for n, p in hooked.named_parameters() if n.endswith("weight_orig")]
    return prunable, ours, _bytes(extra) / prunable


def disk(name: str, shape, folder: Path) -> tuple[int, int]:
    model = create_model(name, 10, shape)
    masks = MaskManager(model)
    masks.prune(0.8)
    rewind = {k: v.clone() for k, v in model.state_dict().items()}
    final = {k: v + 0.01 if v.is_floating_point() else v.clone() for k, v in rewind.items()}  # "trained"
    ticket = Ticket(dict(masks.masks), rewind, final, {"architecture": name})
    ours = save_ticket(ticket, folder / f"{name}.safetensors").stat().st_size
    torch.save({"masks": masks.masks, "rewind": rewind, "final": final}, folder / f"{name}.pt")
    return ours, (folder / f"{name}.pt").stat().st_size


def main() -> None:
    print("| model | prunable weights | mask bytes/weight, lottery | extra bytes/weight, nn.utils.prune | ticket file | torch.save | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in MODELS.items():
            n, ours, theirs = training_overhead(name, shape)
            ticket, pickle = disk(name, shape, Path(tmp))
            print(f"| {name} | {n:,} | {ours:.2f} | {theirs:.2f} | {ticket / 2**20:.2f} MiB | {pickle / 2**20:.2f} MiB "
                  f"| {ticket / pickle:.3f} |")


if __name__ == "__main__":
    main()
