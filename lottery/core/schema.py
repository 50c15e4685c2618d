"""The configuration schema: every key of an experiment, typed, with its default and unit, in one place.

Each section is a dataclass, the only interface between the parts that read it; defaults reproduce the LeNet
setting of Frankle & Carbin (2019) on the embedded digits dataset. A method's own options are not here: each
method's record declares them (lottery.core.methods), read from methods.<name>.*. Reading a configuration (YAML
and `key=value` overrides) is the command line's (lottery.cli.config); checking it, the plan's (lottery.cli.plan).

    ExperimentConfig   name, seeds, branches, ... and the sections:
    model  data  train (train.optim: OptimConfig)  prune  rewind  sparse  trainer  methods
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Collection


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
class OptimConfig:
    """The optimizer of a training and its learning rate at every step (train.optim.*).

    The config gives milestones in steps and epochs (train.milestone_epochs); the trainer reads the copy with
    every milestone in steps (`TrainConfig.resolve`).
    """

    optimizer: str = "adam"  # a name in OPTIMIZERS: sgd | adam | adamw
    lr: float = 1.2e-3  # peak learning rate
    momentum: float = 0.0  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many steps
    schedule: str = "step"  # after warm-up: step (x gamma at each milestone) | linear (decay to 0 at decay_steps, BERT's)
    decay_steps: int | None = None  # linear: the step where lr reaches 0; None: the training length T
    milestone_steps: list[int] = field(default_factory=list)  # steps at which lr *= gamma
    gamma: float = 0.1  # step-decay factor
    finetune_lr: float | None = None  # constant lr of the `finetune` rewind policy; None: the schedule's final lr

    def lr_at(self, step: int) -> float:
        """The learning rate of schedule step `step` (warm-up times step or linear decay)."""
        return self.lr * lr_factor(step, self)

    @property
    def final_lr(self) -> float:
        """The learning rate at the end of the schedule (linear: of its last step, before it reaches 0)."""
        if self.schedule == "linear":
            return self.lr_at(max(self.decay_steps or 1, 1) - 1)
        return self.lr * self.gamma ** len(self.milestone_steps)

    @property
    def finetuning_lr(self) -> float:
        """The constant learning rate of fine-tuning: `finetune_lr`, else the schedule's final one (Renda et al. 2020)."""
        return self.finetune_lr if self.finetune_lr is not None else self.final_lr


def lr_factor(step: int, optim: OptimConfig) -> float:
    """Multiplier of optim.lr at schedule step `step`: warm-up, then step decay, or linear decay to 0 at
    `decay_steps` (the schedule of BERT fine-tuning, Devlin et al. 2019; `get_linear_schedule_with_warmup`)."""
    warm = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
    if optim.schedule == "linear":
        if step < optim.warmup_steps:
            return warm
        end = optim.decay_steps if optim.decay_steps is not None else step + 1
        return max(0.0, (end - step) / max(1, end - optim.warmup_steps))
    return warm * optim.gamma ** sum(step >= m for m in optim.milestone_steps)


SCHEDULES = ("step", "linear")  # train.optim.schedule


@dataclass
class TrainConfig:
    steps: int | None = None  # training length in optimizer steps; or give epochs
    epochs: int | None = 40  # training length in epochs (ignored when steps is set)
    optim: OptimConfig = field(default_factory=OptimConfig)
    milestone_epochs: list[int] = field(default_factory=list)  # step decay at these epochs (adds to optim.milestone_steps)

    def total_steps(self, steps_per_epoch: int) -> int:
        """The training length T of every level, in optimizer steps."""
        return self.steps or self.epochs * steps_per_epoch

    def resolve(self, steps_per_epoch: int) -> OptimConfig:
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
    """What every sparse-training branch shares (lottery.core.methods.SparseTraining): the distribution and the
    schedule of mask updates. A method's own options are under methods.<name>."""

    distribution: str = "erk"  # uniform | er | erk: how a level's density is shared among layers (Evci et al. 2020)
    dense_layers: list[str] = field(default_factory=list)  # kept dense by the distribution: patterns, "first", "output"
    interval_steps: int = 100  # ΔT, steps between mask updates (Evci et al. 2020; Zhu & Gupta 2017)
    start_step: int = 0  # the first update
    end_step: int | None = None  # the last update; null: 75% of the training (Evci et al. 2020)
    drop_fraction: float = 0.3  # α: share of active weights SET and RigL replace at the first update, cosine to 0

    def last_update(self, total_steps: int) -> int:
        """The end step of a training of `total_steps` steps: end_step, or 75% of the training (Evci et al. 2020)."""
        return self.end_step if self.end_step is not None else int(0.75 * total_steps)


@dataclass
class TrainerConfig:
    """Where and how the one Lightning Trainer runs (lottery.training.trainer)."""

    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "32-true"  # e.g. bf16-mixed
    compile: bool = False  # torch.compile the model's forward (masks are applied outside the graph)
    gradient_clip_val: float | None = None  # clip each run's gradient norm (pruned weights' left out) to this; None: off
    progress: bool | str = True  # true: a status line rewritten per epoch on a terminal; log: one line per epoch anywhere
    lanes: int | str = 1  # runs of a level trained together as lanes of one network: 1 (one by one), N (at most N), auto
    logger: str = "csv"  # csv | tensorboard | wandb | mlflow | none: where each level's metrics also go (lottery.training.tracking)


@dataclass
class ExperimentConfig:
    name: str = "demo"  # folder under runs_dir
    runs_dir: str = "runs"
    seed: int = 0  # model initialisation and data order
    seeds: list[int] = field(default_factory=list)  # several seeds in one process, levels in lockstep; [] = [seed]
    branches: list[str] = field(default_factory=lambda: ["reinit"])  # trained at every level (`lottery list branches`)
    matching_tolerance: float = 0.5  # accuracy points (percent) a ticket may lose and still "match"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    rewind: RewindConfig = field(default_factory=RewindConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)  # the sparse-training branches (lottery.sparsity)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    methods: dict = field(default_factory=dict)  # a method's own options, methods.<name>.<option> (`lottery list`)

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
