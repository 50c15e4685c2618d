"""Compact export: the trained sparse model as its surviving values plus a bit-packed mask.

One safetensors file (no pickle), readable without lottery:

    values/<param>  the weights the mask keeps, flattened in row-major order (fp32, fp16 or bf16)
    mask/<param>    the mask, bit-packed in numpy.packbits order (`lottery.core.ticket.pack_bits`)
    dense/<key>     every other state_dict entry (biases, BatchNorm), dense and in its own dtype

The header holds `format`, `shapes` (JSON: the shape of each masked tensor) and `dtype`. At 3.6% of
weights remaining a value costs 0.036 x 4 bytes and the mask 1/8 byte per weight: ~7% of the dense file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.files import read_safetensors, save_tensors
from lottery.core.ticket import pack_bits, unpack_bits

FORMAT = "lottery.compact/1"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def mask_dict(model: nn.Module, masks=None) -> dict[str, torch.Tensor]:
    """Masks as {param name: bool tensor}: from a MaskManager, a mapping, or (None) the nonzeros of every Conv/Linear weight."""
    if masks is None:
        from lottery.core.masks import default_prunable

        params = dict(model.named_parameters())
        return {n: params[n].detach().ne(0) for n in default_prunable(model)}
    masks = getattr(masks, "masks", masks)  # a MaskManager holds its masks in .masks
    return {n: m.detach().bool() for n, m in masks.items()}


def save_compact(model: nn.Module, path: str | os.PathLike, masks=None, dtype: str = "fp32",
                 metadata: Mapping[str, object] | None = None) -> Path:
    """Write `model`'s surviving weights (cast to `dtype`: fp32, fp16 or bf16) and bit-packed masks to `path`."""
    if dtype not in DTYPES:
        raise LotteryError(f"compact dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    masks = mask_dict(model, masks)
    state = model.state_dict()
    missing = [n for n in masks if n not in state]
    if missing:
        raise LotteryError(f"masks {missing[:3]} name no entry of {type(model).__name__}'s state_dict")
    tensors = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if name in masks:
            mask = masks[name].cpu()
            tensors[f"values/{name}"] = tensor[mask].to(DTYPES[dtype]).contiguous()
            tensors[f"mask/{name}"] = pack_bits(mask)
        else:
            tensors[f"dense/{name}"] = tensor.clone().contiguous()  # cloned: tied tensors may share memory
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, dtype=dtype, shapes=json.dumps({n: list(m.shape) for n, m in masks.items()}))
    # save_tensors writes with open()'s permissions (safetensors' save_file would make the file 0600)
    return save_tensors(path, tensors, meta)


@dataclass
class Compact:
    """A loaded compact file: the full state_dict (pruned weights zero, values in the stored dtype) and the masks."""

    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    metadata: dict[str, object] = field(default_factory=dict)

    def into(self, model: nn.Module):
        """Load the weights into `model` (same architecture); returns a MaskManager that keeps the zeros."""
        from lottery.core.masks import MaskManager
        from lottery.core.ticket import check_fits

        check_fits(model, self.state, self.metadata.get("architecture"))
        model.load_state_dict(self.state)  # copy_ casts fp16/bf16 values to the model's dtype
        manager = MaskManager(model, include=list(self.masks))
        manager.set_masks(self.masks)
        return manager


def load_compact(path: str | os.PathLike) -> Compact:
    """Read a file written by `save_compact`."""
    tensors, meta = read_safetensors(path, "compact file", "export it again")
    if meta.get("format") != FORMAT:
        raise LotteryError(f"{path} is not a compact export (no format={FORMAT!r} in its header); "
                           "a ticket loads with lottery.load_ticket")
    state = {k[len("dense/"):]: v for k, v in tensors.items() if k.startswith("dense/")}
    masks = {}
    for name, shape in json.loads(meta["shapes"]).items():
        masks[name] = unpack_bits(tensors[f"mask/{name}"], tuple(shape))
        values = tensors[f"values/{name}"]
        weight = values.new_zeros(masks[name].shape)
        weight[masks[name]] = values
        state[name] = weight
    metadata = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "dtype", "shapes")}
    return Compact(state, masks, {**metadata, "dtype": meta["dtype"]})
