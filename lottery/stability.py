"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", Sections 2-3).

From the network at iteration k of the dense training (times a level's mask for a ticket), train two
copies with different data orders and measure the test error along the straight line between the
two end points. The error barrier (highest error on the path minus the mean of the two end errors)
is ~0 when the network is *stable* at k: the copies end in one linearly connected minimum.

    runs/<name>/stability/rewind_points/step_<k>.safetensors   the dense run's weights at step k
    runs/<name>/stability/level_LL/k_<k>/copy_{a,b}/           the two trainings (resumable)
    runs/<name>/stability/stability.{csv,json,png}
"""
from __future__ import annotations


import torch

from lottery import experiment, io
from lottery.config import ExperimentConfig
from lottery.curve import save_figure, write_csv
from lottery.data import create_datamodule
from lottery.errors import LotteryError
from lottery.imp import IMP
from lottery.instability import error_barrier, error_curve
from lottery.rewind import LevelPlan
from lottery.trainer import train


@torch.no_grad()
def test_error(model: torch.nn.Module, data) -> float:
    """1 - accuracy on the test split, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for x, y in data.test_dataloader():
        correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
        total += len(y)
    model.train(was_training)
    return 1.0 - correct / total


class Stability:
    """One experiment's instability analysis, in `runs/<name>/stability/`."""

    def __init__(self, cfg: ExperimentConfig, data_seeds: tuple[int, int] | None = None, log=print):
        self.cfg, self.log = cfg, log
        self.run_dir = experiment.prepare(cfg)
        self.imp = IMP(cfg, cfg.seed, self.run_dir / f"seed_{cfg.seed}", log=log)
        self.out = self.run_dir / "stability"
        self.data_seeds = data_seeds or (cfg.seed + 1, cfg.seed + 2)

    def _data(self, seed: int):
        c = self.cfg.data
        return create_datamodule(c.name, batch_size=c.batch_size, val_size=c.val_size, seed=seed,
                                 split_seed=c.split_seed, **c.options)

    def starting_points(self, steps: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        """The dense network at each step k, from one dense training that captures them all."""
        total = self.imp.total_steps
        bad = [k for k in steps if not 0 <= k < total]
        if bad:
            raise LotteryError(f"--steps {bad} outside [0, {total}): k must lie inside the training ({total} steps)")
        paths = {k: self.out / "rewind_points" / f"step_{k}.safetensors" for k in steps}
        model = self.imp.build(self.cfg.seed)
        if not paths[steps[0]].parent.joinpath("step_0.safetensors").exists():
            io.save_tensors(self.out / "rewind_points" / "step_0.safetensors", model.state_dict())
        paths[0] = self.out / "rewind_points" / "step_0.safetensors"
        if any(not p.exists() for p in paths.values()):
            train(self.cfg, model, self.imp.masks_for(model), LevelPlan(True, 0, total, False), self.imp.data,
                  self.out / "dense", self.cfg.seed, "dense (capturing k)", capture={k: paths[k] for k in steps if k})
        return {k: io.load_tensors(paths[k]) for k in steps}

    def pair(self, level: int, k: int, start: dict[str, torch.Tensor]) -> float:
        """Train the two copies of (level, k); return the error barrier between them."""
        folder = self.out / f"level_{level:02d}" / f"k_{k}"
        finals = []
        for name, seed in zip("ab", self.data_seeds):
            model = self.imp.build(self.cfg.seed)
            model.load_state_dict(start)
            masks = self.imp.masks_for(model)
            if level > 0:
                masks.load_state_dict(io.load_masks(self.imp.level_dir(level) / "mask.safetensors"))
            plan = LevelPlan(True, k, self.imp.total_steps - k, False)
            train(self.cfg, model, masks, plan, self._data(seed), folder / f"copy_{name}", seed, f"level {level} k={k} copy {name}")
            finals.append(io.load_tensors(folder / f"copy_{name}" / "final.safetensors"))
        data = self._data(self.cfg.seed)
        self.curves[(level, k)] = error_curve(self.imp.build(self.cfg.seed), finals[0], finals[1],
                                              lambda m: test_error(m, data), self.points)
        return error_barrier(self.curves[(level, k)])

    def run(self, steps: list[int], levels: list[int], points: int = 30) -> list[dict]:
        self.points, self.curves = points, {}
        for level in levels:
            if level > 0 and not (self.imp.level_dir(level) / "mask.safetensors").exists():
                raise LotteryError(f"level {level} has no mask in {self.imp.dir}: run `lottery run --config ... "
                                   f"prune.levels={level}` for this experiment first")
        starts = self.starting_points(sorted(set(steps)))
        rows = []
        for level in levels:
            for k in sorted(set(steps)):
                barrier = self.pair(level, k, starts[k])
                errors = [e for _, e in self.curves[(level, k)]]
                rows.append({"level": level, "k": k, "barrier": barrier, "error_a": errors[0], "error_b": errors[-1],
                             "max_error": max(errors)})
                self.log(f"level {level:2d}  k={k:<6d} error barrier {barrier:+.4f}  (end errors {errors[0]:.4f}, {errors[-1]:.4f})")
        self._write(rows)
        return rows

    def _write(self, rows: list[dict]) -> None:
        write_csv(rows, self.out / "stability.csv")
        io.write_json(self.out / "stability.json", {"rows": rows, "curves": [
            {"level": level, "k": k, "alpha": [a for a, _ in c], "error": [e for _, e in c]} for (level, k), c in self.curves.items()]})
        self._plot(rows)

    def _plot(self, rows: list[dict]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (path_ax, barrier_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
        for (level, k), curve in self.curves.items():
            path_ax.plot([a for a, _ in curve], [100 * e for _, e in curve], label=f"level {level}, k={k}")
        for level in sorted({r["level"] for r in rows}):
            pts = [(r["k"], 100 * r["barrier"]) for r in rows if r["level"] == level]
            barrier_ax.plot(*zip(*pts), "o-", label=f"level {level}")
        barrier_ax.set_xscale("symlog", linthresh=max(1, min([r["k"] for r in rows if r["k"] > 0], default=1)))
        path_ax.set(xlabel="interpolation α (copy a → copy b)", ylabel="test error (%)", title="error along the linear path")
        barrier_ax.set(xlabel="rewind iteration k", ylabel="error barrier (points)", title="instability vs k")
        for ax in (path_ax, barrier_ax):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        save_figure(fig, self.out / "stability.png")
