"""Experiment configuration from YAML files plus `key=value` command-line overrides.

The typed fields live in `lottery.hparams`; OmegaConf checks every key and type against them, so a
misspelt key or a wrong type is an error that names it. `validate` adds the range and name checks.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lottery.errors import LotteryError
from lottery.hparams import ExperimentConfig

_RENAMED = {"controls": "branches"}  # old key -> new key, for a message that names the fix


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """Defaults, then the YAML file, then `key=value` overrides; every key and value type checked."""
    try:
        cfg = OmegaConf.structured(ExperimentConfig)
        if path is not None:
            cfg = OmegaConf.merge(cfg, _renamed_keys(read_file(Path(path)), str(path)))
        cfg = OmegaConf.merge(cfg, _renamed_keys(OmegaConf.from_dotlist(list(overrides)), "the command line"))
        config: ExperimentConfig = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise LotteryError(f"bad configuration: {_first_line(e)}; `lottery run --print-config` "
                           "lists every key with its value (lottery/hparams.py says what each means)") from None
    validate(config)
    return config


def read_file(path: Path):
    """The mapping a YAML config file holds, or a LotteryError naming the file and what is wrong with it."""
    from lottery.preflight import read_yaml

    return read_yaml(path, "config file", fix="pass a YAML file like experiments/configs/demo.yaml")


def _renamed_keys(cfg, where: str):
    for old, new in _RENAMED.items():
        if old in cfg:
            raise LotteryError(f"`{old}` in {where} is now called `{new}`: write {new}=... instead")
    return cfg


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    extra = [ln for ln in lines[1:] if ln.startswith(("full_key", "key"))]
    return "; ".join(lines[:1] + extra[:1])


def validate(cfg: ExperimentConfig) -> None:
    """Range checks OmegaConf's types cannot express; names are checked by their registries."""
    from lottery.branches import BRANCHES
    from lottery.data import DATASETS
    from lottery.models import check_name as check_model
    from lottery.pruning import STRATEGIES
    from lottery.rewind import POLICIES
    from lottery.schedule import OPTIMIZERS

    STRATEGIES.check(cfg.prune.strategy)
    check_model(cfg.model.name)
    DATASETS.check(cfg.data.name)
    POLICIES.check(cfg.rewind.policy)
    OPTIMIZERS.check(cfg.train.optim.optimizer)
    for name in cfg.branches:
        BRANCHES.check(name)
    if not 0.0 < cfg.prune.fraction < 1.0:
        raise LotteryError(f"prune.fraction={cfg.prune.fraction} must be in (0, 1): the share of remaining weights removed per level")
    if cfg.prune.levels < 0:
        raise LotteryError(f"prune.levels={cfg.prune.levels} must be >= 0")
    if len(set(cfg.seeds)) != len(cfg.seeds) or any(s < 0 for s in cfg.seeds):
        raise LotteryError(f"seeds={cfg.seeds} must be distinct non-negative integers, e.g. seeds=[0,1,2]")
    if cfg.train.steps is None and cfg.train.epochs is None:
        raise LotteryError("set train.steps or train.epochs: the training length of each level")
    if (cfg.train.steps or 1) <= 0 or (cfg.train.epochs or 1) <= 0:
        raise LotteryError("train.steps and train.epochs must be positive")
    lanes = cfg.trainer.lanes
    if not (lanes == "auto" or (isinstance(lanes, int) and lanes >= 1)):
        raise LotteryError(f"trainer.lanes={lanes!r} must be a positive integer (1: one by one) or auto")
    if lanes != 1 and (str(cfg.trainer.devices) not in ("1", "auto") or cfg.trainer.num_nodes > 1):
        raise LotteryError(f"trainer.lanes={lanes} with trainer.devices={cfg.trainer.devices}, num_nodes="
                           f"{cfg.trainer.num_nodes}: lanes train in one process; set trainer.lanes=1 to use several")
    from lottery.preflight import check_ranges
    from lottery.tracking import check_logger

    check_logger(cfg.trainer.logger)
    check_ranges(cfg)


def to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> ExperimentConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.create(text)))
