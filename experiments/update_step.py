"""Does it matter what SET's and RigL's update steps do with their gradient? The three choices of the reference code
(methods.<set|rigl>.update_step, lottery.sparsity.updaters.UPDATE_STEPS) on the embedded digits, over many seeds.

    skip   the update is one of the training's steps and applies no gradient (jaxpruner; lottery's default)
    apply  the step's gradient is applied, then the masks change (google-research/rigl's SET)
    extra  the update takes an iteration of its own, the training still every one of its steps (google-research/rigl's RigL)

The sparse demo's setting (LeNet-300-100, Adam 1.2e-3, 30 epochs of 19 steps, ERK, ΔT = 100, α = 0.3, updates ending
at 75%: five updates in 570 steps), at three densities (IMP levels of 50%: 50%, 25%, 12.5% of the weights), seeds
0..N-1 as lanes; one `lottery run` per choice (their IMP levels are the same). Prints test accuracy, mean ± std over
the seeds, and each choice against skip on the same seeds (mean ± std of the paired differences).

    .venv/bin/python experiments/update_step.py [--seeds 10] [--runs-dir runs/update_step]   # ~10 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.cli.config import load_config  # noqa: E402
from lottery.cli.experiment import run  # noqa: E402
from lottery.core.files import read_json  # noqa: E402
from lottery.core.layout import RunLayout  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "configs" / "sparse_demo.yaml"
CHOICES = ("skip", "apply", "extra")
METHODS = ("set", "rigl")


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * spread:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--runs-dir", default="runs/update_step")
    ap.add_argument("--levels", type=int, default=3)
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    acc: dict[tuple[str, str, int], list[float]] = {}
    densities: dict[int, float] = {}
    for choice in CHOICES:
        start = time.perf_counter()
        cfg = load_config(CONFIG, [f"runs_dir={args.runs_dir}", f"name={choice}", f"seeds={seeds}",
                                   f"branches=[{','.join(METHODS)}]", "prune.fraction=0.5", f"prune.levels={args.levels}",
                                   "trainer.lanes=auto", "trainer.progress=false",
                                   *(f"methods.{m}.update_step={choice}" for m in METHODS)])
        folder = RunLayout(run(cfg, log=lambda *_: None))
        print(f"{choice}: {time.perf_counter() - start:.0f} s", flush=True)
        for seed in seeds:
            for level in range(1, args.levels + 1):
                densities[level] = read_json(folder.seed(seed).level(level).metrics)["density"]
                for method in METHODS:
                    metrics = read_json(folder.seed(seed).level(level).branch(method).metrics)
                    acc.setdefault((method, choice, level), []).append(metrics["test_acc"])
    print(f"\ntest accuracy (%), mean ± std over {len(seeds)} seeds; vs skip: mean ± std of the paired differences\n")
    print("| method | % remaining (IMP level) | " + " | ".join(CHOICES) + " | apply − skip | extra − skip |")
    print("|---|---:|" + "---:|" * (len(CHOICES) + 2))
    for method in METHODS:
        for level in range(1, args.levels + 1):
            cells = [_mean_std(acc[method, c, level]) for c in CHOICES]
            diffs = [_mean_std([a - b for a, b in zip(acc[method, c, level], acc[method, "skip", level])])
                     for c in CHOICES[1:]]
            print(f"| {method} | {100 * densities[level]:.1f} | " + " | ".join(cells + diffs) + " |")


if __name__ == "__main__":
    main()
