"""Methods are records: every pruning method is declared once, with every fact lottery knows about it.

A record's kind says where the method takes part; the kinds differ only in what they are called with:

    Strategy        prunes IMP's levels (prune.strategy=<name>): (weights, masks, density, generator) -> masks;
                    one that `needs_model` gets the model too (a `Network`), after the generator
    Branch          trains off every level at its sparsity (branches=[<name>]); `build` says what it trains
    SparseTraining  a branch that changes its masks while it trains: a MaskUpdater class (lottery.sparsity.updaters)
    OneShot         a branch that prunes once to the level's density (scores from the weights, and data where it
                    asks for them), then trains as a level does

Every record carries its `label` on the curve, a one-line `summary` (`lottery list`), and its own `options`: a
dataclass whose fields are the method's keys, `methods.<name>.<field>=...` in a configuration, with the paper's
defaults. A method that declares options receives them (an instance) as its last argument; a method without any
is called without. A record may also `check` itself against the model and the data before anything trains.

A strategy is unstructured (it keeps single weights: `density` counts each tensor's weights) or `structured` (it
removes whole units, the output channels of convolutions, neurons of Linear layers, attention heads, together with
every tensor that shares them: `density` counts each tensor's units, the rows of its weight). Its `control` names the
strategy that draws its random-pruning control (random masks with the per-layer counts its own masks have), and its
`penalty`, when it has one, is a term every training of the run adds to its loss (network slimming's L1 penalty on
the BatchNorm scaling factors).

Branches also say what their mask builds on, for the cost of reaching it (`builds_on`: the IMP levels before it,
the dense level, the dense level up to the step its watcher drew at, or nothing but a density); whether they train
the IMP level's own mask (`same_mask`: a control, whose mask overlap with the ticket is 1 by construction); and
what they watch while the dense level trains (`watch`: the early-bird ticket's detector).

One registry, METHODS, holds every record by name, one namespace for all kinds; `METHODS.of(kind)` is the live view
of one kind (`lottery.core.pruning.STRATEGIES`, `lottery.imp.branches.BRANCHES` are two). Packages add records
with `register(record)`, or through the entry-point group `lottery.methods` (an installed package names a module,
whose import registers its records, or a record or list of records), loaded the first time a name is looked up.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from lottery.core.errors import LotteryError

ENTRY_POINTS = "lottery.methods"  # the entry-point group of installed packages that add methods
# What every sparse-training method reads of the sparse.* section (SparseTraining.reads; a method adds what else it
# reads, such as sparse.drop_fraction, or reads less: a static mask never updates).
SCHEDULE_KEYS = ("sparse.distribution", "sparse.dense_layers", "sparse.interval_steps", "sparse.start_step",
                 "sparse.end_step")
BUILDS_ON = {  # what a branch's mask needs besides its own training: the cost of reaching it (lottery.report.cost)
    "imp": "the IMP levels before it",
    "dense": "the dense level",
    "watch": "the dense level, up to the step its watcher drew at",
    "nothing": "nothing but the level's density",
}


@dataclass(frozen=True, kw_only=True)
class Method:
    """A pruning method: its name, what the curve calls it, one line about it, and its own options.

    options: a dataclass of the method's keys with their defaults (the paper's); None: it has none.
    check: `check(context[, options])` raises a LotteryError when the method cannot work with the model and data of
        a run (a `Context`), before anything is written; None: it works with any.
    reads: the configuration keys outside its options that it reads (shared ones, such as sparse.interval_steps):
        a run that sets one of them with no method or setting to read it is refused (lottery.cli.keys).
    """

    name: str
    summary: str
    label: str = ""
    options: type | None = None
    check: Callable[..., None] | None = None
    reads: tuple[str, ...] = ()

    kind = "method"  # what the records of a kind are called in messages

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum() or self.name[0].isdigit():
            raise LotteryError(f"method name {self.name!r} must be a word of letters, digits and _ (not first a digit)")
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise LotteryError(f"method {self.name!r}: options={self.options!r} must be a dataclass (its keys)")

    @property
    def legend(self) -> str:
        """Its label on a curve: `label`, or its name."""
        return self.label or self.name

    def default_options(self):
        """Its options with every default (None when it has none)."""
        return None if self.options is None else self.options()

    def call(self, fn: Callable, *args, options=None):
        """`fn(*args, options)` for a method with options (its defaults when `options` is None), else `fn(*args)`:
        the one calling rule of every function a record holds."""
        if self.options is None:
            return fn(*args)
        return fn(*args, options if options is not None else self.options())


@dataclass(frozen=True)
class Context:
    """What a method checks itself against (`Method.check`): the model, its prunable tensors (a MaskManager, with
    the experiment's per-tensor rates), the data (`num_classes`, `input_shape`), a training's length in steps and
    its optimizer (lottery.core.schema.OptimConfig)."""

    model: Any
    masks: Any
    data: Any
    total_steps: int
    optim: Any = None


@dataclass(frozen=True)
class Network:
    """The model a strategy that `needs_model` prunes: the module, and the shape of one of its inputs (without the
    batch), with which a structured strategy traces which tensors share each unit."""

    module: Any
    input_shape: tuple | None = None


@dataclass(frozen=True)
class Penalty:
    """A term every training of a run adds to its loss: `weight` x the sum of |p| over the parameters `names` (an L1
    penalty; network slimming's, on the BatchNorm scaling factors, Liu et al. 2017, Section 3.2)."""

    names: tuple[str, ...]
    weight: float


@dataclass(frozen=True, kw_only=True)
class Strategy(Method):
    """Prunes IMP's levels: `select(weights, masks, density, generator[, network][, options]) -> masks`, a pure function
    of its inputs (lottery.core.pruning states the density contract).

    ranks_globally: it ranks all tensors together (a tensor with its own rate, such as the output layer, is then
        ranked apart from the others).
    needs_model: it is given the model too, a `Network` (module and input shape), after the generator: structured
        strategies trace it to find the tensors that share each unit.
    structured: it removes whole units (rows of the weights, with the columns of the layers that read them) and its
        `density` counts each tensor's units, not its weights (lottery.core.masks.unit_density).
    control: the strategy whose random masks, with this one's per-layer counts, are its random-pruning control.
    penalty: `penalty(model[, options]) -> Penalty | None`, a term every training of the run adds to its loss.
    """

    select: Callable
    ranks_globally: bool = False
    needs_model: bool = False
    structured: bool = False
    control: str = "layer_random"
    penalty: Callable | None = None
    bound: Any = None  # the options it prunes with (`with_options`); None: the defaults

    kind = "pruning strategy"

    def with_options(self, options) -> "Strategy":
        """The strategy pruning with `options` (an instance of its options class)."""
        return dataclasses.replace(self, bound=options)

    def __call__(self, weights, masks, density, generator=None, network: Network | None = None):
        if self.needs_model and network is None:
            raise LotteryError(f"strategy {self.name} prunes a model it traces: pass network=Network(model, input_shape) "
                               "(a MaskManager built with input_shape=... passes it)")
        model = (network,) if self.needs_model else ()
        return self.call(self.select, weights, masks, density, generator, *model, options=self.bound)

    def training_penalty(self, model) -> Penalty | None:
        """The term its trainings add to their loss, for `model` (None: none)."""
        return None if self.penalty is None else self.call(self.penalty, model, options=self.bound)


@dataclass(frozen=True, kw_only=True)
class Branch(Method):
    """Trains off every IMP level at the level's sparsity. A branch of its own writes
    `build(point, models, rewinding[, options]) -> Training` (the three arguments: lottery.imp.branches); SparseTraining
    and OneShot records are built by the IMP layer from their facts.

    builds_on: what its mask needs besides its own training, one of BUILDS_ON.
    same_mask: it trains the IMP level's own mask (its overlap with the ticket is 1 by construction).
    watch: `watch(models[, options])` -> a watcher spec (`build(seeds)`, `name`) that observes the dense level's
        training for this branch (the early-bird detector); None: it needs nothing from the dense training.
    """

    build: Callable | None = None
    builds_on: str = "nothing"
    same_mask: bool = False
    watch: Callable | None = None

    kind = "branch"

    def __post_init__(self):
        super().__post_init__()
        if self.builds_on not in BUILDS_ON:
            raise LotteryError(f"method {self.name!r}: builds_on={self.builds_on!r} must be one of {', '.join(BUILDS_ON)}")
        if type(self) is Branch and self.build is None:
            raise LotteryError(f"branch {self.name!r} needs build=(point, models, rewinding) -> what it trains")


@dataclass(frozen=True, kw_only=True)
class SparseTraining(Branch):
    """A branch that finds a sparse network within one training, from the dense level's initial weights, at the
    level's density shared out by `sparse.distribution`: `updater` (a lottery.sparsity.updaters.MaskUpdater class)
    changes the masks while it trains, on the `sparse.*` schedule. starts_dense: from the dense network (gradual
    magnitude pruning; the methods that compute their first mask themselves), else from a random mask with the
    distribution's per-layer counts.

    densities: `densities(masks, share[, options])` -> {tensor: density} for a method whose options fix its
        densities instead of the level (SR-STE: N/M in every layer its pattern prunes), or None where they do not;
        `masks` is a MaskManager of the prunable tensors, `share(d)` the density d shared out by sparse.distribution.
        A method with densities of its own trains once, off the first pruned level: its network is the same at every
        level. None (the field): always the level's.
    """

    updater: type
    starts_dense: bool = False
    reads: tuple[str, ...] = SCHEDULE_KEYS
    densities: Callable | None = None

    kind = "sparse-training method"


@dataclass(frozen=True, kw_only=True)
class OneShot(Branch):
    """A branch that prunes once to the level's density, then trains as a level does:
    `prune(model, masks, density, calibration, generator[, options])` sets `masks` (a MaskManager of the model's
    prunable tensors) to keep `density` of all their weights.

    weights: which weights it prunes and trains from: "init" (the initialisation, trained for the whole schedule, as
        pruning at initialisation) or "rewind" (the rewind point, trained as the level is: a pretrained checkpoint).
    samples_per_class: labelled training examples per class it scores with (`calibration.batches`), or a function
        of the number of classes giving it; 0: none.
    """

    prune: Callable
    weights: str = "init"
    samples_per_class: int | Callable[[int], int] = 0

    kind = "one-shot pruner"

    def __post_init__(self):
        super().__post_init__()
        if self.weights not in ("init", "rewind"):
            raise LotteryError(f"one-shot method {self.name!r}: weights={self.weights!r} must be init or rewind")

    def examples_per_class(self, num_classes: int) -> int:
        n = self.samples_per_class
        return n(num_classes) if callable(n) else n


@dataclass(frozen=True)
class Training:
    """What a branch trains: the model with its starting weights, its masks (a MaskManager), its plan
    (lottery.core.rewind.TrainingPlan); and the method that changes the masks while it trains, for the sparse-training
    branches (lottery.sparsity.updaters.MethodSpec)."""

    model: Any
    masks: Any
    plan: Any
    updater: object = None


@dataclass(frozen=True)
class Calibration:
    """What a one-shot pruner reads besides the weights: labelled training batches [(x, y), ...] on the CPU (about
    `samples_per_class` per class; empty when it asks for none) and the shape of one example."""

    batches: list
    input_shape: tuple


class Kind(Mapping):
    """The live view of one kind of record in a registry (a plugin's records appear as soon as they are added):
    a mapping name -> record, with `check` and `lookup` whose errors list the valid names."""

    def __init__(self, registry: "Methods", kinds: tuple[type, ...], what: str):
        self._registry, self._kinds, self.kind = registry, kinds, what

    def _entries(self) -> dict[str, Method]:
        return {n: m for n, m in self._registry.items() if isinstance(m, self._kinds)}

    def __getitem__(self, name: str) -> Method:
        method = self._registry.get(name)
        if not isinstance(method, self._kinds):
            raise KeyError(name)
        return method

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())

    def check(self, name: str) -> None:
        """Raise a LotteryError listing the valid names unless `name` is a record of this kind."""
        if name not in self:
            other = self._registry.get(name)
            elsewhere = f" ({name!r} is a {other.kind})" if other is not None else ""
            raise LotteryError(f"unknown {self.kind} {name!r}{elsewhere}; choose one of: {', '.join(sorted(self))}")

    def lookup(self, name: str) -> Method:
        self.check(name)
        return self[name]


class Methods(Mapping):
    """Every method's record by name; the `lottery.methods` entry points are loaded at the first lookup."""

    def __init__(self):
        self._records: dict[str, Method] = {}
        self._plugins_loaded = False

    def register(self, method: Method, replace: bool = False) -> Method:
        """Add `method`; a name already taken is an error unless `replace` (a new version of the same method)."""
        if not isinstance(method, Method):
            raise LotteryError(f"register takes a method record (lottery.Strategy, Branch, SparseTraining, OneShot), "
                               f"got {type(method).__name__}")
        old = self._records.get(method.name)
        if old is not None and not replace and old != method:
            raise LotteryError(f"a method named {method.name!r} is registered already ({old.kind}: {old.summary}); "
                               "choose another name, or register(..., replace=True) to replace it")
        self._records[method.name] = method
        return method

    def of(self, *kinds: type, what: str | None = None) -> Kind:
        """The live view of the records of `kinds`."""
        return Kind(self, kinds, what or kinds[0].kind)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # first: a plugin's own lookups while it loads must not load it again
        from importlib.metadata import entry_points

        for point in entry_points(group=ENTRY_POINTS):
            try:
                loaded = point.load()
            except Exception as e:  # a broken plugin is named, with its own error
                raise LotteryError(f"the {ENTRY_POINTS} entry point {point.name!r} ({point.value}) failed to load: "
                                   f"{type(e).__name__}: {e}; fix or uninstall the package that declares it") from None
            for method in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
                if isinstance(method, Method):
                    self.register(method)

    def _all(self) -> dict[str, Method]:
        self._load_plugins()
        return self._records

    def __getitem__(self, name: str) -> Method:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


METHODS = Methods()


def register(method: Method, replace: bool = False) -> Method:
    """Add a method record to METHODS (and so to `lottery run`, the curve, report.md and `lottery list`)."""
    return METHODS.register(method, replace)
