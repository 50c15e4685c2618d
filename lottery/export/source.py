"""Where an exported model comes from: a research ticket file (a run folder goes through its ticket: lottery.cli.tickets.export_as)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from lottery.core.errors import LotteryError


def model_from_ticket(path: str | os.PathLike, weights: str = "final"):
    """(model, MaskManager, metadata): the ticket's architecture with its trained (`final`) weights and masks."""
    from lottery.core.ticket import load_into, load_ticket
    from lottery.models import create_model

    ticket = load_ticket(path)
    meta = ticket.metadata
    missing = [k for k in ("architecture", "num_classes", "input_shape") if k not in meta]
    if missing:
        raise LotteryError(f"ticket {path} has no {missing} in its metadata, so its model cannot be rebuilt; "
                           "build the model yourself and use lottery.load_into + lottery.export.export")
    options = meta.get("model_options") or None  # hf: models; their weights come from the ticket, not the checkpoint
    options = {**options, "weights": "random"} if options is not None else None
    model = create_model(meta["architecture"], meta["num_classes"], tuple(meta["input_shape"]), options)
    masks = load_into(model, ticket, weights)
    return model.eval(), masks, meta


def example_batch(input_shape, batch: int = 4, model: torch.nn.Module | None = None) -> torch.Tensor:
    """A fixed random batch of inputs the model takes: the shapes matter to the exports, the values only where they
    must be valid: text ([3, length]: token ids below the model's vocabulary, an attention mask of ones, token types 0,
    as lottery.data.text packs them); images and the rest, random values."""
    generator = torch.Generator().manual_seed(0)
    if len(input_shape) == 2 and input_shape[0] == 3:
        vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 2
        ids = torch.randint(0, vocab, (batch, input_shape[1]), generator=generator)
        return torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], dim=1).float()
    return torch.randn(batch, *input_shape, generator=generator)


def export_ticket(ticket: str | os.PathLike, fmt: str, out: str | os.PathLike, dtype: str = "fp32", log=print) -> Path:
    """Turn a research ticket file into a deployable `fmt` file (see lottery.export.export)."""
    from lottery.export.formats import export

    model, masks, meta = model_from_ticket(ticket)
    keep = ("architecture", "num_classes", "input_shape", "dataset", "level", "density", "test_acc", "seed", "branch",
            "options", "target_density")
    path = export(model, fmt, out, masks, example_batch(meta["input_shape"], model=model), dtype,
                  {k: meta[k] for k in keep if k in meta}, log=log, tokenizer=meta.get("tokenizer"))
    dense = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
    log(f"{fmt}: {size:,} bytes, {size / dense:.1%} of the dense model's {dense:,} "
        f"bytes of weights ({1 - masks.sparsity():.2%} of prunable weights remaining)")
    return path
