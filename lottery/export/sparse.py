"""Sparse kernels where they pay: each Linear layer becomes CSR (CPU) or 2:4 semi-structured (CUDA
sm80+) only where that measured faster than dense on this machine, for this batch and thread count.

The choice is a property of the machine, not of the ticket: `sparsify` returns an in-memory model
(sparse tensors do not go into safetensors); run it where the model will serve.
"""
from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import nn


class CSRLinear(nn.Module):
    """A Linear layer whose weight is a torch.sparse CSR matrix (inference only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR tensor support is in beta state"
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.mm(self.weight, flat.t()).t()  # sparse @ dense: the sparse operand goes first
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class SemiStructuredLinear(nn.Module):
    """A Linear layer with a 2:4 semi-structured weight (CUDA sm80+, fp16/bf16; inference only)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.weight = nn.Parameter(to_sparse_semi_structured(linear.weight.detach()), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def is_n_m(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True when every group of `m` consecutive weights along the rows holds at most `n` nonzeros."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    return rows.shape[1] % m == 0 and bool(rows.ne(0).view(rows.shape[0], -1, m).sum(2).le(n).all())


def semi_structured_ok(linear: nn.Linear) -> bool:
    w = linear.weight
    return (w.is_cuda and torch.cuda.get_device_capability(w.device) >= (8, 0)
            and w.dtype in (torch.float16, torch.bfloat16) and is_n_m(w))


def candidates(linear: nn.Linear) -> dict[str, type]:
    if linear.weight.is_cuda:
        return {"2:4": SemiStructuredLinear} if semi_structured_ok(linear) else {}
    return {"csr": CSRLinear}


def _time(module: nn.Module, x: torch.Tensor, threads: int) -> float:
    from torch.utils import (
        benchmark,  # imported here: it loads torch's C++ extension machinery
    )

    timer = benchmark.Timer("module(x)", globals={"module": module, "x": x}, num_threads=threads)
    with torch.no_grad():
        return timer.blocked_autorange(min_run_time=0.05).median


@torch.no_grad()
def sparsify(model: nn.Module, example_input: torch.Tensor, threads: int | None = None, min_speedup: float = 1.1,
             log=print) -> tuple[nn.Module, dict[str, str]]:
    """A copy of `model` (eval) with each Linear replaced by its sparse kernel where measured faster.

    Timed on the layer's real input for `example_input` (its batch size matters) with `threads`
    threads (default: torch's current setting); a sparse kernel must beat dense by `min_speedup`
    (a margin against timing noise). Returns the model and {layer: "dense"|"csr"|"2:4"}.
    """
    model = copy.deepcopy(model).eval()
    threads = threads or torch.get_num_threads()
    inputs, hooks = {}, []

    def keep_input(name):
        def hook(module, args):  # a pre-hook that returns None leaves the call unchanged
            inputs[name] = args[0]
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_pre_hook(keep_input(name)))
    model(example_input)
    for hook in hooks:
        hook.remove()
    choice = {}
    for name, x in inputs.items():
        layer = model.get_submodule(name)
        times = {"dense": _time(layer, x, threads)}
        kernels = {kind: cls(layer) for kind, cls in candidates(layer).items()}
        times.update({kind: _time(kernel, x, threads) for kind, kernel in kernels.items()})
        fastest = min(times, key=times.get)
        choice[name] = fastest if times["dense"] >= min_speedup * times[fastest] else "dense"
        if choice[name] != "dense":
            model.set_submodule(name, kernels[choice[name]])
        density = layer.weight.ne(0).float().mean().item()
        log(f"  {name:24s} density {density:6.2%}  " + "  ".join(f"{k} {t * 1e6:8.1f} us" for k, t in times.items())
            + f"  -> {choice[name]}")
    return model, choice
