"""The 2:4 masks SR-STE ends its training with, through torch's semi-structured sparse kernels (CUDA, sm80+): each
layer it pruned holds at most 2 nonzeros in every 4 consecutive input weights (`lottery.export.sparse.is_n_m`), and
`torch.sparse.to_sparse_semi_structured` takes it and gives the dense layer's outputs.

A short SR-STE 2:4 training of LeNet-1200-400 on the embedded digits on the GPU (one level, five epochs), or the
srste branch of a finished run folder; each pruned weight in fp16, zero-padded to the kernels' tile (64 x 64: a zero
group keeps the pattern), compressed, and multiplied with a batch of 64 inputs against the dense product.

    .venv/bin/python experiments/check_nm_gpu.py [RUN_DIR]          # part of experiments/gpu_check.sh, < 1 min
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.cli.config import load_config  # noqa: E402
from lottery.cli.experiment import run  # noqa: E402
from lottery.core.files import load_tensors, read_json  # noqa: E402
from lottery.core.layout import RunLayout  # noqa: E402
from lottery.export.sparse import is_n_m  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "configs" / "strong_tickets.yaml"


def _padded(weight: torch.Tensor, tile: int = 64) -> torch.Tensor:
    rows, cols = weight.shape
    return F.pad(weight, (0, -cols % tile, 0, -rows % tile))


def check(run_dir: Path) -> None:
    from torch.sparse import to_sparse_semi_structured

    branch = RunLayout(run_dir).seed(0).level(1).branch("srste")
    final, density = load_tensors(branch.final), read_json(branch.metrics)["target_density"]
    print("| layer | shape | density | 2:4 | max |sparse - dense| (fp16) |\n|---|---|---:|---|---:|")
    for name, d in density.items():
        if d >= 1.0:
            continue
        weight = final[name]
        assert is_n_m(weight, 2, 4), f"{name}: not 2:4"
        dense = _padded(weight).half().cuda()
        sparse = to_sparse_semi_structured(dense)
        x = torch.randn(64, dense.shape[1], device="cuda", dtype=torch.half)
        expected, got = F.linear(x, dense), F.linear(x, sparse)
        torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2)
        print(f"| {name} | {tuple(weight.shape)} | {d:.2f} | yes | {float((got - expected).abs().max()):.2e} |")
    print(f"the 2:4 masks of {branch.path} run on torch's semi-structured kernels ({torch.cuda.get_device_name()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="a finished run with the srste branch (default: train one now)")
    args = ap.parse_args()
    assert torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0), "needs a CUDA GPU, sm80+"
    if args.run_dir:
        check(Path(args.run_dir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(CONFIG, [f"runs_dir={tmp}", "name=nm_gpu", "seeds=[0]", "model.name=lenet_1200_400",
                                   "branches=[srste]", "prune.levels=1", "train.epochs=5", "trainer.accelerator=gpu",
                                   "trainer.progress=false"])
        check(run(cfg, log=lambda *_: None))


if __name__ == "__main__":
    main()
