"""MaskManager: one boolean mask per prunable tensor, applied in place on the parameters' device.

It is the only code that writes the zeros. Works with any `nn.Module`, in a plain loop:

    masks = MaskManager(model)
    masks.prune(0.2)                       # remove 20% of the remaining weights
    loss.backward(); opt.step(); masks.apply()

A structured strategy (lottery.core.methods.Strategy.structured) removes whole units instead, and its densities count
units: `MaskManager(model, input_shape=(3, 32, 32)).prune(0.2, "channel_norm")` removes 20% of the remaining output
channels of every layer, with the columns of the layers that read them (lottery.structured).
"""
from __future__ import annotations

import fnmatch
import math
from numbers import Real
from typing import Iterable, Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.methods import Network, Strategy
from lottery.core.pruning import get_strategy

# Layer types whose `weight` is prunable by default. Other packages add theirs with `register_prunable`
# (lottery.lanes adds its batched Linear and Conv2d), so this module needs to know none of them.
PRUNABLE_MODULES: list[type[nn.Module]] = [nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d]
# A module may refuse `prune`/`prune_to` by naming why in this attribute (a LaneNet does: ranking its stacked
# weights would mix the lanes' magnitudes); its masks are then set with `set_masks`, never computed.
REFUSES_PRUNING = "refuses_pruning"


def register_prunable(*types: type[nn.Module]) -> None:
    """Make the `weight` of these layer types prunable by default."""
    PRUNABLE_MODULES.extend(t for t in types if t not in PRUNABLE_MODULES)


def default_prunable(model: nn.Module) -> list[str]:
    """The `weight` of every Linear and Conv layer; biases, norms and embeddings stay dense."""
    kinds = tuple(PRUNABLE_MODULES)
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules() if isinstance(m, kinds)]


