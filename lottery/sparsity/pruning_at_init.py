"""Pruning at initialisation: score every prunable weight before training and keep the best.

The baselines compared by Frankle, Dziugaite, Roy & Carbin (2021), "Pruning Neural Networks at
Initialization: Why Are We Missing the Mark?" (Section 3): magnitude, SNIP (Lee et al. 2019),
GraSP (Wang et al. 2020) and SynFlow (Tanaka et al. 2020), plus random pruning. Each of the four is a branch
(magnitude_init, snip, grasp, synflow; lottery.core.methods.OneShot records, at the end of this module): pruned at
each IMP level's density from the initial weights, then trained for the whole schedule.

Scores are computed on detached copies of the parameters and buffers, fed to the model with
`torch.func.functional_call`: the model's weights, BatchNorm statistics and `.grad` are never
touched, so only the masks change. Scoring runs with the model in eval mode (restored after), so
BatchNorm uses its running statistics and dropout is off: scores are deterministic. This follows
the default of the SynFlow reference code (`prune_loop(train_mode=False)`).
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lottery.core.errors import LotteryError, Registry
from lottery.core.masks import MaskManager
from lottery.core.methods import OneShot, register
from lottery.core.pruning import keep_top

Scores = dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]
Scorer = Callable[..., Scores]

GRASP_TEMPERATURE = 200.0  # softmax temperature T of the official GraSP code (pruner/GraSP.py)
SYNFLOW_ITERATIONS = 100  # pruning rounds used by Tanaka et al. (2020) in their experiments


@contextmanager
def _eval_mode(model: nn.Module):
    """Eval mode for the duration, then each module's own training flag back."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _state(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies of every parameter and buffer, prunable weights times their current mask."""
    state = {}
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        t = t.detach().clone()
        state[name] = t * masks[name].to(t.device) if name in masks else t
    return state


