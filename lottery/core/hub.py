"""Offline-first reading from the Hugging Face hub: a local folder or the hub cache first, the network only when
neither holds the files and HF_HUB_OFFLINE is unset. One message for files that are not there.

Used by lottery.models.hf (models) and lottery.data.text (tokenizers, datasets); the loaders are passed in, so
this module imports no Hugging Face library.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from lottery.core.errors import LotteryError

_TRUE = ("1", "ON", "YES", "TRUE")


def offline() -> bool:
    """Whether the user asked the Hugging Face libraries never to use the network (HF_HUB_OFFLINE=1)."""
    return any(os.environ.get(k, "").upper() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cache_folder() -> Path:
    """Where huggingface_hub keeps downloaded files (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def looks_local(source: str) -> bool:
    """A path rather than a hub name: absolute, relative with ./ or ../, or under ~."""
    return Path(source).is_absolute() or source.startswith((".", "~"))


def not_there(key: str, source: str, error: Exception | None = None) -> LotteryError:
    """`key`=`source` names files that are neither in a local folder nor in the hub cache (and cannot be fetched).

    key: the config key as the user writes it, e.g. "model.name=hf:" or "data.options.tokenizer="."""
    if looks_local(source) or Path(source).exists():
        return LotteryError(f"{key}{source}: no such folder with the files Hugging Face needs (config.json and the "
                            "weights, or the tokenizer's files); give a folder written by save_pretrained")
    how = ("HF_HUB_OFFLINE is set, so nothing is downloaded: unset it on a machine with a network to download them once"
           if offline() else "and the hub cannot be reached: download them once on a machine with a network")
    why = f" [{str(error).splitlines()[0][:100]}]" if error is not None and str(error).strip() else ""
    return LotteryError(f"{key}{source}: not a local folder, and not in the Hugging Face cache ({cache_folder()}); "
                        f"{how}, or give a local folder{why}")


def from_hub(load: Callable, source: str, key: str, **kwargs):
    """`load(source, **kwargs)` (a `from_pretrained`), from a local folder or the cache first, then the network if
    allowed; a LotteryError naming `key` (the config key), the folder and HF_HUB_OFFLINE when the files are not there."""
    try:
        return load(source, local_files_only=True, **kwargs)
    except OSError as error:
        if offline() or looks_local(source) or Path(source).exists():
            raise not_there(key, source, error) from None
    try:
        return load(source, **kwargs)
    except OSError as error:
        raise not_there(key, source, error) from None
