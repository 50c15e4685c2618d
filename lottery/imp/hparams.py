"""Typed hyperparameters of an experiment: the only interface between its parts.

Defaults reproduce the LeNet setting of Frankle & Carbin (2019) on the embedded digits dataset.
Loading them from YAML and `key=value` overrides, and checking them, is `lottery.cli.config`'s job.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Collection

from lottery.training.optimizers import Optim
from lottery.training.settings import TrainerConfig


@dataclass
class ModelConfig:
    name: str = "lenet_300_100"  # a registered model, "torchvision:<name>", or "hf:<hub name | folder | model type>"
    options: dict = field(default_factory=dict)  # hf: models only: weights (pretrained | random), configuration fields


@dataclass
class DataConfig:
    name: str = "digits"  # a registered dataset
    batch_size: int = 60  # examples per optimizer step, over all processes (each takes batch_size / world size)
    val_size: int = 300  # validation examples taken from the training set
    split_seed: int = 0  # fixes the validation split, independent of the run seed
    options: dict = field(default_factory=dict)  # dataset-specific options (root, download, ...)


@dataclass
class TrainConfig:
    steps: int | None = None  # training length in optimizer steps; or give epochs
    epochs: int | None = 40  # training length in epochs (ignored when steps is set)
    optim: Optim = field(default_factory=Optim)
    milestone_epochs: list[int] = field(default_factory=list)  # step decay at these epochs (adds to optim.milestone_steps)

    def total_steps(self, steps_per_epoch: int) -> int:
        """The training length T of every level, in optimizer steps."""
        return self.steps or self.epochs * steps_per_epoch

    def resolve(self, steps_per_epoch: int) -> Optim:
        """The optimizer and schedule with every milestone in steps: what the trainer reads."""
        milestones = sorted(self.optim.milestone_steps + [e * steps_per_epoch for e in self.milestone_epochs])
        if self.optim.schedule == "linear" and self.optim.decay_steps is None:  # decays to 0 at the end of training
            return replace(self.optim, milestone_steps=milestones, decay_steps=self.total_steps(steps_per_epoch))
        return replace(self.optim, milestone_steps=milestones)


@dataclass
class PruneConfig:
    strategy: str = "layer_magnitude"  # a registered pruning strategy
    fraction: float = 0.2  # share of the remaining weights removed per level
    levels: int = 12  # pruned levels after the dense level 0
    output_rate: float = 0.5  # multiplier of fraction for the output layer (Frankle & Carbin 2019)
    rates: dict = field(default_factory=dict)  # other per-parameter multipliers, {name pattern: rate}
    include: list[str] | None = None  # prunable parameter patterns; None: all Conv/Linear weights
    preset: str | None = None  # prunable set of a known architecture instead of include: bert | vit (lottery.models.presets)
    exclude: list[str] = field(default_factory=list)  # patterns kept dense
    allow_empty_layers: bool = False  # allow fraction x rate >= 1, which removes a whole tensor in one level
    distribution: str | None = None  # uniform | er | erk: each level's density shared out by it (rates then unused)


@dataclass
class RewindConfig:
    policy: str = "init"  # init | step | lr | finetune
    step: int = 0  # the rewind iteration k


@dataclass
class SparseConfig:
    """The branches that find a sparse network within one training (gmp, set, rigl, static) and early-bird tickets."""

    distribution: str = "erk"  # uniform | er | erk: how a level's density is shared among layers (Evci et al. 2020)
    dense_layers: list[str] = field(default_factory=list)  # kept dense by the distribution: patterns, "first", "output"
    interval_steps: int = 100  # ΔT, steps between mask updates (Evci et al. 2020; Zhu & Gupta 2017)
    start_step: int = 0  # the first update
    end_step: int | None = None  # the last update; null: 75% of the training (Evci et al. 2020)
    drop_fraction: float = 0.3  # α: share of active weights SET and RigL replace at the first update, cosine to 0
    earlybird_window: int = 5  # masks compared at each epoch's end (You et al. 2020)
    earlybird_threshold: float = 0.1  # normalised Hamming distance under which the early-bird ticket is drawn


@dataclass
class LauncherConfig:
    kind: str = "local"  # local: this machine (submitit's LocalExecutor) | slurm: one SLURM job array (submitit)
    parallel: int = 1  # jobs running at once: local processes, or the array's limit (sbatch --array=...%N)
    time_min: int = 240  # wall-clock limit per job, minutes; a job stopped by it is requeued and resumes
    partition: str | None = None  # SLURM partition
    gpus: int = 0  # GPUs per job (sbatch --gpus-per-node); set trainer.devices to use more than one
    cpus: int | None = None  # CPUs per task (sbatch --cpus-per-task)
    mem_gb: float | None = None  # memory per job, GB (sbatch --mem)
    setup: list[str] = field(default_factory=list)  # shell lines run before each SLURM job, e.g. `module load cuda`
    slurm: dict = field(default_factory=dict)  # further sbatch options, e.g. {account: abc, qos: high}


@dataclass
class ExperimentConfig:
    name: str = "demo"  # folder under runs_dir
    runs_dir: str = "runs"
    seed: int = 0  # model initialisation and data order
    seeds: list[int] = field(default_factory=list)  # several seeds in one process, levels in lockstep; [] = [seed]
    branches: list[str] = field(default_factory=lambda: ["reinit"])  # trained at every level (lottery.imp.branches)
    matching_tolerance: float = 0.5  # accuracy points (percent) a ticket may lose and still "match"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    rewind: RewindConfig = field(default_factory=RewindConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)  # the sparse-training branches (lottery.sparsity)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)  # how `lottery sweep` submits jobs

    def flat(self, skip: Collection[str] = ()) -> dict[str, object]:
        """Every key by its dotted name (`train.optim.lr`) -> value; an empty dict is a value. The keys in `skip`,
        and the keys below them, are left out."""
        return _flat(asdict(self), "", skip)


def _flat(d: dict, prefix: str, skip: Collection[str]) -> dict[str, object]:
    out = {}
    for k, v in d.items():
        key = prefix + k
        if key not in skip:
            out.update(_flat(v, key + ".", skip) if isinstance(v, dict) and v else {key: v})
    return out
