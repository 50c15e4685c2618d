"""The Hugging Face export: a folder that `from_pretrained` loads anywhere, with the ticket's zeros in its weights.

    out/config.json, model.safetensors   the transformers model (save_pretrained), pruned weights exactly zero
    out/masks.safetensors                one bool tensor per pruned weight, under the model's own parameter names
    out/README.md                        a model card: sparsity, where it came from, how to keep the zeros
    out/tokenizer files                  the tokenizer the model was trained with, when it can be read offline

`AutoModelForSequenceClassification.from_pretrained(out)` (or ...ForImageClassification) gives the logits the
ticket gives; to fine-tune it further and keep it sparse, multiply the weights by the masks after each step.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.files import atomic_folder

MASKS_FILE = "masks.safetensors"


def save_hf(model: nn.Module, out: str | os.PathLike, masks=None, metadata: dict | None = None,
            tokenizer: str | None = None, log=print) -> Path:
    """Write `model` (an hf: model, lottery.models.hf.HFClassifier) pruned by `masks` as a save_pretrained folder."""
    from safetensors.torch import save_file

    from lottery.export.compact import mask_dict

    hf = getattr(model, "hf", None)
    if hf is None or not hasattr(hf, "save_pretrained"):
        raise LotteryError(f"the hf export writes Hugging Face models (model.name=hf:...), not {type(model).__name__}; "
                           "use --format compact, shrunk or onnx")
    masks = mask_dict(model, masks)
    params = dict(model.named_parameters())
    with torch.no_grad():  # the zeros, whatever the weights held
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].device, params[name].dtype))
    with atomic_folder(out) as tmp:
        hf.save_pretrained(tmp)
        save_file({n: m.detach().cpu().bool().contiguous() for n, m in masks.items()}, str(tmp / MASKS_FILE),
                  metadata={"format": "lottery.hf-masks/1"})
        (tmp / "README.md").write_text(model_card(hf, masks, metadata or {}))
        if tokenizer:
            _save_tokenizer(tokenizer, tmp, log)
    return Path(out)


def _save_tokenizer(source: str, folder: Path, log) -> None:
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(folder)
    except (OSError, ValueError) as e:
        log(f"hf export: the tokenizer {source} could not be read offline ({str(e).splitlines()[0][:80]}); "
            "the folder holds the model only")


def model_card(hf: nn.Module, masks: dict, metadata: dict) -> str:
    """README.md of the export: what it is, how sparse, and how to keep its zeros."""
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    head = type(hf).__name__
    facts = {k: metadata[k] for k in ("level", "dataset", "test_acc", "seed", "rewind_policy", "strategy") if k in metadata}
    return f"""---
tags: [lottery-ticket, sparse, pruned]
library_name: transformers
---
# A lottery ticket: {head}, {1 - kept / total:.2%} of its prunable weights removed

Found by iterative magnitude pruning with rewinding (lottery). {kept:,} of the {total:,} weights of the {len(masks)}
pruned tensors remain; the others are exactly zero in `model.safetensors`. Embeddings, LayerNorm, biases and the
classifier are dense unless listed in `{MASKS_FILE}`.

{json.dumps(facts)}

```python
from transformers import {head}
model = {head}.from_pretrained("this folder")   # the ticket's logits
```

`{MASKS_FILE}` holds one bool tensor per pruned weight, under the model's own parameter names. To fine-tune further
and keep the zeros, multiply after every optimizer step:

```python
import torch
from safetensors.torch import load_file
masks = load_file("this folder/{MASKS_FILE}")
params = dict(model.named_parameters())
with torch.no_grad():
    for name, mask in masks.items():
        params[name].mul_(mask)
```
"""
