"""Pruning strategies: pure functions (weights, masks, density, generator) -> new masks.

`density` maps each tensor name to the fraction of its weights to keep *after* this call,
counted against the full tensor (not against the survivors), so that the density after
k levels is (1 - fraction)^k within one weight, however many levels were run.
A strategy only ever removes weights: pruned weights score -inf and are never chosen again.
Each is a record (lottery.core.methods.Strategy) with whether it ranks all tensors together; `STRATEGIES` is the
live view of them in the one registry of methods, which packages add to (`lottery.register`). The structured
strategies (whole units, their densities counted in units, the model traced) are lottery.structured.criteria's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from lottery.core.errors import LotteryError
from lottery.core.methods import METHODS, Strategy, register

Masks = dict[str, torch.Tensor]
Select = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor], Mapping[str, float], "torch.Generator | None"], Masks]


def keep_top(scores: torch.Tensor, masks: list[torch.Tensor], keep: int) -> list[torch.Tensor]:
    """Keep the `keep` highest scores among the surviving entries of the concatenated masks."""
    flat_mask = torch.cat([m.flatten() for m in masks])
    keep = min(keep, int(flat_mask.sum()))  # masks only shrink
    scores = scores.masked_fill(~flat_mask, float("-inf"))
    new_flat = torch.zeros_like(flat_mask)
    # topk keeps exactly `keep` entries (a threshold would keep every tie); deterministic on the CPU.
    new_flat[torch.topk(scores, keep, sorted=False).indices] = True
    return list(torch.split(new_flat, [m.numel() for m in masks]))


def select_top(scores: Masks, masks: Mapping[str, torch.Tensor], density: Mapping[str, float], scope: str) -> Masks:
    """Keep the top-scoring survivors, per tensor (scope "layer") or across all tensors ("global"): each tensor, or
    all of them together, keeps round(numel x density) weights. Any scores: strategies and one-shot pruners use it."""
    device = {n: m.device for n, m in masks.items()}
    masks = {n: m.cpu() for n, m in masks.items()}
    names = list(masks)
    groups = [names] if scope == "global" else [[n] for n in names]
    new: Masks = {}
    for group in groups:
        keep = round(sum(masks[n].numel() * density[n] for n in group))
        flat_scores = torch.cat([scores[n].flatten().float() for n in group])
        kept = keep_top(flat_scores, [masks[n] for n in group], keep)
        for n, m in zip(group, kept):
            new[n] = m.view_as(masks[n]).to(device[n])
    return new


def _magnitude_scores(weights: Mapping[str, torch.Tensor]) -> Masks:
    return {n: w.detach().abs().cpu() for n, w in weights.items()}


def _random_scores(weights: Mapping[str, torch.Tensor], generator: torch.Generator | None) -> Masks:
    # Drawn on the CPU so that the same seed gives the same mask on any device.
    return {n: torch.rand(w.shape, generator=generator) for n, w in weights.items()}


def global_magnitude(weights, masks, density, generator=None) -> Masks:
    """Remove the smallest-magnitude weights ranked across all tensors together (Frankle et al. 2020)."""
    return select_top(_magnitude_scores(weights), masks, density, "global")


def layer_magnitude(weights, masks, density, generator=None) -> Masks:
    """Remove the smallest-magnitude weights of each tensor separately (Frankle & Carbin 2019)."""
    return select_top(_magnitude_scores(weights), masks, density, "layer")


def global_random(weights, masks, density, generator=None) -> Masks:
    """Remove surviving weights uniformly at random across all tensors (the random-pruning control)."""
    return select_top(_random_scores(weights, generator), masks, density, "global")


def layer_random(weights, masks, density, generator=None) -> Masks:
    """Remove surviving weights uniformly at random within each tensor."""
    return select_top(_random_scores(weights, generator), masks, density, "layer")


def _top_n_of_m(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask of the `n` highest scores in each group of `m` consecutive entries of each row.

    Rows are those of the (out, in * kernel) weight matrix, the layout 2:4 sparse kernels compress.
    """
    rows = scores.reshape(scores.shape[0], -1) if scores.dim() > 1 else scores.reshape(1, -1)
    width = rows.shape[1]
    padded = torch.nn.functional.pad(rows, (0, -width % m), value=float("-inf")).view(rows.shape[0], -1, m)
    top = torch.zeros_like(padded, dtype=torch.bool)
    top.scatter_(2, torch.topk(padded, min(n, m), dim=2).indices, True)
    return top.view(rows.shape[0], -1)[:, :width].reshape(scores.shape)


@dataclass(frozen=True)
class NMOptions:
    """The pattern of nm_magnitude: at most `n` nonzeros in every `m` consecutive weights of a row."""

    n: int = 2  # 2:4 is what NVIDIA's sparse tensor cores (Ampere and later) accelerate
    m: int = 4

    def __post_init__(self):
        if not 0 < self.n < self.m:
            raise LotteryError(f"an N:M pattern needs 0 < N < M, got methods.nm_magnitude.n={self.n}, m={self.m}")


def nm_magnitude(weights, masks, density, generator, options: NMOptions) -> Masks:
    """Magnitude pruning of each tensor towards an N:M pattern (at most `n` nonzeros in every `m`).

    Keeps the density contract: while `density` >= n/m each group's `n` largest survivors stay and the
    rest are ranked by magnitude within the tensor; at or below n/m only those survivors compete, so
    the mask fits the pattern from then on (2:4 by default: what `to_sparse_semi_structured` accelerates,
    Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks").
    """
    new: Masks = {}
    for name, w in weights.items():
        mask = masks[name].cpu()
        score = w.detach().abs().cpu().float().masked_fill(~mask, float("-inf"))
        top = _top_n_of_m(score, options.n, options.m) & mask
        keep, protected = round(mask.numel() * density[name]), int(top.sum())
        flat = score.flatten()
        if keep >= protected:
            kept = keep_top(flat, [(mask & ~top).flatten()], keep - protected)[0].view_as(mask) | top
        else:
            kept = keep_top(flat, [top.flatten()], keep)[0].view_as(mask)
        new[name] = kept.to(masks[name].device)
    return new


def make_nm_magnitude(n: int = 2, m: int = 4) -> Select:
    """nm_magnitude with the pattern n:m, as a plain strategy function (weights, masks, density, generator)."""
    options = NMOptions(n, m)
    return lambda weights, masks, density, generator=None: nm_magnitude(weights, masks, density, generator, options)


for _record in (
    Strategy(name="global_magnitude", select=global_magnitude, ranks_globally=True,
             summary="the smallest-magnitude weights of all tensors ranked together (Frankle et al. 2020)"),
    Strategy(name="layer_magnitude", select=layer_magnitude,
             summary="the smallest-magnitude weights of each tensor (Frankle & Carbin 2019)"),
    Strategy(name="global_random", select=global_random, ranks_globally=True,
             summary="surviving weights at random, across all tensors together (the random-pruning control)"),
    Strategy(name="layer_random", select=layer_random, summary="surviving weights at random, within each tensor"),
    Strategy(name="nm_magnitude", select=nm_magnitude, options=NMOptions,
             summary="magnitude within each tensor towards an N:M pattern (2:4 by default; Mishra et al. 2021)"),
):
    register(_record)

STRATEGIES = METHODS.of(Strategy)  # the records above and every strategy a package registers


def get_strategy(name: str) -> Strategy:
    """Look a strategy up by name, with an error that lists the valid names."""
    return STRATEGIES.lookup(name)
