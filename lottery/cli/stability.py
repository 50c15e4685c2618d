"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", Sections 2-3; for tickets, Section 4).

From the dense network at iteration k (times a level's IMP mask for a ticket), train two copies with
different data orders for the remaining T - k iterations and measure the test error along the straight
line between the two end points. The error barrier (highest error on the path minus the mean of the two
end errors) is ~0 when the network is *stable* at k: both copies end in one linearly connected minimum.

    runs/<name>/stability/seed_<s>/init.safetensors, rewind_step_<k>.safetensors   dense weights at step k
    runs/<name>/stability/seed_<s>/dense/                             the one dense run capturing them
    runs/<name>/stability/seed_<s>/level_<LL>/k_<k>/copy_{a,b}/        the two copies (resumable)
    runs/<name>/stability/seed_<s>/stability.{csv,json,png}
(the paths: lottery.core.layout.StabilityDir)
"""
from __future__ import annotations

import shutil

import torch

from lottery.cli.plan import plan
from lottery.core.errors import LotteryError
from lottery.core.files import (
    exclusive,
    is_writer,
    load_masks,
    load_tensors,
    read_json,
    save_tensors,
    write_csv,
    write_json,
)
from lottery.core.masks import MaskManager
from lottery.core.mode_connectivity import ErrorPath, alphas, error_barrier, error_path
from lottery.core.rewind import REWIND, TrainingPlan
from lottery.core.schema import ExperimentConfig
from lottery.report.plots import pyplot, save_figure
from lottery.training.dispatch import train_all
from lottery.training.spec import RunSpec

STABLE = 0.02  # a barrier under 2 error points counts as ~0, the paper's tolerance for "stable"


@torch.no_grad()
def test_error(model: torch.nn.Module, data) -> float:
    """1 - accuracy on the test split, in eval mode, batched on the model's device."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    correct, total = torch.zeros((), dtype=torch.long, device=device), 0
    for x, y in data.test_dataloader():
        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum()  # no host sync per batch
        total += len(y)
    model.train(was_training)
    return 1.0 - correct.item() / total


class Stability:
    """The instability analysis of one seed of an experiment, in `runs/<name>/stability/seed_<s>/`.

    data_seeds: the data-order seeds of copies a and b (default seed + 1, seed + 2); equal seeds give
    identical copies, a barrier of exactly 0 on the CPU.
    """

    def __init__(self, cfg: ExperimentConfig, data_seeds: tuple[int, int] | None = None, log=print):
        self.cfg, self.log = cfg, log if is_writer() else (lambda *_: None)
        p = plan(cfg, seeds=[cfg.seed], log_of=lambda seed: self.log)
        p.start()
        run, (self.runner,) = p.layout, p.runners
        self.files = run.stability(cfg.seed)
        self.dir = self.files.path
        self.data_seeds = tuple(data_seeds or (cfg.seed + 1, cfg.seed + 2))
        self.device = torch.device("cuda" if cfg.trainer.accelerator != "cpu" and torch.cuda.is_available() else "cpu")

    def _check(self, steps: list[int], levels: list[int], points: int) -> None:
        """Fail before any training on arguments that cannot work."""
        alphas(points)
        total = self.runner.total_steps
        if bad := [k for k in steps if not 0 <= k < total]:
            raise LotteryError(f"--steps {bad}: k must be in [0, {total}), the training length in steps; choose smaller k")
        if bad := [level for level in levels if level < 0]:
            raise LotteryError(f"--levels {bad}: levels are 0 (dense) or an IMP level >= 1")
        for level in (level for level in levels if level > 0):
            if not self.runner.files.level(level).mask.exists():
                raise LotteryError(f"level {level} has no IMP mask in {self.runner.files.path}: run `lottery run --config <this config> "
                                   f"prune.levels={level}` (same name and seed) first, then this command again")
        seeds_file = self.files.data_seeds  # finished copies are reused: they must be of these seeds
        if seeds_file.exists() and tuple(read_json(seeds_file)) != self.data_seeds:
            raise LotteryError(f"{self.dir} holds copies trained with data seeds {read_json(seeds_file)}, not "
                               f"{list(self.data_seeds)}; delete that folder or use another name=...")
        write_json(seeds_file, list(self.data_seeds))

    def starting_points(self, steps: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """The dense network at each step k (Section 3), all captured in one dense training."""
        paths = {k: self.files.rewind(k) for k in steps}
        model = self.runner.models.fresh(self.cfg.seed)  # the same initialisation as IMP's level 0
        if 0 in paths and not paths[0].exists():
            save_tensors(paths[0], model.state_dict())  # step 0 is before the first batch: no training needed
        if missing := {k: p for k, p in paths.items() if not p.exists()}:
            self._train_dense(model, missing)
        return {k: load_tensors(p) for k, p in paths.items()}

    def _train_dense(self, model: torch.nn.Module, capture: dict) -> None:
        out, planned = self.files.dense, self.files.dense_plan
        # An interrupted run resumes from its last epoch checkpoint: the k's it was started with that are still
        # missing lie after it (earlier ones were saved when reached). A finished run, or a k it was not
        # started with (maybe before that checkpoint), has to train again from step 0: same seed, same weights.
        if out.done or not planned.exists() or not set(capture) <= set(read_json(planned)):
            shutil.rmtree(out.path, ignore_errors=True)
            write_json(planned, sorted(capture))
        self.runner.train(RunSpec("dense (capturing k)", model, self.runner.models.masks_for(model),
                                  self.runner.rewinding.dense_plan, self.runner.data, self.cfg.seed, out, capture,
                                  penalty=self.runner.penalty))

    def _start(self, level: int, start: dict) -> tuple[torch.nn.Module, MaskManager]:
        """The network at step k; for level L > 0, times level L's IMP mask (Section 4)."""
        model = self.runner.models.fresh(self.cfg.seed)
        model.load_state_dict(start)
        masks = self.runner.models.masks_for(model)
        if level > 0:
            masks.load_state_dict(load_masks(self.runner.files.level(level).mask))
            masks.apply()
        return model, masks

    def copies(self, level: int, k: int, start: dict) -> list[RunSpec]:
        """Copies a and b of the network at step k (times level L's mask), on different data orders."""
        plan = TrainingPlan(weights=REWIND, start_step=k, steps=self.runner.total_steps - k)  # the schedule goes on from k
        # The data seed sets the order of the examples; it also seeds the training's per-epoch RNG.
        return [RunSpec(f"level {level} k={k} copy {name}", *self._start(level, start), plan, self.runner.data.with_seed(seed),
                        seed, self.files.copy(level, k, name), penalty=self.runner.penalty)
                for name, seed in zip("ab", self.data_seeds)]

    def path(self, level: int, start: dict, a: RunSpec, b: RunSpec, points: int) -> ErrorPath:
        """Test error along the line between the trained copies a and b."""
        model = self._start(level, start)[0].to(self.device)
        test = self.runner.data  # the test split does not depend on the seed
        return error_path(model, load_tensors(a.out.final), load_tensors(b.out.final), lambda m: test_error(m, test), points)

    def run(self, steps: list[int], levels: list[int], points: int = 30) -> list[dict]:
        """Every (level, k): train its pair of copies (or reuse them), evaluate the path, write the results."""
        steps, levels = sorted(set(steps)), sorted(set(levels))
        with exclusive(self.files.lock, f"the stability analysis in {self.dir}"):
            self._check(steps, levels, points)
            starts = self.starting_points(steps)
            cells = [(level, k) for level in levels for k in steps]
            specs = [spec for level, k in cells for spec in self.copies(level, k, starts[k])]
            # All copies are independent: with trainer.lanes they train as lanes (those of one k share every step).
            metrics = train_all(specs, self.cfg.trainer, self.runner.optim, self.runner.tracking, self.log)
            rows, paths = [], {}
            for i, (level, k) in enumerate(cells):
                paths[level, k] = self.path(level, starts[k], specs[2 * i], specs[2 * i + 1], points)
                rows.append(_row(level, k, metrics[2 * i]["density"], paths[level, k]))
                self.log(f"level {level:2d}  k={k:<6d} density {rows[-1]['density']:7.2%}  error barrier "
                         f"{100 * rows[-1]['barrier']:5.2f} points  (end errors {rows[-1]['error_a']:.2%}, "
                         f"{rows[-1]['error_b']:.2%}; max {rows[-1]['max_error']:.2%})")
            self._write(rows, paths)
        return rows

    def _write(self, rows: list[dict], paths: dict) -> None:
        write_csv(self.files.results("csv"), rows)
        write_json(self.files.results("json"), {"data_seeds": list(self.data_seeds), "rows": rows, "curves": [  # "curves": the key of files written so far
            {"level": level, "k": k, "alpha": [a for a, _ in c], "error": [e for _, e in c]} for (level, k), c in paths.items()]})
        _plot(rows, paths, self.files.results("png"), f"{self.cfg.name}: instability analysis (seed {self.cfg.seed})")


def _row(level: int, k: int, density: float, path: ErrorPath) -> dict:
    errors = [e for _, e in path]
    return {"level": level, "k": k, "density": density, "barrier": error_barrier(path),
            "error_a": errors[0], "error_b": errors[-1], "max_error": max(errors)}


def verdict(rows: list[dict]) -> str:
    """One line: per level, the first k from which the network is stable, and the largest barrier."""
    parts = []
    for level in sorted({r["level"] for r in rows}):
        mine = [r for r in rows if r["level"] == level]
        # Stable from k on: every tested k' >= k has a barrier under the tolerance.
        stable = [r["k"] for i, r in enumerate(mine) if all(s["barrier"] < STABLE for s in mine[i:])]
        worst = max(mine, key=lambda r: r["barrier"])
        parts.append(f"level {level}: " + (f"stable from k={stable[0]}" if stable else "not stable at any k tested")
                     + f" (largest barrier {100 * worst['barrier']:.2f} points at k={worst['k']})")
    return f"barrier < {100 * STABLE:g} points counts as stable; " + "; ".join(parts)


def _plot(rows: list[dict], paths: dict, out, title: str) -> None:
    """Left: test error along each path; right: barrier vs k (symlog x, so that k = 0 shows)."""
    plt = pyplot()
    fig, (path_ax, barrier_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    ks, levels = sorted({k for _, k in paths}), sorted({level for level, _ in paths})
    colors = plt.get_cmap("viridis")
    for (level, k), path in paths.items():  # colour: k; line style: level
        path_ax.plot([a for a, _ in path], [100 * e for _, e in path], ("-", "--", ":", "-.")[levels.index(level) % 4],
                     color=colors(ks.index(k) / max(1, len(ks) - 1)), label=f"level {level}, k={k}")
    for level in levels:
        mine = [r for r in rows if r["level"] == level]
        barrier_ax.plot([r["k"] for r in mine], [100 * r["barrier"] for r in mine], "o-",
                        label=f"level {level} ({100 * mine[0]['density']:.1f}% of weights)")
    # symlog: logarithmic for large k, linear near 0 so that k = 0 has a place on the axis.
    barrier_ax.set_xscale("symlog", linthresh=max(1, min((k for k in ks if k > 0), default=1)))
    barrier_ax.set_xticks(ks, [str(k) for k in ks])
    barrier_ax.minorticks_off()
    barrier_ax.axhline(100 * STABLE, color="gray", linestyle=":", label="stable below")
    path_ax.set(xlabel="interpolation α (copy a → copy b)", ylabel="test error (%)", title="error along the linear path")
    barrier_ax.set(xlabel="rewind iteration k", ylabel="error barrier (points)", title="instability vs k")
    for ax in (path_ax, barrier_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, out)
