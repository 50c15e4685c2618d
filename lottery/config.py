"""Typed experiment configuration: YAML files plus `key=value` command-line overrides.

OmegaConf checks every key and type against these dataclasses, so a misspelt key or a
wrong type is an error that names it. The defaults reproduce the LeNet setting of
Frankle & Carbin (2019) on the embedded digits dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lottery.errors import LotteryError
from lottery.schedule import OptimConfig


@dataclass
class ModelConfig:
    name: str = "lenet_300_100"  # a registered model, or "torchvision:<name>"


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
    optim: OptimConfig = field(default_factory=OptimConfig)
    milestone_epochs: list[int] = field(default_factory=list)  # step decay at these epochs (adds to optim.milestone_steps)


@dataclass
class PruneConfig:
    strategy: str = "layer_magnitude"  # a registered pruning strategy
    fraction: float = 0.2  # share of the remaining weights removed per level
    levels: int = 12  # pruned levels after the dense level 0
    output_rate: float = 0.5  # multiplier of fraction for the output layer (Frankle & Carbin 2019)
    rates: dict = field(default_factory=dict)  # other per-parameter multipliers, {name pattern: rate}
    include: list[str] | None = None  # prunable parameter patterns; None: all Conv/Linear weights
    exclude: list[str] = field(default_factory=list)  # patterns kept dense
    allow_empty_layers: bool = False  # allow fraction x rate >= 1, which removes a whole tensor in one level


@dataclass
class RewindConfig:
    policy: str = "init"  # init | step | lr | finetune
    step: int = 0  # the rewind iteration k


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "32-true"  # e.g. bf16-mixed
    compile: bool = False  # torch.compile the model's forward (masks are applied outside the graph)
    progress: bool | str = True  # true: a status line rewritten per epoch on a terminal; log: one line per epoch anywhere


@dataclass
class ExperimentConfig:
    name: str = "demo"  # folder under runs_dir
    runs_dir: str = "runs"
    seed: int = 0  # model initialisation and data order
    controls: list[str] = field(default_factory=lambda: ["reinit"])  # branches run at every level (lottery.branches)
    matching_tolerance: float = 0.5  # accuracy points (percent) a ticket may lose and still "match"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    rewind: RewindConfig = field(default_factory=RewindConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """Defaults, then the YAML file, then `key=value` overrides; every key and value type checked."""
    try:
        cfg = OmegaConf.structured(ExperimentConfig)
        if path is not None:
            cfg = OmegaConf.merge(cfg, read_file(Path(path)))
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        config: ExperimentConfig = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise LotteryError(f"bad configuration: {_first_line(e)}; `lottery run --print-config` "
                           "lists every key with its value") from None
    validate(config)
    return config


def read_file(path: Path):
    """The mapping a YAML config file holds, or a LotteryError naming the file and what is wrong with it."""
    from lottery.preflight import read_yaml

    return read_yaml(path, "config file", fix="pass a YAML file like experiments/configs/demo.yaml")


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    extra = [ln for ln in lines[1:] if ln.startswith(("full_key", "key"))]
    return "; ".join(lines[:1] + extra[:1])


def validate(cfg: ExperimentConfig) -> None:
    """Range checks OmegaConf's types cannot express; names are checked by their registries."""
    from lottery.pruning import get_strategy
    from lottery.rewind import POLICIES

    from lottery.data import check_name as check_dataset
    from lottery.models import check_name as check_model

    get_strategy(cfg.prune.strategy)
    check_model(cfg.model.name)
    check_dataset(cfg.data.name)
    if not 0.0 < cfg.prune.fraction < 1.0:
        raise LotteryError(f"prune.fraction={cfg.prune.fraction} must be in (0, 1): the share of remaining weights removed per level")
    if cfg.prune.levels < 0:
        raise LotteryError(f"prune.levels={cfg.prune.levels} must be >= 0")
    if cfg.rewind.policy not in POLICIES:
        raise LotteryError(f"unknown rewind policy {cfg.rewind.policy!r}; choose one of: {', '.join(POLICIES)}")
    from lottery.branches import BRANCHES

    unknown = [c for c in cfg.controls if c not in BRANCHES]
    if unknown:
        raise LotteryError(f"unknown control {unknown[0]!r}; choose from: {', '.join(BRANCHES)}")
    if cfg.train.steps is None and cfg.train.epochs is None:
        raise LotteryError("set train.steps or train.epochs: the training length of each level")
    if (cfg.train.steps or 1) <= 0 or (cfg.train.epochs or 1) <= 0:
        raise LotteryError("train.steps and train.epochs must be positive")
    from lottery.preflight import check_ranges

    check_ranges(cfg)


def to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> ExperimentConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.create(text)))
