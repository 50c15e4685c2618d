"""Atomic export files: written under a temporary name in the target folder, renamed when complete,
so a failed export leaves no half-written file behind (and an older file at that path untouched)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from lottery.errors import LotteryError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is deleted."""
    path = Path(path)
    if path.is_dir():
        raise LotteryError(f"--out {path} is a folder; give a file name such as {path / 'model.safetensors'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")  # the suffix kept: torch.export wants .pt2
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def require(module: str, what: str):
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise LotteryError(f"{what} needs the {module!r} package, which is not installed; "
                           'install it with pip install -e ".[onnx]" (or pip install onnx onnxruntime onnxscript)') from None
