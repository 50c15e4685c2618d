"""The rules every configuration key keeps, checked from the configuration alone (the plan, lottery.cli.plan, checks
what needs the data and the models): names against their registries, numbers against their ranges, and each
method's own options (methods.<name>.*) against its record. A broken rule is one LotteryError naming the key,
its value and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import asdict, replace
from pathlib import PurePath

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lottery.cli.config import first_line
from lottery.core.errors import LotteryError
from lottery.core.methods import METHODS
from lottery.core.pruning import STRATEGIES, get_strategy
from lottery.core.rewind import POLICIES
from lottery.core.schema import SCHEDULES, ExperimentConfig
from lottery.data import DATASETS
from lottery.imp.branches import BRANCHES
from lottery.models import HF
from lottery.models import check_name as check_model
from lottery.models.presets import PRESETS
from lottery.sparsity.distributions import DISTRIBUTIONS
from lottery.training.optimizers import OPTIMIZERS
from lottery.training.tracking import check_logger


def check_keys(cfg: ExperimentConfig) -> tuple[ExperimentConfig, dict[str, object]]:
    """Every key's name and range, from the configuration alone. Returns the configuration with each method's
    options resolved (methods.<name>: every option of the strategy and the branches, defaults filled in, as
    config.yaml records them), and those options by method (`method_options`)."""
    _check_lists_and_maps(cfg)
    STRATEGIES.check(cfg.prune.strategy)
    check_model(cfg.model.name)
    DATASETS.check(cfg.data.name)
    POLICIES.check(cfg.rewind.policy)
    OPTIMIZERS.check(cfg.train.optim.optimizer)
    for name in cfg.branches:
        BRANCHES.check(name)
    _check_pretrained(cfg)
    _check_ranges(cfg)
    _check_sparse(cfg)
    _check_read(cfg)
    check_logger(cfg.trainer.logger)
    options = method_options(cfg)
    return replace(cfg, methods={name: asdict(o) for name, o in options.items() if o is not None}), options


def used_methods(cfg: ExperimentConfig) -> list[str]:
    """The methods a run of `cfg` uses: its pruning strategy and its branches."""
    return [cfg.prune.strategy, *cfg.branches]


def method_options(cfg: ExperimentConfig) -> dict[str, object]:
    """Each used method's options (an instance of its record's options class; None for a method without any), read
    from methods.<name>; a section for a method the run does not use, or an option the method does not have, is an
    error naming the closest one."""
    used = used_methods(cfg)
    for name in cfg.methods:
        if name not in used:
            known = f"{name!r} is a {METHODS[name].kind} this run does not use" if name in METHODS else \
                f"no method is called {name!r}{_closest(name, METHODS)}"
            raise LotteryError(f"methods.{name}: {known}; a methods.<name> section sets the options of the "
                               f"strategy or a branch of the run ({', '.join(used)})")
    return {name: _options(METHODS[name], cfg.methods.get(name) or {}) for name in used}


def _options(method, given: dict):
    if method.options is None:
        if given:
            raise LotteryError(f"methods.{method.name}: the {method.kind} {method.name} has no options; remove "
                               f"methods.{method.name}")
        return None
    fields = {f.name for f in dataclasses.fields(method.options)}
    for key in given:
        if key not in fields:
            raise LotteryError(f"methods.{method.name}.{key}: {method.name} has no option {key!r}"
                               f"{_closest(key, fields)}; its options: {', '.join(sorted(fields))}")
    try:  # OmegaConf checks and converts the types, as for every other key
        typed = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(method.options), given))
    except OmegaConfBaseException as e:
        raise LotteryError(f"methods.{method.name}: {first_line(e)}") from None
    return method.options(**typed)  # its own checks raise a LotteryError naming the key


def _closest(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# Keys that only some methods or settings read: besides the methods whose records name them, the setting that reads
# each one, and when it is on.
_READ_ALSO = {
    "train.optim.finetune_lr": ("rewind.policy=finetune", lambda cfg: cfg.rewind.policy == "finetune"),
    "sparse.dense_layers": ("prune.distribution", lambda cfg: cfg.prune.distribution is not None),
    "train.optim.decay_steps": ("train.optim.schedule=linear", lambda cfg: cfg.train.optim.schedule == "linear"),
}


def _check_read(cfg: ExperimentConfig) -> None:
    """Every key takes effect: one that only some methods or settings read (the records' `reads`, _READ_ALSO),
    given a value other than its default while nothing of the run reads it, is refused, naming who would."""
    readers: dict[str, list[str]] = {}
    for name, method in METHODS.items():
        for key in method.reads:
            readers.setdefault(key, []).append(name)
    used = set(used_methods(cfg))
    defaults, given = type(cfg)().flat(), cfg.flat()
    for key in sorted(set(readers) | set(_READ_ALSO)):
        if given.get(key) == defaults.get(key):
            continue
        also, reads = _READ_ALSO.get(key, ("", lambda c: False))
        if used & set(readers.get(key, ())) or reads(cfg):
            continue
        who = ", ".join(sorted(readers.get(key, ())))
        needs = " or ".join(x for x in (f"the branches {who}" if who else "", also) if x)
        raise LotteryError(f"{key}={given[key]} has no effect on this run: only {needs} read it; remove it, or add "
                           "what reads it")
    if cfg.prune.distribution is not None and cfg.prune.rates:
        raise LotteryError(f"prune.rates={cfg.prune.rates} has no effect with prune.distribution={cfg.prune.distribution}, "
                           "which sets every tensor's density itself; remove one of them")


def _check_lists_and_maps(cfg: ExperimentConfig) -> None:
    """No list key names an entry twice (it would take effect once, but be recorded twice), and no mapping holds a
    `key:value` that YAML read as a key without a value (a flow mapping needs a space after the colon)."""
    for key, value in cfg.flat().items():
        if isinstance(value, list):
            twice = sorted({str(v) for v in value if value.count(v) > 1})
            if twice:
                raise LotteryError(f"{key}={value} names {', '.join(twice)} more than once; list each once")
    for key, mapping in (("prune.rates", cfg.prune.rates), ("data.options", cfg.data.options),
                         ("model.options", cfg.model.options), *((f"methods.{n}", o) for n, o in cfg.methods.items())):
        bad = [k for k, v in (mapping or {}).items() if v is None and ":" in str(k)]
        if bad:
            key_, value_ = bad[0].split(":", 1)
            raise LotteryError(f"{key}: {bad[0]!r} was read as one key without a value; write {{{key_}: {value_}}} "
                               "with a space after the colon")


def _fail(key: str, value, rule: str) -> LotteryError:
    return LotteryError(f"{key}={value} {rule}")


def _check_ranges(cfg) -> None:
    if not 0.0 < cfg.prune.fraction < 1.0:
        raise LotteryError(f"prune.fraction={cfg.prune.fraction} must be in (0, 1): the share of remaining weights removed per level")
    if cfg.prune.levels < 0:
        raise _fail("prune.levels", cfg.prune.levels, "must be >= 0")
    if len(set(cfg.seeds)) != len(cfg.seeds) or any(s < 0 for s in cfg.seeds):
        raise LotteryError(f"seeds={cfg.seeds} must be distinct non-negative integers, e.g. seeds=[0,1,2]")
    if cfg.train.steps is None and cfg.train.epochs is None:
        raise LotteryError("set train.steps or train.epochs: the training length of each level")
    _check_name(cfg.name)
    ints = {"seed": cfg.seed, "data.split_seed": cfg.data.split_seed, "rewind.step": cfg.rewind.step,
            "train.optim.warmup_steps": cfg.train.optim.warmup_steps}
    for key, value in ints.items():
        if value < 0:
            raise _fail(key, value, "must be >= 0")
    if cfg.data.batch_size < 1:
        raise _fail("data.batch_size", cfg.data.batch_size, "must be >= 1: the examples per optimizer step")
    if cfg.data.val_size < 1:
        raise _fail("data.val_size", cfg.data.val_size, "must be >= 1: levels are compared by validation accuracy")
    for key, value in (("train.steps", cfg.train.steps), ("train.epochs", cfg.train.epochs)):
        if value is not None and value < 1:
            raise _fail(key, value, "must be >= 1 (or null to use the other of train.steps and train.epochs)")
    for key, values in (("train.milestone_epochs", cfg.train.milestone_epochs),
                        ("train.optim.milestone_steps", cfg.train.optim.milestone_steps)):
        if any(v < 0 for v in values):
            raise _fail(key, values, "must all be >= 0")
    _check_optim(cfg.train.optim)
    if not math.isfinite(cfg.matching_tolerance) or not 0 <= cfg.matching_tolerance < 100:
        raise _fail("matching_tolerance", cfg.matching_tolerance, "must be in [0, 100) accuracy points: at 100 every "
                    "level would match the dense network")
    _check_rates(cfg.prune)
    _check_trainer(cfg.trainer)


def _check_name(name: str) -> None:
    parts = PurePath(name).parts
    if not parts or not name.strip() or PurePath(name).is_absolute() or ".." in parts or name.startswith("~"):
        raise LotteryError(f"name={name!r} must be a folder name inside runs_dir, like name=lenet_mnist; "
                           "to put runs elsewhere set runs_dir=...")


def _check_optim(o) -> None:
    # The optimizer's name is checked by its registry in config.validate, before these ranges.
    if not (math.isfinite(o.lr) and o.lr > 0):
        raise _fail("train.optim.lr", o.lr, "must be > 0: the peak learning rate")
    for key, value in (("momentum", o.momentum), ("weight_decay", o.weight_decay)):
        if not (math.isfinite(value) and value >= 0):
            raise _fail(f"train.optim.{key}", value, "must be >= 0")
    if o.nesterov and (o.optimizer != "sgd" or o.momentum <= 0):
        raise LotteryError("train.optim.nesterov=true needs train.optim.optimizer=sgd and train.optim.momentum > 0")
    if not (math.isfinite(o.gamma) and o.gamma > 0):
        raise _fail("train.optim.gamma", o.gamma, "must be > 0: the factor applied to the learning rate at each milestone")
    if o.finetune_lr is not None and not (math.isfinite(o.finetune_lr) and o.finetune_lr > 0):
        raise _fail("train.optim.finetune_lr", o.finetune_lr, "must be > 0 (or null: the schedule's final learning rate)")


def _check_rates(p) -> None:
    rates = {"prune.output_rate": p.output_rate, **{f"prune.rates[{k!r}]": v for k, v in p.rates.items()}}
    for key, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 0:
            raise _fail(key, rate, "must be a number >= 0: a multiplier of prune.fraction")
        if p.fraction * rate >= 1 and not p.allow_empty_layers:
            raise LotteryError(f"prune.fraction={p.fraction} x {key}={rate} = {p.fraction * rate:g} >= 1 removes every "
                               "weight of that tensor in the first pruned level; lower the rate or the fraction, or set "
                               "prune.allow_empty_layers=true if that is what you want")


def _check_sparse(cfg) -> None:
    """The sparse-training keys and prune.distribution; the end step against the training length is checked with
    the data (lottery.cli.plan)."""
    s, p = cfg.sparse, cfg.prune
    DISTRIBUTIONS.check(s.distribution)
    if p.distribution is not None:
        DISTRIBUTIONS.check(p.distribution)
        strategy = get_strategy(p.strategy)
        if strategy.ranks_globally:
            raise LotteryError(f"prune.distribution={p.distribution} gives every tensor its own density; prune.strategy="
                               f"{p.strategy} ranks all tensors together: choose layer_magnitude or layer_random")
        if strategy.structured:
            raise LotteryError(f"prune.distribution={p.distribution} shares out weights; prune.strategy={p.strategy} "
                               "removes units, prune.fraction of each layer's remaining ones per level: remove "
                               "prune.distribution")
    if s.interval_steps < 1:
        raise _fail("sparse.interval_steps", s.interval_steps, "must be >= 1: masks change every ΔT steps")
    if s.start_step < 0 or (s.end_step is not None and s.end_step < s.start_step):
        raise LotteryError(f"sparse.start_step={s.start_step} and sparse.end_step={s.end_step} must satisfy "
                           "0 <= start_step <= end_step")
    if not (math.isfinite(s.drop_fraction) and 0 <= s.drop_fraction < 1):
        raise _fail("sparse.drop_fraction", s.drop_fraction, "must be in [0, 1): the share of active weights replaced")


def _check_pretrained(cfg) -> None:
    """The keys of transformer runs (docs/pretrained.md): presets, model options, the linear schedule, clipping."""
    if cfg.prune.preset is not None:
        PRESETS.check(cfg.prune.preset)
        if cfg.prune.include is not None:
            raise LotteryError(f"prune.preset={cfg.prune.preset} and prune.include={cfg.prune.include} both name the "
                               "prunable weights; keep one of them (prune.exclude still applies to a preset)")
    if cfg.model.options and not cfg.model.name.startswith(HF):
        raise LotteryError(f"model.options={cfg.model.options} apply to hf: models only, not to {cfg.model.name}; remove them")
    o = cfg.train.optim
    if o.schedule not in SCHEDULES:
        raise _fail("train.optim.schedule", o.schedule, f"must be one of {', '.join(SCHEDULES)}")
    if o.schedule == "linear" and (o.milestone_steps or cfg.train.milestone_epochs):
        raise LotteryError("train.optim.schedule=linear decays the learning rate to 0 by itself; remove the milestones "
                           "(train.optim.milestone_steps, train.milestone_epochs) or use schedule=step")
    if o.decay_steps is not None and o.decay_steps < 1:
        raise _fail("train.optim.decay_steps", o.decay_steps, "must be >= 1 (or null: the training length)")
    clip = cfg.trainer.gradient_clip_val
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise _fail("trainer.gradient_clip_val", clip, "must be > 0 (the largest gradient norm), or null for no clipping")


def _check_trainer(t) -> None:
    if t.progress not in (True, False, "log"):
        raise _fail("trainer.progress", t.progress, "must be true (a status line on a terminal), false, or log (one line per epoch)")
    if isinstance(t.devices, int) and t.devices < 1 and t.devices != -1:
        raise _fail("trainer.devices", t.devices, "must be >= 1, -1 (all), \"auto\", or a list of device ids like \"0,1\"")
    if t.num_nodes < 1:
        raise _fail("trainer.num_nodes", t.num_nodes, "must be >= 1")
    if not (t.lanes == "auto" or (isinstance(t.lanes, int) and t.lanes >= 1)):
        raise LotteryError(f"trainer.lanes={t.lanes!r} must be a positive integer (1: one by one) or auto")
