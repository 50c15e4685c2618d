"""Wanda: one-shot pruning by weights and activations (Sun, Liu, Bair & Kolter 2024, "A Simple and Effective
Pruning Approach for Large Language Models", Section 3).

The score of weight W_ij of a Linear layer is |W_ij| * ||X_j||_2, where ||X_j||_2 is the L2 norm of input feature
j over every token (row) of a few calibration batches; weights compete within each output row (each row keeps the
same share), which the paper finds better than comparing within a layer or across layers. No weight is updated.
Works on any model whose prunable weights are nn.Linear weights, in a plain loop:

    masks = MaskManager(model)
    wanda_prune(model, masks, density=0.5, batches=[x1, x2])   # inputs, as the model's forward takes them

Plain magnitude within rows is the same with the norms left out (`activations=False`), the paper's baseline.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.core.methods import OneShot, register


def _linear_of(model: nn.Module, name: str) -> nn.Linear:
    owner = model.get_submodule(name.rpartition(".")[0])
    if not isinstance(owner, nn.Linear) or name.rpartition(".")[2] != "weight":
        raise LotteryError(f"Wanda scores the weights of Linear layers; {name!r} is a {type(owner).__name__} "
                           "parameter: exclude it (prune.exclude) or use another criterion")
    return owner


@torch.no_grad()
def input_norms(model: nn.Module, names: Iterable[str], batches: Iterable) -> dict[str, torch.Tensor]:
    """||X_j||_2 over all calibration tokens, per input feature j of the Linear layer owning each weight `name`.

    batches: model inputs (a tensor, or an (inputs, targets) pair whose targets are ignored). Eval mode (no
    dropout) for the duration; the model's weights and buffers are not changed."""
    names = list(names)
    sums = {n: torch.zeros(_linear_of(model, n).in_features, dtype=torch.float64) for n in names}

    def hook(name):
        def add(module, inputs, output):
            x = inputs[0].detach().reshape(-1, module.in_features).double()
            sums[name] += x.pow(2).sum(0).cpu()
        return add

    hooks = [_linear_of(model, n).register_forward_hook(hook(n)) for n in names]
    training = model.training
    device = next(model.parameters()).device
    seen = 0
    try:
        model.eval()
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            seen += 1
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    if not seen:
        raise LotteryError("Wanda needs at least one calibration batch of inputs, got none")
    return {n: s.sqrt().float() for n, s in sums.items()}


def wanda_scores(model: nn.Module, names: Iterable[str], batches: Iterable, activations: bool = True
                 ) -> dict[str, torch.Tensor]:
    """|W_ij| * ||X_j||_2 for each weight `name` (activations=False: |W_ij|, plain magnitude), on the CPU."""
    names = list(names)
    params = dict(model.named_parameters())
    norms = input_norms(model, names, batches) if activations else {n: None for n in names}
    return {n: params[n].detach().abs().float().cpu() * (1 if norms[n] is None else norms[n][None, :]) for n in names}


def keep_per_row(scores: torch.Tensor, mask: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the round(density x columns) highest-scoring surviving entries of each row (masks only shrink)."""
    keep = round(density * scores.shape[1])
    mask = mask.to(device="cpu", dtype=torch.bool)
    if keep <= 0:
        return torch.zeros_like(mask)
    ranked = scores.masked_fill(~mask, float("-inf"))
    new = torch.zeros_like(mask)
    new.scatter_(1, torch.topk(ranked, keep, dim=1, sorted=False).indices, True)  # ties: topk's (deterministic)
    return new & mask


def wanda_prune(model: nn.Module, masks: MaskManager, density: float | Mapping[str, float], batches: Iterable,
                activations: bool = True) -> MaskManager:
    """Prune `masks`' tensors of `model` to `density` (one number, or one per tensor) by Wanda, within each output
    row, from the model's current weights; the masks are set and applied. Returns `masks`."""
    densities = {n: density for n in masks.names} if isinstance(density, (int, float)) else dict(density)
    if bad := {n: d for n, d in densities.items() if not 0.0 <= d <= 1.0}:
        raise LotteryError(f"Wanda densities must be fractions kept in [0, 1], got {bad}")
    scores = wanda_scores(model, masks.names, batches, activations)
    masks.set_masks({n: keep_per_row(scores[n], masks.masks[n], densities[n]).to(masks.masks[n].device)
                     for n in masks.names})
    return masks


def _check_linear(context) -> None:
    """Wanda and row magnitude score the rows of Linear weights: every prunable tensor must be one."""
    for name in context.masks.names:
        _linear_of(context.model, name)


def _rows_pruner(activations: bool):
    """The OneShot record's `prune`: Wanda (activations) or magnitude within each output row, to `density`."""
    def prune(model: nn.Module, masks: MaskManager, density: float, calibration, generator) -> None:
        wanda_prune(model, masks, density, calibration.batches if activations else [], activations=activations)
    return prune


register(OneShot(name="wanda", prune=_rows_pruner(True), weights="rewind", check=_check_linear,
                 samples_per_class=lambda classes: -(-128 // classes), label="Wanda (one-shot, rewind point)",
                 summary="|W| x input norm within each output row, 128 calibration examples (Sun et al. 2024)"))
register(OneShot(name="row_magnitude", prune=_rows_pruner(False), weights="rewind", check=_check_linear,
                 label="magnitude per row (one-shot, rewind point)",
                 summary="|W| within each output row of the rewind-point weights (Wanda's baseline)"))
