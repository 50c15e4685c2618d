"""Where every file of an experiment lives: the one module that spells the paths of a run folder
(in the spirit of OpenLTH's `foundations/paths.py`).

    runs/<experiment>/config.yaml                    the resolved config (checked on every start)
    runs/<experiment>/curve.csv, curve_seeds.csv, curve.png, report.md, ticket.safetensors (<watched method>.png)
    runs/<experiment>/seed_<s>/init.safetensors      the rewind point of k = 0: the initial weights
    runs/<experiment>/seed_<s>/rewind_step_<k>.safetensors   the rewind point of iteration k > 0
    runs/<experiment>/seed_<s>/<method>.safetensors          a watcher's weights (earlybird: when its ticket was drawn)
    runs/<experiment>/seed_<s>/<method>_level_NN.safetensors  those of its detector for level NN (earlybird_channels)
    runs/<experiment>/seed_<s>/level_<NN>/           a level: mask.safetensors and its training's files
    runs/<experiment>/seed_<s>/level_<NN>/branch_<name>/     a branch trained off that level
    runs/<experiment>/stability/seed_<s>/            the instability analysis of that seed

A training's folder holds final.safetensors (the trained weights), mask.safetensors (its masks), metrics.json
(written last: its presence marks the training done) and checkpoints/last.ckpt while it runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_SEED, _LEVEL, _BRANCH = "seed_", "level_", "branch_"
_FINAL, _METRICS, _MASK, _CHECKPOINT, _INIT, _REWIND = (
    "final.safetensors", "metrics.json", "mask.safetensors", "last.ckpt", "init.safetensors", "rewind_step_")


def _numbered(folder: Path, prefix: str) -> list[int]:
    """The numbers of the subfolders named <prefix><number>, sorted."""
    if not folder.is_dir():
        return []
    found = (p.name.removeprefix(prefix) for p in folder.iterdir() if p.is_dir() and p.name.startswith(prefix))
    return sorted(int(n) for n in found if n.isdigit())


@dataclass(frozen=True)
class TrainingDir:
    """The folder of one training (a level's, a branch's, a stability copy's)."""

    path: Path

    @property
    def final(self) -> Path:
        return self.path / _FINAL

    @property
    def metrics(self) -> Path:
        return self.path / _METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        """The resume checkpoint, overwritten at every epoch end while the training runs."""
        return self.checkpoints / _CHECKPOINT

    @property
    def mask(self) -> Path:
        """The masks it trains with: a level's, written before it trains; a branch's, as they end."""
        return self.path / _MASK

    @property
    def done(self) -> bool:
        return self.metrics.exists()

    def lanes_checkpoint(self, group: str) -> Path:
        """The resume checkpoint of a lane group this training leads (lottery.training.lane_group)."""
        return self.checkpoints / f"lanes_{group}.ckpt"


@dataclass(frozen=True)
class LevelDir(TrainingDir):
    """An IMP level: its mask, the ticket's training, and the branches trained off it."""

    def branch(self, name: str) -> TrainingDir:
        return TrainingDir(self.path / f"{_BRANCH}{name}")

    def branches(self) -> list[str]:
        """Names of the branches that have a folder here, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(p.name.removeprefix(_BRANCH) for p in self.path.iterdir() if p.is_dir() and p.name.startswith(_BRANCH))


@dataclass(frozen=True)
class _RewindFolder:
    """A folder that one process at a time works in (it holds `lock`) and that keeps rewind points."""

    path: Path

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    def rewind(self, step: int) -> Path:
        """The weights at iteration `step` (0: the initial weights)."""
        return self.path / (_INIT if step == 0 else f"{_REWIND}{step}.safetensors")


@dataclass(frozen=True)
class SeedDir(_RewindFolder):
    """One seed's IMP run: its rewind points and its levels."""

    seed: int

    def level(self, level: int) -> LevelDir:
        return LevelDir(self.path / f"{_LEVEL}{level:02d}")

    def watch_file(self, method: str, level: int | None = None) -> Path:
        """The dense network's weights a method's watcher kept: earlybird.safetensors, at the epoch the early-bird
        ticket was drawn (lottery.sparsity.earlybird); with `level`, those its detector for that level kept:
        earlybird_channels_level_03.safetensors (lottery.structured.earlybird)."""
        return self.path / (f"{method}.safetensors" if level is None else f"{method}_{_LEVEL}{level:02d}.safetensors")

    def levels(self) -> list[int]:
        """Levels that have a folder, sorted (finished or not: see `level(l).done`)."""
        return _numbered(self.path, _LEVEL)


@dataclass(frozen=True)
class StabilityDir(_RewindFolder):
    """The instability analysis of one seed (lottery.cli.stability); its rewind points are the dense network's at
    each iteration k, captured by the `dense` training."""

    @property
    def data_seeds(self) -> Path:
        return self.path / "data_seeds.json"

    @property
    def dense(self) -> TrainingDir:
        return TrainingDir(self.path / "dense")

    @property
    def dense_plan(self) -> Path:
        """The steps the dense training was started to capture."""
        return self.dense.path / "capture.json"

    def copy(self, level: int, step: int, name: str) -> TrainingDir:
        return TrainingDir(self.path / f"{_LEVEL}{level:02d}" / f"k_{step}" / f"copy_{name}")

    def results(self, suffix: str) -> Path:
        """stability.csv, .json, .png"""
        return self.path / f"stability.{suffix}"


@dataclass(frozen=True)
class RunLayout:
    """An experiment's folder, runs_dir/name."""

    path: Path

    @classmethod
    def of(cls, runs_dir: str | Path, name: str) -> "RunLayout":
        return cls(Path(runs_dir) / name)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def ticket_file(self) -> Path:
        """The winning ticket `lottery run` exports."""
        return self.path / "ticket.safetensors"

    def curve(self, suffix: str) -> Path:
        """curve.csv (per level, over seeds) and curve.png"""
        return self.path / f"curve.{suffix}"

    @property
    def curve_seeds(self) -> Path:
        return self.path / "curve_seeds.csv"

    def watch_plot(self, method: str) -> Path:
        """What a method's watcher recorded on the dense level of every seed: earlybird.png, the early-bird mask
        distance per epoch (lottery.report.plots.plot_watched)."""
        return self.path / f"{method}.png"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    def seed(self, seed: int) -> SeedDir:
        return SeedDir(self.path / f"{_SEED}{seed}", seed)

    def seeds(self) -> list[int]:
        """Seeds that have a folder, sorted."""
        return _numbered(self.path, _SEED)

    def stability(self, seed: int) -> StabilityDir:
        return StabilityDir(self.path / "stability" / f"{_SEED}{seed}")


def repair(path: Path) -> str:
    """What to delete so that running the same command again rebuilds the damaged run file `path`.

    Every file of a run is recomputed from the files before it: deleting a level's folder retrains that
    level (from the previous level's weights and mask), deleting a resume checkpoint restarts its level
    from the first epoch, deleting the initial weights rebuilds them from the seed. A file named here but
    not deleted with it would stop the rerun with a message about a missing file.
    """
    path, again = Path(path), "run the same `lottery run` command again"
    if path.name in (_FINAL, _METRICS, _MASK):
        return f"delete the folder {path.parent} and {again} to retrain it"
    if path.name == _CHECKPOINT:
        return f"delete {path} and {again}: that level restarts from its first epoch"
    if path.name == _INIT:
        return f"delete {path} and {again}: it is rebuilt from the seed"
    if path.name.startswith(_REWIND):
        return f"delete {path} and the folder {path.parent / f'{_LEVEL}00'}, and {again}: the dense level is retrained to capture it"
    return f"delete {path} and {again}"
