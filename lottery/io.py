"""Atomic files: everything is written to a temporary name in the same folder, then renamed,
so a crash at any moment leaves either the old file or the new one, never half of one.
Under multi-process training only global rank 0 writes; the other ranks compute the same
values and read what rank 0 wrote after a barrier."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.rank_zero import rank_zero_only

from lottery.damage import damaged
from lottery.errors import LotteryError


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def is_writer() -> bool:
    """True on the process that writes files: global rank 0 (from the launcher's environment)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    if not is_writer():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
        raise damaged(Path(path), e) from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Safetensors file (no pickle), written atomically."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    return write_bytes(path, data)


def load_tensors(path: str | os.PathLike, with_metadata: bool = False):
    """Tensors of a safetensors file (and its string metadata when asked)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors has an error type per kind of damage
        raise damaged(Path(path), e) from None
    return (tensors, metadata) if with_metadata else tensors


def save_masks(path: str | os.PathLike, masks) -> Path:
    """A MaskManager's masks and density targets, as safetensors."""
    state = masks.state_dict()
    return save_tensors(path, state["masks"], {"density": json.dumps(state["density"])})


def load_masks(path: str | os.PathLike) -> dict:
    """The state `save_masks` wrote, ready for `MaskManager.load_state_dict`."""
    tensors, metadata = load_tensors(path, with_metadata=True)
    state = {"masks": tensors}
    if "density" in metadata:
        state["density"] = json.loads(metadata["density"])
    return state


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str):
    """Hold an advisory lock on `path` (released by the OS even after `kill -9`), or fail at once.

    Two processes on one seed of one experiment would train the same levels twice; different seeds
    and experiments share a runs folder freely.
    """
    path = Path(path)
    if not is_writer():  # the other DDP ranks follow rank 0, which holds the lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise LotteryError(f"{what} is being run by another process (pid {f.read().strip() or '?'}); "
                               "wait for it to finish, or run another seed or experiment name") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary name and renamed: `kill -9` never leaves half a file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp(path)
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Tensors and plain containers only (`weights_only=True` on every torch): loading never runs code."""
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as e:  # truncated (RuntimeError), foreign pickle (UnpicklingError), unreadable (OSError)
            raise damaged(Path(path), e) from None
