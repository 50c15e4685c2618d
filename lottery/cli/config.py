"""A configuration as the `lottery` command reads it: YAML files plus `key=value` command-line overrides.

The typed keys are the schema's (lottery.core.schema) and, for `lottery sweep`, the launcher's; OmegaConf checks
every key and type against them, so a misspelt key or a wrong type is an error that names it. The rules of the
values are checked once, by the plan of the run (lottery.cli.keys, lottery.cli.plan).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lottery.core.errors import LotteryError
from lottery.core.schema import ExperimentConfig

# old key -> new key, for a message that names the fix
_RENAMED = {"controls": "branches", "sparse.earlybird_window": "methods.earlybird.window",
            "sparse.earlybird_threshold": "methods.earlybird.threshold"}


@dataclass
class LauncherConfig:
    """How `lottery sweep` submits its jobs (launcher.*): a part of the command line's configuration only."""

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
class CommandConfig(ExperimentConfig):
    """An experiment's keys, and how `lottery sweep` submits its jobs (launcher.*), which only the command reads."""

    launcher: LauncherConfig = field(default_factory=LauncherConfig)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> CommandConfig:
    """Defaults, then the YAML file, then `key=value` overrides; every key and value type checked."""
    try:
        cfg = OmegaConf.structured(CommandConfig)
        if path is not None:
            cfg = OmegaConf.merge(cfg, _renamed_keys(read_yaml(path, "config file", "pass a YAML file like experiments/configs/demo.yaml"), str(path)))
        cfg = OmegaConf.merge(cfg, _renamed_keys(OmegaConf.from_dotlist(list(overrides)), "the command line"))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        if "Cannot convert 'DictConfig' to string" in str(e) and getattr(e, "full_key", None):
            raise LotteryError(f"{e.full_key}: its value was read as a mapping ({str(e).split(': ', 1)[1].splitlines()[0]}): "
                               f"a value ending in ':' is YAML for a key; give what follows, e.g. model.name=hf:bert-base-uncased, "
                               "or quote the value") from None
        raise LotteryError(f"bad configuration: {first_line(e)}; `lottery run --print-config` lists every key with "
                           "its value (lottery/core/schema.py says what each means)") from None


def read_yaml(path: str | Path, what: str, fix: str) -> DictConfig:
    """The mapping the YAML file `path` holds, or a LotteryError saying what is wrong with the file."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise LotteryError(f"{what} {path} is a directory; {fix}")
    if not path.exists():
        raise LotteryError(f"{what} {path} does not exist; {fix}")
    try:
        data = OmegaConf.load(path)
    except UnicodeDecodeError:
        raise LotteryError(f"{what} {path} is not a text file; {fix}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise LotteryError(f"{what} {path} is not valid YAML ({problem}{where}); {fix}") from None
    except OSError as e:
        raise LotteryError(f"cannot read {what} {path} ({e.strerror}); check that it is a readable file") from None
    if not isinstance(data, DictConfig):
        raise LotteryError(f"{what} {path} holds a {type(data).__name__.removesuffix('Config').lower()}, not a mapping "
                           f"of keys (name: ..., train: ...); {fix}")
    return data


def load_saved(saved: Path):
    """The ExperimentConfig a run folder's config.yaml holds, or a LotteryError naming the damage and the fix."""
    fix = f"restore it from a copy, or delete {saved.parent} to start over"
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CommandConfig),
                                                   _moved_keys(read_yaml(saved, "the run's config", fix=fix))))
    except OmegaConfBaseException as e:
        raise LotteryError(f"the run's config {saved} does not fit this version of lottery "
                           f"({str(e).splitlines()[0]}); {fix}") from None


def _moved_keys(saved: DictConfig) -> DictConfig:
    """A config.yaml written by an earlier version, its renamed keys under their new names (a run folder stays
    readable and resumable after an upgrade; what a user writes gets the message of `_renamed_keys` instead)."""
    for old, new in _RENAMED.items():
        value = OmegaConf.select(saved, old, default=None)
        if value is not None:
            parent, _, leaf = old.rpartition(".")
            (OmegaConf.select(saved, parent) if parent else saved).pop(leaf)
            if OmegaConf.select(saved, new, default=None) is None:
                OmegaConf.update(saved, new, value, force_add=True)
    return saved


def _renamed_keys(cfg, where: str):
    for old, new in _RENAMED.items():
        if OmegaConf.select(cfg, old, default=None) is not None:
            raise LotteryError(f"`{old}` in {where} is now called `{new}`: write {new}=... instead")
    return cfg


def first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    extra = [ln for ln in lines[1:] if ln.startswith(("full_key", "key"))]
    return "; ".join(lines[:1] + extra[:1])


def to_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> CommandConfig:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CommandConfig), OmegaConf.create(text)))