def layer_density(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of each tensor's weights kept. Synchronises with the device: not for the hot path."""
    return {n: int(m.sum()) / m.numel() for n, m in masks.items()}


def unit_density(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of each tensor's units kept: its rows (output neurons, channels; the entries of a 1-d tensor) with at
    least one weight left. What a structured strategy's densities count."""
    return {n: int(m.reshape(m.shape[0], -1).any(1).sum()) / m.shape[0] if m.dim() else float(m.item())
            for n, m in masks.items()}


COUNTS = {"weights": layer_density, "units": unit_density}  # what a MaskManager's densities count


def density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of all the masks' weights kept (sparsity is 1 minus this)."""
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _matches_any(pattern: str, names: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


# Parameters registered anywhere (`setattr(module, name, nn.Parameter(...))`, `load_state_dict(..., assign=True)`,
# building a model) since import: when it moves, `apply` checks that its cached parameters are still the model's.
# Reading it costs one list lookup per step, where comparing every cached parameter would cost ~1 us per tensor.
_registrations = [0]


def _count_registration(module, name, param) -> None:
    _registrations[0] += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise LotteryError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _patterns(value, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not all(isinstance(p, str) for p in value):
        raise LotteryError(f"{what} must be a list of parameter-name patterns like ['fc1.weight', 'conv*'], got {value!r}")
    return list(value)


class MaskManager:
    """Owns the masks of `model`'s prunable parameters and keeps pruned weights exactly zero.

    Args:
        model: any module; masks follow its parameters to whatever device they move.
        include: parameter names (`fnmatch` patterns) to prune; default: Conv/Linear weights.
        exclude: patterns removed from `include`, e.g. ``["fc3.weight"]``.
        rates: per-tensor multipliers of the pruning fraction (patterns allowed), e.g.
            ``{"fc3.weight": 0.5}`` prunes the output layer at half the rate (Frankle & Carbin 2019).
        input_shape: the shape of one input, without the batch (e.g. ``(3, 32, 32)``), for strategies that trace the
            model (structured ones); None: only strategies that read the weights alone.

    `density` holds each tensor's target density; it counts weights (`counting == "weights"`), or units after a
    structured strategy pruned (`counting == "units"`: the fraction of the tensor's rows kept, as that strategy left them).
    """

    def __init__(self, model: nn.Module, include: Iterable[str] | None = None,
                 exclude: Iterable[str] = (), rates: Mapping[str, float] | None = None,
                 input_shape: Iterable[int] | None = None):
        if not isinstance(model, nn.Module):
            raise LotteryError(f"MaskManager needs an nn.Module, got {type(model).__name__}")
        self.model = model
        params = dict(model.named_parameters())
        include = None if include is None else _patterns(include, "include")
        names = default_prunable(model) if include is None else [n for n in params if _matches(n, include)]
        if include is not None and not names:
            raise LotteryError(f"include={list(include)} matches no parameter of {type(model).__name__}; "
                               f"names look like {list(params)[:4]}")
        exclude = _patterns(exclude, "exclude")
        for pattern in exclude:  # a pattern that matches nothing is a typo, not a choice
            if not _matches_any(pattern, names):
                raise LotteryError(f"exclude pattern {pattern!r} matches no prunable parameter of {type(model).__name__}; "
                                   f"prunable: {names[:6]}{' ...' if len(names) > 6 else ''}")
        self.names = [n for n in names if not _matches(n, exclude)]
        if not self.names:
            raise LotteryError(f"no prunable parameters left in {type(model).__name__} after exclude={exclude}")
        self.rates = {n: 1.0 for n in self.names}
        if rates is not None and not isinstance(rates, Mapping):
            raise LotteryError(f"rates must be a dict {{name pattern: multiplier of the fraction}}, got {rates!r}")
        for pattern, rate in (rates or {}).items():
            hits = [n for n in self.names if isinstance(pattern, str) and fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise LotteryError(f"rate for {pattern!r} matches no prunable parameter; prunable: {self.names}")
            if _number(rate, f"rate for {pattern!r}") < 0:
                raise LotteryError(f"rate for {pattern!r} must be >= 0, got {rate}")
            self.rates.update({n: float(rate) for n in hits})
        self.masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in self.names}
        self.density = {n: 1.0 for n in self.names}  # target density per tensor, see pruning.py
        self.counting = "weights"  # what `density` counts: "weights", or "units" after a structured strategy
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self._bind()

    # -- the hot path -------------------------------------------------------------------------
    def _bind(self) -> None:
        """Cache the (parameter, mask) lists that `apply` hands to one fused kernel.

        The multiply uses copies of the masks in the parameters' dtype: with bool masks the CPU
        converts element by element (several times slower: experiments/bench_masks.py) and CUDA's
        fused foreach kernel, which needs equal dtypes, falls back to one kernel per tensor.
        """
        self._seen = _registrations[0]
        self._params = [self._param(n) for n in self.names]
        self._masks = [self.masks[n].to(device=p.device, dtype=p.dtype) for n, p in zip(self.names, self._params)]

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights in place: one fused multiply, no host synchronisation."""
        first, mask = self._params[0], self._masks[0]
        # Python attribute checks, no sync: a moved model (`.to(device)`, `.half()`) or a parameter registered
        # since the last bind (perhaps replacing one of ours) sends us to check and follow the model.
        if _registrations[0] != self._seen or first.device != mask.device or first.dtype != mask.dtype:
            self._follow_model()
        torch._foreach_mul_(self._params, self._masks)

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the pruned weights' gradients in place (one fused multiply), e.g. before clipping the gradient norm."""
        self.apply()  # follows a moved model first
        pairs = [(p.grad, m) for p, m in zip(self._params, self._masks) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m.to(g.dtype) for g, m in pairs])

    def _param(self, name: str) -> torch.Tensor:
        try:
            return self.model.get_parameter(name)
        except AttributeError:
            raise LotteryError(f"the model has no parameter {name!r} any more, but the masks cover it; "
                               "build a new MaskManager for the changed model") from None

    def _follow_model(self) -> None:
        """The model moved or its parameters were replaced: cache the current parameters, move the masks along."""
        params = [self._param(n) for n in self.names]
        if all(p is q and p.device == m.device and p.dtype == m.dtype for p, q, m in zip(params, self._params, self._masks)):
            self._seen = _registrations[0]  # someone else's parameter was registered: nothing to do
            return
        for n, p in zip(self.names, params):
            if tuple(p.shape) != tuple(self.masks[n].shape):
                raise LotteryError(f"parameter {n!r} was replaced by one of shape {tuple(p.shape)}, but its mask has "
                                   f"shape {tuple(self.masks[n].shape)}; build a new MaskManager for the changed model")
        self.masks = {n: self.masks[n].to(p.device) for n, p in zip(self.names, params)}
        self._bind()

    # -- pruning ------------------------------------------------------------------------------
    def prune(self, fraction: float, strategy: str | Strategy = "global_magnitude",
              generator: torch.Generator | None = None) -> None:
        """Remove `fraction` of the remaining weights (times each tensor's rate), then apply the masks; with a structured
        strategy, `fraction` of the remaining units of each tensor (its output layer's classes are never removed)."""
        if not 0.0 < _number(fraction, "fraction") < 1.0:
            raise LotteryError(f"fraction must be in (0, 1), got {fraction}: it is the share of the remaining weights removed")
        self._count_as(self._strategy(strategy))
        self.prune_to({n: d * (1.0 - min(1.0, fraction * self.rates[n])) for n, d in self.density.items()},
                      strategy, generator)

    def prune_to(self, density: Mapping[str, float], strategy: str | Strategy = "global_magnitude",
                 generator: torch.Generator | None = None) -> None:
        """Prune each tensor to `density` (its fraction of the full tensor kept), e.g. in one shot.

        strategy: a name in lottery.core.pruning.STRATEGIES, or a strategy record (with the options it prunes with).
        A density above a tensor's current one keeps it as it is: masks only shrink. A structured strategy's densities
        count units (the rows of each tensor kept), and `density` then holds the units it left."""
        fn = self._strategy(strategy)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise LotteryError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        density = self._check_density(density, "density")
        if refusal := getattr(self.model, REFUSES_PRUNING, None):
            raise LotteryError(refusal)
        if fn.needs_model and self.input_shape is None:
            raise LotteryError(f"strategy {fn.name} traces the model: build the MaskManager with input_shape=(C, H, W), "
                               "the shape of one input")
        self._follow_model()
        self._count_as(fn)
        self.density = {n: min(self.density[n], density[n]) for n in self.names}
        weights = {n: self._param(n) for n in self.names}
        network = Network(self.model, self.input_shape)
        # Tensors with their own rate are ranked on their own; the rest share one global ranking.
        shared = [n for n in self.names if self.rates[n] == 1.0]
        groups = [shared] + [[n] for n in self.names if self.rates[n] != 1.0] if fn.ranks_globally else [self.names]
        for group in [g for g in groups if g]:
            new = fn({n: weights[n] for n in group}, {n: self.masks[n] for n in group},
                     {n: self.density[n] for n in group}, generator, network)
            for n in group:
                self.masks[n].copy_(new[n] & self.masks[n])
        if fn.structured:  # the units it left: a tensor it cannot remove units of (the output layer) keeps all of its
            self.density = unit_density(self.masks)
        self._bind()
        self.apply()

    @staticmethod
    def _strategy(strategy) -> Strategy:
        return strategy if isinstance(strategy, Strategy) else get_strategy(strategy if isinstance(strategy, str) else repr(strategy))

    def _count_as(self, strategy: Strategy) -> None:
        """Densities in what `strategy` counts (units for a structured one, else weights), from the masks if the
        last pruning counted the other."""
        counts = "units" if strategy.structured else "weights"
        if counts != self.counting:
            self.density, self.counting = COUNTS[counts](self.masks), counts

    def densities(self, counts: str = "weights") -> dict[str, float]:
        """Each tensor's density as the masks have it, in weights or in units (`COUNTS`). Synchronises with the device."""
        return COUNTS[counts](self.masks)

    # -- reports ------------------------------------------------------------------------------
    def counts(self) -> dict[str, tuple[int, int]]:
        """(surviving, total) weights per tensor. Synchronises with the device: not for the hot path."""
        return {n: (int(m.sum()), m.numel()) for n, m in self.masks.items()}

    def sparsity(self, per_layer: bool = False) -> float | dict[str, float]:
        """Fraction of prunable weights removed, globally or per tensor. Synchronises with the device."""
        if per_layer:
            return {n: 1.0 - d for n, d in layer_density(self.masks).items()}
        return 1.0 - density(self.masks)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
                "density": dict(self.density), "rates": dict(self.rates), "counts": self.counting}

    def load_state_dict(self, state: Mapping) -> None:
        """Load masks saved by `state_dict`; names and shapes must fit this model."""
        masks = state.get("masks", state) if isinstance(state, Mapping) else None
        if not isinstance(masks, Mapping):
            raise LotteryError("not a MaskManager state: expected a dict with a 'masks' mapping")
        density = self._check_density(state["density"], "the state's density") if state.get("density") else None
        counts = state.get("counts", "weights")
        if counts not in COUNTS:
            raise LotteryError(f"the state's densities count {counts!r}; a MaskManager's count one of {', '.join(COUNTS)}")
        if density is not None:  # checked against the masks before anything changes
            self._check_masks(masks)
            size = (lambda m: m.numel()) if counts == "weights" else (lambda m: m.shape[0] if m.dim() else 1)
            has = COUNTS[counts]({n: masks[n].to(torch.bool) for n in self.names})
            kept = sum(has[n] * size(masks[n]) for n in self.names)
            target = sum(d * size(masks[n]) for n, d in density.items())
            if abs(kept - target) > len(self.names):  # targets are met within one weight (or unit) per tensor
                raise LotteryError(f"the state's density targets ({target:.0f} {counts} kept) contradict its masks "
                                   f"({kept:.0f} kept): the two come from different runs or levels")
        self.set_masks(masks)
        if density is not None:  # the exact targets, so that later levels keep (1 - fraction)^k
            self.density, self.counting = density, counts

    def _check_density(self, density, what: str) -> dict[str, float]:
        if not isinstance(density, Mapping):
            raise LotteryError(f"{what} must be a dict {{parameter name: fraction kept}}, got {type(density).__name__}")
        missing, unexpected = set(self.names) - set(density), set(density) - set(self.names)
        if missing or unexpected:
            raise LotteryError(f"{what} does not fit the masks: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        out = {n: _number(density[n], f"{what}[{n!r}]") for n in self.names}
        if bad := {n: d for n, d in out.items() if not 0.0 <= d <= 1.0}:
            raise LotteryError(f"{what} must be fractions kept in [0, 1], got {bad}")
        return out

    def _check_masks(self, masks: Mapping) -> None:
        missing, unexpected = set(self.names) - set(masks), set(masks) - set(self.names)
        if missing or unexpected:
            raise LotteryError(f"the masks do not fit this model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for n in self.names:
            m = masks[n]
            if not isinstance(m, torch.Tensor):
                raise LotteryError(f"mask {n!r} must be a tensor, got {type(m).__name__}")
            if m.dtype != torch.bool and not ((m == 0) | (m == 1)).all():
                raise LotteryError(f"mask {n!r} holds values other than 0 and 1 ({m.dtype}); masks are boolean")

    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Replace the masks (checked against this model's names and shapes) and apply them."""
        if not isinstance(masks, Mapping):
            raise LotteryError(f"masks must be a dict {{parameter name: bool tensor}}, got {type(masks).__name__}")
        self._check_masks(masks)
        for n in self.names:
            if tuple(masks[n].shape) != tuple(self.masks[n].shape):
                raise LotteryError(f"mask {n!r} has shape {tuple(masks[n].shape)} but the parameter has "
                                   f"{tuple(self.masks[n].shape)}: the masks come from a different architecture")
        self.masks = {n: masks[n].to(device=self._param(n).device, dtype=torch.bool).clone() for n in self.names}
        self.density, self.counting = layer_density(self.masks), "weights"
        self._bind()
        self.apply()

    def replace_masks(self, masks: Mapping[str, torch.Tensor], density: Mapping[str, float] | None = None) -> None:
        """Masks a method computed while training (lottery.sparsity.updaters): the same names, shapes and device,
        bool; taken without checks or host synchronisation, then applied. `density`: the new target per tensor."""
        self.masks = {n: masks[n] for n in self.names}
        if density is not None:
            self.density, self.counting = {n: float(density[n]) for n in self.names}, "weights"
        self._bind()
        self.apply()

    def __repr__(self) -> str:
        return f"MaskManager({len(self.names)} tensors, sparsity={self.sparsity():.4f})"
