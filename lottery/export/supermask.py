"""Supermask export: a strong ticket (edge-popup, lottery.sparsity.edgepopup) as the seed of its random weights and
its bit-packed mask, about one bit per weight: its weights were never trained, so they are regenerated, not stored.

One safetensors file (no pickle):

    mask/<param>   the mask, bit-packed in numpy.packbits order (`lottery.core.ticket.pack_bits`)
    state/<key>    the few state_dict entries a regeneration does not give back (BatchNorm's running statistics)

The header holds `format`, the recipe (`architecture`, `num_classes`, `input_shape`, `seed`: the model built by
`create_model` after `torch.manual_seed(seed)`, as every lottery run builds its initial weights; `branch`, its
`options` and each tensor's `target_density`: how the method turned those into the weights its mask selects from,
its record's updater's `regenerate`), `shapes`, and the sha256 of the weights regenerated when it was written, which
loading checks: the same torch draws the same numbers, and a file is never silently read into other weights.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.files import atomic_path, read_safetensors
from lottery.core.methods import METHODS
from lottery.core.ticket import pack_bits, unpack_bits
from lottery.sparsity import edgepopup  # noqa: F401  (its record: the method whose weights regenerate)

FORMAT = "lottery.supermask/1"
RECIPE = ("architecture", "num_classes", "input_shape", "seed", "branch", "options", "target_density")


def regenerated(recipe: Mapping) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(the recipe's model at its initial weights, the weights its method's masks select from, by tensor)."""
    from lottery.models import create_model

    missing = [k for k in RECIPE if k not in recipe]
    if missing:
        raise LotteryError(f"a supermask needs {', '.join(missing)} to regenerate its weights; export the branch of a "
                           "lottery run (`lottery export RUN --branch edgepopup --format supermask`)")
    method = METHODS.get(recipe["branch"])
    regenerate = getattr(getattr(method, "updater", None), "regenerate", None)
    if regenerate is None:
        raise LotteryError(f"{recipe['branch']!r} trains its weights, so they cannot be regenerated from a seed: a "
                           "supermask is a strong ticket's (edgepopup); export this one with --format compact")
    torch.manual_seed(int(recipe["seed"]))  # as lottery.imp.seed_models.SeedModels.fresh builds the initial weights
    model = create_model(recipe["architecture"], recipe["num_classes"], tuple(recipe["input_shape"]))
    init = {n: p.detach() for n, p in model.named_parameters() if n in recipe["target_density"]}
    options = method.options(**recipe["options"]) if method.options is not None else None
    return model, method.call(regenerate, init, recipe["target_density"], options=options)


def _digest(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update((weights[name] * masks[name]).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def save_supermask(model: nn.Module, path: str | os.PathLike, masks, metadata: Mapping) -> Path:
    """Write the strong ticket `model` (pruned by `masks`, a MaskManager or mapping) as its seed and packed mask, after
    checking bit for bit that its weights are the recipe's (`metadata`, see the module docstring) under the mask."""
    from lottery.export.compact import mask_dict

    masks = mask_dict(model, masks)
    fresh, weights = regenerated(metadata)
    state = model.state_dict()
    for name, mask in masks.items():
        if not torch.equal(state[name].cpu(), (weights[name] * mask).cpu()):
            raise LotteryError(f"{name} holds weights other than those regenerated from seed {metadata['seed']} by "
                               f"{metadata['branch']}: a supermask is for weights never trained; export --format compact")
    own = fresh.state_dict()
    kept = {f"state/{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()
            if k not in masks and not torch.equal(v.cpu(), own[k].cpu())}  # BatchNorm statistics, say
    tensors = {f"mask/{n}": pack_bits(m) for n, m in masks.items()} | kept
    meta = {k: json.dumps(metadata[k]) for k in RECIPE} | {
        "format": FORMAT, "shapes": json.dumps({n: list(m.shape) for n, m in masks.items()}),
        "sha256": _digest(weights, masks), "torch": torch.__version__,
        **{k: json.dumps(v) for k, v in metadata.items() if k not in RECIPE}}
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_supermask(path: str | os.PathLike) -> tuple[nn.Module, object, dict]:
    """(model, MaskManager, metadata) of a file `save_supermask` wrote: the weights regenerated from its seed, checked
    against the digest it holds, under its mask; ready for inference (eval mode)."""
    from lottery.core.masks import MaskManager

    tensors, meta = read_safetensors(path, "supermask file", "export it again")
    if meta.get("format") != FORMAT:
        raise LotteryError(f"{path} is not a supermask export (no format={FORMAT!r} in its header)")
    metadata = {k: json.loads(v) for k, v in meta.items() if k not in ("format", "shapes", "sha256", "torch")}
    masks = {n: unpack_bits(tensors[f"mask/{n}"], tuple(s)) for n, s in json.loads(meta["shapes"]).items()}
    model, weights = regenerated(metadata)
    if _digest(weights, masks) != meta["sha256"]:
        raise LotteryError(f"the weights regenerated from seed {metadata['seed']} differ from those {path} was written "
                           f"with (torch {meta['torch']}, here {torch.__version__}): regenerate it with that torch")
    with torch.no_grad():
        for name, w in weights.items():
            model.get_parameter(name).copy_(w)
    model.load_state_dict({k[len("state/"):]: v for k, v in tensors.items() if k.startswith("state/")}, strict=False)
    manager = MaskManager(model, include=list(masks))
    manager.set_masks(masks)
    return model.eval(), manager, metadata
