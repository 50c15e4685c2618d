"""A winning ticket on disk: masks + rewind-point weights (+ final weights) + metadata.

One safetensors file: loading it never executes code, and any safetensors reader opens it.
Tensors are stored under three prefixes:

    mask/<param>    the mask, bit-packed (numpy.packbits order: big-endian bits, zero-padded)
    rewind/<key>    the model's state_dict at the rewind point, pruned weights already zero
    final/<key>     the trained state_dict of the ticket's level (optional)

The header's metadata holds `format`, `architecture`, `level`, `density`, ... as strings,
and `mask_shapes` (JSON) to unpack the masks.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.files import read_safetensors, write_bytes

FORMAT = "lottery.ticket/1"
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 tensor of ceil(numel / 8) bytes, in numpy.packbits order."""
    flat = mask.detach().flatten().cpu().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    return (flat.view(-1, 8) * _BITS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `pack_bits`."""
    numel = int(torch.tensor(shape).prod()) if shape else 1
    if packed.dtype != torch.uint8 or packed.numel() != -(-numel // 8):
        raise ValueError(f"{packed.numel()} {packed.dtype} values where {-(-numel // 8)} uint8 bytes hold {numel} bits")
    bits = (packed.view(-1, 1) & _BITS).ne(0).flatten()
    return bits[:numel].view(shape)


@dataclass
class Ticket:
    masks: dict[str, torch.Tensor]
    rewind: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def density(self) -> float:
        from lottery.core.masks import density

        return density(self.masks)

    def sparsity_per_layer(self) -> dict[str, float]:
        from lottery.core.masks import layer_density

        return {n: 1.0 - d for n, d in layer_density(self.masks).items()}


def save_ticket(ticket: Ticket, path: str | os.PathLike) -> Path:
    """Write `ticket` atomically (temporary file, then rename), readable like any file `open` creates."""
    from safetensors.torch import save

    tensors = {f"mask/{n}": pack_bits(m) for n, m in ticket.masks.items()}
    # Cloned: safetensors refuses tensors that share memory (tied weights, or the same tensor given twice).
    tensors.update({f"rewind/{k}": v.detach().cpu().clone() for k, v in ticket.rewind.items()})
    tensors.update({f"final/{k}": v.detach().cpu().clone() for k, v in ticket.final.items()})
    meta = {k: json.dumps(v) for k, v in ticket.metadata.items()}
    meta.update(format=FORMAT, mask_shapes=json.dumps({n: list(m.shape) for n, m in ticket.masks.items()}))
    path = Path(path)
    if path.is_dir():
        raise LotteryError(f"{path} is a folder; give the ticket a file name, e.g. --out {path / 'ticket.safetensors'}")
    try:
        return write_bytes(path, save(tensors, metadata=meta))
    except OSError as e:
        raise LotteryError(f"cannot write the ticket to {path} ({e.strerror}); choose a path you can write to") from None


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw header metadata, after checking that `path` is a lottery ticket."""
    _, meta = read_safetensors(path, "ticket file", "is it corrupt or truncated? Export the ticket again with "
                               "`lottery export`", tensors=False)
    if meta.get("format") != FORMAT:
        raise LotteryError(f"{path} is a safetensors file but not a lottery ticket (no format={FORMAT!r} in its header)")
    return meta


def load_ticket(path: str | os.PathLike) -> Ticket:
    """Read a ticket written by `save_ticket`, bit for bit; a damaged or crafted one is a LotteryError."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    damaged = f"{path} is a damaged lottery ticket"
    again = "export the ticket again with `lottery export`"
    try:
        tensors = load_file(str(path))
    except Exception as e:  # the header was readable, the data is not (truncated)
        raise LotteryError(f"{damaged} ({e}); {again}") from None
    try:
        shapes = json.loads(meta["mask_shapes"])
        metadata = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "mask_shapes")}
    except (KeyError, ValueError) as e:
        raise LotteryError(f"{damaged}: its metadata {e!r} is missing or not JSON; {again}") from None
    masks = {}
    for n, s in (shapes.items() if isinstance(shapes, dict) else ()):
        packed = tensors.get(f"mask/{n}")
        if packed is None:
            raise LotteryError(f"{damaged}: it has no tensor mask/{n} for the mask it lists; {again}")
        try:
            masks[n] = unpack_bits(packed, tuple(s))
        except (RuntimeError, TypeError, ValueError) as e:
            raise LotteryError(f"{damaged}: mask/{n} does not hold a mask of shape {s} ({e}); {again}") from None
    if not masks:
        raise LotteryError(f"{damaged}: it lists no masks (mask_shapes={meta['mask_shapes']}); {again}")

    def prefixed(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    return Ticket(masks, prefixed("rewind/"), prefixed("final/"), metadata)


def load_into(model: nn.Module, ticket: Ticket, weights: str = "rewind"):
    """Load the ticket's `weights` ("rewind" or "final") and masks into a fresh `model`.

    Returns a MaskManager that keeps the ticket's pruned weights at zero while you train.
    """
    from lottery.core.masks import MaskManager

    state = {"rewind": ticket.rewind, "final": ticket.final}.get(weights)
    if not state:
        raise LotteryError(f"the ticket has no {weights!r} weights; choose 'rewind' or 'final'")
    check_fits(model, state, ticket.metadata.get("architecture"))
    model.load_state_dict(state)
    masks = MaskManager(model, include=list(ticket.masks))
    masks.set_masks(ticket.masks)
    return masks


def check_fits(model: nn.Module, state: dict[str, torch.Tensor], architecture) -> None:
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        details = "; ".join(f"{what}: {items[:3]}{' ...' if len(items) > 3 else ''}"
                            for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items)
        raise LotteryError(f"this ticket is for architecture {architecture!r} and does not fit "
                           f"{type(model).__name__} ({details}); build the model the ticket names")
