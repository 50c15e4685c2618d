"""MaskManager: one boolean mask per prunable tensor, applied in place on the parameters' device.

It is the only code that writes the zeros. Works with any `nn.Module`, in a plain loop:

    masks = MaskManager(model)
    masks.prune(0.2)                       # remove 20% of the remaining weights
    loss.backward(); opt.step(); masks.apply()
"""
from __future__ import annotations

import fnmatch
from typing import Iterable, Mapping

import torch
from torch import nn

from lottery.errors import LotteryError
from lottery.lanes import LaneConv2d, LaneLinear, LaneNet
from lottery.pruning import GLOBAL_STRATEGIES, get_strategy

PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, LaneLinear, LaneConv2d)


def default_prunable(model: nn.Module) -> list[str]:
    """The `weight` of every Linear and Conv layer; biases, norms and embeddings stay dense."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules() if isinstance(m, PRUNABLE_MODULES)]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class MaskManager:
    """Owns the masks of `model`'s prunable parameters and keeps pruned weights exactly zero.

    Args:
        model: any module; masks follow its parameters to whatever device they move.
        include: parameter names (`fnmatch` patterns) to prune; default: Conv/Linear weights.
        exclude: patterns removed from `include`, e.g. ``["fc3.weight"]``.
        rates: per-tensor multipliers of the pruning fraction (patterns allowed), e.g.
            ``{"fc3.weight": 0.5}`` prunes the output layer at half the rate (Frankle & Carbin 2019).
    """

    def __init__(self, model: nn.Module, include: Iterable[str] | None = None,
                 exclude: Iterable[str] = (), rates: Mapping[str, float] | None = None):
        self.model = model
        params = dict(model.named_parameters())
        names = default_prunable(model) if include is None else [n for n in params if _matches(n, include)]
        if include is not None and not names:
            raise LotteryError(f"include={list(include)} matches no parameter of {type(model).__name__}; "
                               f"names look like {list(params)[:4]}")
        exclude = list(exclude)
        self.names = [n for n in names if not _matches(n, exclude)]
        if not self.names:
            raise LotteryError(f"no prunable parameters left in {type(model).__name__} after exclude={exclude}")
        self.rates = {n: 1.0 for n in self.names}
        for pattern, rate in (rates or {}).items():
            hits = [n for n in self.names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise LotteryError(f"rate for {pattern!r} matches no prunable parameter; prunable: {self.names}")
            if rate < 0:
                raise LotteryError(f"rate for {pattern!r} must be >= 0, got {rate}")
            self.rates.update({n: float(rate) for n in hits})
        self.masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in self.names}
        self.density = {n: 1.0 for n in self.names}  # target density per tensor, see pruning.py
        self._bind()

    # -- the hot path -------------------------------------------------------------------------
    def _bind(self) -> None:
        """Cache the (parameter, mask) lists that `apply` hands to one fused kernel.

        The multiply uses copies of the masks in the parameters' dtype: with bool masks the CPU
        converts element by element (~9x slower, measured by experiments/bench_masks.py) and CUDA's
        fused foreach kernel, which needs equal dtypes, falls back to one kernel per tensor.
        """
        params = dict(self.model.named_parameters())
        self._params = [params[n] for n in self.names]
        self._masks = [self.masks[n].to(device=p.device, dtype=p.dtype) for n, p in zip(self.names, self._params)]

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights in place: one fused multiply, no host synchronisation."""
        first, mask = self._params[0], self._masks[0]
        if first.device != mask.device or first.dtype != mask.dtype:  # Python attribute checks, no sync
            self._follow_model()
        torch._foreach_mul_(self._params, self._masks)

    def _param(self, name: str) -> torch.Tensor:
        return self.model.get_parameter(name)

    def _follow_model(self) -> None:
        """The model moved (`.to(device)`) or its parameters were replaced: move the masks along."""
        self.masks = {n: m.to(self._param(n).device) for n, m in self.masks.items()}
        self._bind()

    # -- pruning ------------------------------------------------------------------------------
    def prune(self, fraction: float, strategy: str = "global_magnitude", generator: torch.Generator | None = None) -> None:
        """Remove `fraction` of the remaining weights (times each tensor's rate), then apply the masks."""
        if not 0.0 < fraction < 1.0:
            raise LotteryError(f"fraction must be in (0, 1), got {fraction}: it is the share of the remaining weights removed")
        self.prune_to({n: d * (1.0 - min(1.0, fraction * self.rates[n])) for n, d in self.density.items()},
                      strategy, generator)

    def prune_to(self, density: Mapping[str, float], strategy: str = "global_magnitude",
                 generator: torch.Generator | None = None) -> None:
        """Prune each tensor to `density` (its fraction of the full tensor kept), e.g. in one shot."""
        fn = get_strategy(strategy)
        if isinstance(self.model, LaneNet):
            # Ranking the stacked weights would mix the lanes' magnitudes: each run prunes its own model.
            raise LotteryError("a MaskManager over a LaneNet applies masks but does not prune: prune each run's "
                               "own MaskManager, then set_masks(stack_masks([...])) on this one")
        self._follow_model()
        self.density = {n: min(self.density[n], float(density[n])) for n in self.names}
        weights = {n: self._param(n) for n in self.names}
        # Tensors with their own rate are ranked on their own; the rest share one global ranking.
        shared = [n for n in self.names if self.rates[n] == 1.0]
        groups = [shared] + [[n] for n in self.names if self.rates[n] != 1.0] if strategy in GLOBAL_STRATEGIES else [self.names]
        for group in [g for g in groups if g]:
            new = fn({n: weights[n] for n in group}, {n: self.masks[n] for n in group},
                     {n: self.density[n] for n in group}, generator)
            for n in group:
                self.masks[n].copy_(new[n] & self.masks[n])
        self._bind()
        self.apply()

    # -- reports ------------------------------------------------------------------------------
    def counts(self) -> dict[str, tuple[int, int]]:
        """(surviving, total) weights per tensor. Synchronises with the device: not for the hot path."""
        return {n: (int(m.sum()), m.numel()) for n, m in self.masks.items()}

    def sparsity(self, per_layer: bool = False) -> float | dict[str, float]:
        """Fraction of prunable weights removed, globally or per tensor."""
        counts = self.counts()
        if per_layer:
            return {n: 1.0 - kept / total for n, (kept, total) in counts.items()}
        return 1.0 - sum(k for k, _ in counts.values()) / sum(t for _, t in counts.values())

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"masks": {n: m.detach().cpu().clone() for n, m in self.masks.items()},
                "density": dict(self.density), "rates": dict(self.rates)}

    def load_state_dict(self, state: Mapping) -> None:
        """Load masks saved by `state_dict`; names and shapes must fit this model."""
        masks = state.get("masks", state) if isinstance(state, Mapping) else None
        if not isinstance(masks, Mapping):
            raise LotteryError("not a MaskManager state: expected a dict with a 'masks' mapping")
        self.set_masks(masks)
        if state.get("density"):  # the exact targets, so that later levels keep (1 - fraction)^k
            self.density = {n: float(state["density"][n]) for n in self.names}

    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Replace the masks (checked against this model's names and shapes) and apply them."""
        missing, unexpected = set(self.names) - set(masks), set(masks) - set(self.names)
        if missing or unexpected:
            raise LotteryError(f"the masks do not fit this model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for n in self.names:
            if tuple(masks[n].shape) != tuple(self.masks[n].shape):
                raise LotteryError(f"mask {n!r} has shape {tuple(masks[n].shape)} but the parameter has "
                                   f"{tuple(self.masks[n].shape)}: the masks come from a different architecture")
        self.masks = {n: masks[n].to(device=self._param(n).device, dtype=torch.bool).clone() for n in self.names}
        self.density = {n: int(m.sum()) / m.numel() for n, m in self.masks.items()}
        self._bind()
        self.apply()

    def __repr__(self) -> str:
        return f"MaskManager({len(self.names)} tensors, sparsity={self.sparsity():.4f})"
