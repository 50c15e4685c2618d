"""`lottery list [what]`: every name a configuration key can take, from the registries themselves (so the methods an
installed package adds are listed too), each with one line about it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lottery.core.errors import LotteryError
from lottery.core.methods import Method
from lottery.core.pruning import STRATEGIES
from lottery.core.rewind import POLICIES
from lottery.data import DATASETS
from lottery.imp.branches import BRANCHES
from lottery.models import MODELS
from lottery.models.presets import PRESETS
from lottery.sparsity.distributions import DISTRIBUTIONS
from lottery.training.optimizers import OPTIMIZERS
from lottery.training.tracking import LOGGERS

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"  # in a checkout of the repository

# what -> (the key that takes these names, the registry)
CATALOG = {
    "models": ("model.name (also torchvision:<name>, hf:<hub name | folder>)", MODELS),
    "datasets": ("data.name", DATASETS),
    "strategies": ("prune.strategy", STRATEGIES),
    "branches": ("branches=[...]", BRANCHES),
    "presets": ("prune.preset", PRESETS),
    "distributions": ("sparse.distribution, prune.distribution", DISTRIBUTIONS),
    "optimizers": ("train.optim.optimizer", OPTIMIZERS),
    "policies": ("rewind.policy", POLICIES),
    "loggers": ("trainer.logger", LOGGERS),
}
ALIASES = {"criteria": "strategies"}  # the papers' word for a pruning strategy
WHAT = (*CATALOG, "configs")


def _line(name: str, registry) -> str:
    entry = registry[name]
    if not isinstance(entry, Method):
        return registry.summary(name)
    options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(entry.options)) if entry.options else ""
    kind = f"[{entry.kind}] " if registry is BRANCHES else ""
    return f"{kind}{entry.summary}" + (f"  (methods.{name}.*: {options})" if options else "")


def _configs() -> list[tuple[str, str]]:
    """Each experiment config of the repository with the first line of its opening comment."""
    out = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        out.append((str(path.relative_to(CONFIGS.parents[1])), first))
    return out


def listing(what: str | None) -> str:
    """The text of `lottery list [what]`: one section, or every section."""
    what = ALIASES.get(what, what)
    if what is not None and what not in WHAT:
        raise LotteryError(f"unknown list {what!r}; choose one of: {', '.join(WHAT)}")
    parts = []
    for section in WHAT if what is None else [what]:
        if section == "configs":
            rows, key = _configs(), "lottery run --config FILE"
            if not rows:
                rows = [("(none here)", "the experiment configs live in experiments/configs/ of the repository")]
        else:
            key, registry = CATALOG[section]
            rows = [(name, _line(name, registry)) for name in sorted(registry)]
        width = max(len(name) for name, _ in rows)
        parts.append(f"{section} ({key}):\n" + "\n".join(f"  {name:{width}s}  {line}".rstrip() for name, line in rows))
    return "\n\n".join(parts)
