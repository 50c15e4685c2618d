"""`export(model, fmt, out)`: one call for every deployable format, checked before anything is written."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.export.compact import save_compact
from lottery.export.onnx import save_onnx
from lottery.export.shrink import save_shrunk

FORMATS = ("compact", "shrunk", "onnx", "hf", "supermask")


def export(model: nn.Module, fmt: str, out: str | os.PathLike, masks=None, example_input: torch.Tensor | None = None,
           dtype: str = "fp32", metadata: dict | None = None, log=print, tokenizer: str | None = None) -> Path:
    """Write `model` (pruned by `masks`) to `out` in format `fmt` ("compact", "shrunk", "onnx", "hf" or "supermask").

    `example_input` (a batch of the model's inputs) is needed by "shrunk" and "onnx"; `dtype`
    ("fp32", "fp16", "bf16") by "compact" only; "hf" (a save_pretrained folder, lottery.export.hf) takes the
    `tokenizer` (name or folder) to save beside the model; "supermask" (a strong ticket's seed and mask,
    lottery.export.supermask) the recipe of its weights in `metadata`.
    """
    if fmt not in FORMATS:
        raise LotteryError(f"unknown export format {fmt!r}; choose one of: ticket, {', '.join(FORMATS)}")
    if fmt != "compact" and dtype != "fp32":
        raise LotteryError(f"dtype={dtype!r} applies to the compact format only, not to {fmt!r}")
    if fmt == "compact":
        return save_compact(model, out, masks, dtype, metadata)
    if fmt == "supermask":
        from lottery.export.supermask import save_supermask

        return save_supermask(model, out, masks, metadata or {})
    if fmt == "hf":
        from lottery.export.hf import save_hf

        return save_hf(model, out, masks, metadata, tokenizer, log=log)
    if example_input is None:
        raise LotteryError(f"the {fmt} export needs example_input, a batch of inputs of the model's shape")
    if fmt == "shrunk":
        return save_shrunk(model, example_input, out, masks, log=log)[0]
    return save_onnx(model, example_input, out, masks, log=log)
