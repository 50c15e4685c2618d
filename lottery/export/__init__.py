"""Deploy a ticket: formats that are really smaller (and faster where the hardware allows).

Works on any model with a MaskManager (or plain zeros in its weights), not only on lottery runs:

    from lottery.export import export, load_compact, shrink, sparsify
    export(model, "compact", "model.safetensors", masks=manager)             # values + bit-packed mask
    export(model, "shrunk", "model.pt2", masks=manager, example_input=x)     # dead units removed
    export(model, "onnx", "model.onnx", masks=manager, example_input=x)      # shrunk, for onnxruntime
    fast, choice = sparsify(model, x)                                        # CSR / 2:4 where measured faster

The research ticket (`lottery.save_ticket`) is the fourth format; `export_ticket` turns one into the others.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lottery.errors import LotteryError
from lottery.export.compact import Compact, load_compact, save_compact
from lottery.export.onnx import run_onnx, save_onnx
from lottery.export.shrink import ShrinkReport, save_shrunk, shrink
from lottery.export.source import export_ticket, model_from_ticket
from lottery.export.sparse import CSRLinear, SemiStructuredLinear, sparsify

FORMATS = ("compact", "shrunk", "onnx")

__all__ = ["FORMATS", "export", "save_compact", "load_compact", "Compact", "shrink", "save_shrunk", "ShrinkReport",
           "save_onnx", "run_onnx", "sparsify", "CSRLinear", "SemiStructuredLinear", "model_from_ticket",
           "export_ticket"]


def export(model: nn.Module, fmt: str, out: str | os.PathLike, masks=None, example_input: torch.Tensor | None = None,
           dtype: str = "fp32", metadata: dict | None = None, log=print) -> Path:
    """Write `model` (pruned by `masks`) to `out` in format `fmt` ("compact", "shrunk" or "onnx").

    `example_input` (a batch of the model's inputs) is needed by "shrunk" and "onnx"; `dtype`
    ("fp32", "fp16", "bf16") by "compact" only.
    """
    if fmt not in FORMATS:
        raise LotteryError(f"unknown export format {fmt!r}; choose one of: ticket, {', '.join(FORMATS)}")
    if fmt != "compact" and dtype != "fp32":
        raise LotteryError(f"dtype={dtype!r} applies to the compact format only, not to {fmt!r}")
    if fmt == "compact":
        return save_compact(model, out, masks, dtype, metadata)
    if example_input is None:
        raise LotteryError(f"the {fmt} export needs example_input, a batch of inputs of the model's shape")
    if fmt == "shrunk":
        return save_shrunk(model, example_input, out, masks, log=log)[0]
    return save_onnx(model, example_input, out, masks, log=log)