def _forward(model: nn.Module, state: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with _eval_mode(model):
        return functional_call(model, dict(state), (x,))


def _leaves(state: dict[str, torch.Tensor], names: Iterable[str]) -> list[torch.Tensor]:
    """Make the prunable weights of `state` leaves that autograd differentiates against."""
    return [state[n].requires_grad_(True) for n in names]


def _loss_grads(model, state, weights, batches: Sequence[Batch], temperature: float = 1.0,
                create_graph: bool = False) -> list[list[torch.Tensor]]:
    """Per batch, the cross-entropy gradient with respect to `weights`."""
    device = weights[0].device
    out = []
    for x, y in batches:
        loss = F.cross_entropy(_forward(model, state, x.to(device)) / temperature, y.to(device))
        out.append(list(torch.autograd.grad(loss, weights, create_graph=create_graph, materialize_grads=True)))
    return out


def _summed(per_batch: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [torch.stack(gs).sum(0) for gs in zip(*per_batch)]


def magnitude_scores(model, masks, batches=None, input_shape=None, generator=None) -> Scores:
    """|w| at initialisation (the magnitude baseline of Frankle et al. 2021, Section 3)."""
    state = _state(model, masks)
    return {n: state[n].abs() for n in masks}


def random_scores(model, masks, batches=None, input_shape=None, generator=None) -> Scores:
    """Uniform noise: random pruning. Drawn on the CPU so a seed gives the same mask on any device."""
    return {n: torch.rand(m.shape, generator=generator) for n, m in masks.items()}


def snip_scores(model, masks, batches, input_shape=None, generator=None) -> Scores:
    """|g ⊙ w|, connection sensitivity on a cross-entropy loss (Lee et al. 2019, Section 4.1)."""
    state = _state(model, masks)
    weights = _leaves(state, masks)
    grads = _summed(_loss_grads(model, state, weights, batches))
    return {n: (g * w).abs().detach() for n, w, g in zip(masks, weights, grads)}


def grasp_scores(model, masks, batches, input_shape=None, generator=None,
                 temperature: float = GRASP_TEMPERATURE) -> Scores:
    """w ⊙ Hg, oriented so that the HIGHEST scores are kept (Wang et al. 2020, Section 4).

    Sign: the paper scores S(-w) = -w ⊙ Hg and *removes* the weights with the top scores
    (Algorithm 1: tau = the (1-p) percentile of S, mask = S < tau); the official code does the same
    (github.com/alecwangcq/GraSP, pruner/GraSP.py: `-layer.weight.data * layer.weight.grad`, then
    `keep_masks = scores <= acceptable_score` where the threshold is the top-k of the removed
    share). Keeping the highest w ⊙ Hg is the same mask; it is also what the SynFlow code does
    (ganguli-lab/Synaptic-Flow, Pruners/pruners.py: `p.grad * p.data`, "negate to remove top
    percent").
    g is detached and H g is the gradient of g·∇L (a Hessian-vector product), as in the official code.
    """
    state = _state(model, masks)
    weights = _leaves(state, masks)
    g = [t.detach() for t in _summed(_loss_grads(model, state, weights, batches, temperature))]
    hg = [torch.zeros_like(w) for w in weights]
    for grads in _loss_grads(model, state, weights, batches, temperature, create_graph=True):
        z = sum((gi * fi).sum() for gi, fi in zip(g, grads))
        for acc, h in zip(hg, torch.autograd.grad(z, weights, materialize_grads=True)):
            acc += h
    return {n: (w * h).detach() for n, w, h in zip(masks, weights, hg)}


def synflow_scores(model, masks, batches=None, input_shape=None, generator=None) -> Scores:
    """|w ⊙ dR/dw| with R = sum(f(1; |w|)), data-free (Tanaka et al. 2020, Section 6, Algorithm 1).

    Every floating parameter and buffer is replaced by its absolute value, as `linearize` does in
    the reference code; here on copies, so no sign has to be restored. Computed in float64: R is a
    product over layers and overflows float32 in deep networks.
    """
    if input_shape is None:
        raise LotteryError("synflow needs input_shape=(C, H, W) of one example (or batches to read it from)")
    state = {n: t.abs().double() if t.is_floating_point() else t for n, t in _state(model, masks).items()}
    weights = _leaves(state, masks)
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=weights[0].device)
    r = _forward(model, state, ones).sum()
    grads = torch.autograd.grad(r, weights, materialize_grads=True)
    return {n: (w * g).abs().detach() for n, w, g in zip(masks, weights, grads)}


PAI_METHODS: Registry[Scorer] = Registry("pruning-at-init method", {
    "magnitude": magnitude_scores,
    "random": random_scores,
    "snip": snip_scores,
    "grasp": grasp_scores,
    "synflow": synflow_scores,
})
DATA_METHODS = {"snip", "grasp"}  # the methods that need labelled batches


def _keep_global(scores: Scores, masks: Mapping[str, torch.Tensor], density: float) -> dict[str, torch.Tensor]:
    """Keep the top `density` share of all prunable weights, among the survivors only."""
    names = list(masks)
    keep = round(sum(masks[n].numel() for n in names) * density)
    # float64, not pruning.select_top (which casts to float32): SynFlow scores can exceed its range.
    flat = torch.cat([scores[n].detach().double().cpu().flatten() for n in names])
    if torch.isnan(flat).any():
        raise LotteryError("pruning-at-init scores contain NaN: check the model's outputs on the scoring batches")
    kept = keep_top(flat, [masks[n] for n in names], keep)
    return {n: k.view_as(masks[n]) & masks[n] for n, k in zip(names, kept)}


def _check(method: str, density: float, batches, iterations: int) -> None:
    if not 0.0 < density <= 1.0:
        raise LotteryError(f"density must be in (0, 1], got {density}: it is the fraction of prunable weights kept")
    if method in DATA_METHODS and batches is None:
        raise LotteryError(f"{method} scores weights with a loss on data: pass batches=[(inputs, labels), ...]")
    if iterations < 1:
        raise LotteryError(f"iterations must be >= 1, got {iterations}")


def prune_at_init(method: str, model: nn.Module, masks: MaskManager, density: float,
                  batches: Iterable[Batch] | None = None, iterations: int | None = None,
                  generator: torch.Generator | None = None,
                  input_shape: Sequence[int] | None = None) -> None:
    """Keep the global `density` share of `masks`' prunable weights by `method`'s scores, in place.

    Args:
        iterations: rounds of scoring and pruning, to density**(k/iterations) in round k
            (Tanaka et al. 2020, Algorithm 1); default 100 for synflow, 1 otherwise.
        input_shape: one example's shape, e.g. (3, 32, 32), for synflow; read from `batches` if omitted.
    """
    scorer = PAI_METHODS.lookup(method)
    iterations = iterations if iterations is not None else (SYNFLOW_ITERATIONS if method == "synflow" else 1)
    _check(method, density, batches, iterations)
    batches = list(batches) if batches is not None else None  # GraSP and later rounds reuse them
    if input_shape is None and batches:
        input_shape = tuple(batches[0][0].shape[1:])
    current = {n: m.detach().cpu().clone() for n, m in masks.masks.items()}
    for k in range(1, iterations + 1):
        scores = scorer(model, current, batches, input_shape, generator)
        current = _keep_global(scores, current, density ** (k / iterations))
    masks.set_masks(current)  # applies the masks and records the per-tensor densities reached


def _branch_pruner(scorer: str):
    """The OneShot record's `prune` of pruning at initialisation by `scorer` (a name in PAI_METHODS)."""
    def prune(model: nn.Module, masks: MaskManager, density: float, calibration, generator) -> None:
        prune_at_init(scorer, model, masks, density, batches=calibration.batches, generator=generator,
                      input_shape=calibration.input_shape)
    return prune


for _name, _scorer, _label, _summary in (
    ("magnitude_init", "magnitude", "magnitude at init", "the largest weights at initialisation, all tensors ranked together"),
    ("snip", "snip", "SNIP", "connection sensitivity |w x dL/dw| on ten examples per class (Lee et al. 2019)"),
    ("grasp", "grasp", "GraSP", "keep the gradient flow: -w x Hg on ten examples per class (Wang et al. 2020)"),
    ("synflow", "synflow", "SynFlow", "iterative synaptic flow, no data, 100 rounds (Tanaka et al. 2020)"),
):
    register(OneShot(name=_name, prune=_branch_pruner(_scorer), weights="init", label=_label, summary=_summary,
                     samples_per_class=10 if _scorer in DATA_METHODS else 0))
