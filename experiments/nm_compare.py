"""SR-STE N:M against one-shot N:M magnitude pruning of the dense network, on a finished run with the srste branch.

For each seed of RUN_DIR (e.g. runs/strong_tickets after `make strong-tickets`), test accuracy of
  dense           level 0
  SR-STE          the srste branch (N:M trained from the dense initialisation, Zhou et al. 2021)
  one-shot        level 0's trained weights pruned to the same N:M pattern in the same layers, by magnitude, as is
  + fine-tuned    those, trained again for the level's steps from the pruned trained weights (NVIDIA ASP's recipe,
                  Mishra et al. 2021)
  + rewound       the same mask on the initial weights, trained for the level's steps (a one-shot N:M lottery ticket)
The retrainings use lottery's own training (lottery.training.single.train), under the run's optimizer and data.
Prints mean ± std over the seeds.

    .venv/bin/python experiments/nm_compare.py runs/strong_tickets        # ~1 min per seed on 2 CPU cores
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery.cli.tickets import load_run_config  # noqa: E402
from lottery.core.files import load_tensors, read_json  # noqa: E402
from lottery.core.layout import RunLayout, TrainingDir  # noqa: E402
from lottery.core.masks import MaskManager  # noqa: E402
from lottery.core.pruning import _top_n_of_m  # noqa: E402
from lottery.core.rewind import TRAINED, TrainingPlan  # noqa: E402
from lottery.imp.runner import SeedRunner, datamodule  # noqa: E402
from lottery.training.single import train  # noqa: E402
from lottery.training.spec import RunSpec  # noqa: E402


@torch.no_grad()
def _test_acc(model, data) -> float:
    model.eval()
    correct = total = 0
    for x, y in data.test_dataloader():
        correct += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return correct / total


def _seed(run: RunLayout, cfg, seed: int, work: Path) -> dict[str, float]:
    data = datamodule(cfg.data, seed, cfg.model)
    data.setup()
    runner = SeedRunner(cfg, run.seed(seed), data, log=lambda *_: None)
    dense, srste = run.seed(seed).level(0), run.seed(seed).level(1).branch("srste")
    options = cfg.methods["srste"]
    pruned = [n for n, d in read_json(srste.metrics)["target_density"].items() if d < 1.0]
    model = runner.models.with_weights(dense.final)
    nm = {n: _top_n_of_m(model.get_parameter(n).detach().abs(), options["n"], options["m"]) for n in pruned}
    out = {"dense": read_json(dense.metrics)["test_acc"], "SR-STE": read_json(srste.metrics)["test_acc"]}
    for label, weights, plan in (("one-shot, as is", dense.final, None),
                                 ("one-shot + fine-tuned", dense.final, TrainingPlan(TRAINED, 0, runner.total_steps)),
                                 ("one-shot + rewound", run.seed(seed).rewind(0), TrainingPlan.from_start(runner.total_steps))):
        model = runner.models.with_weights(weights)
        masks = MaskManager(model, include=pruned)
        masks.set_masks(nm)
        if plan is not None:
            spec = RunSpec(label, model, masks, plan, data, seed, TrainingDir(work / f"seed_{seed}" / label.replace(" ", "_")))
            out[label] = train(spec, cfg.trainer, runner.optim)["test_acc"]
        else:
            out[label] = _test_acc(model, data)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    args = ap.parse_args()
    run = RunLayout(Path(args.run_dir))
    cfg = load_run_config(run.path)
    options = cfg.methods["srste"]
    results = []
    with tempfile.TemporaryDirectory() as work:
        for seed in run.seeds():
            results.append(_seed(run, cfg, seed, Path(work)))
            print(f"seed {seed}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in results[-1].items()), flush=True)
    print(f"\n{options['n']}:{options['m']} in {cfg.model.name} on {cfg.data.name}, test accuracy (%), "
          f"mean ± std over seeds {run.seeds()}:\n")
    print("| " + " | ".join(results[0]) + " |\n|" + "---:|" * len(results[0]))
    cells = []
    for key in results[0]:
        values = [100 * r[key] for r in results]
        cells.append(f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}")
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
