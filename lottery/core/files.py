"""Files: written atomically, by one process, in formats that never execute code on loading.

Every write goes to a temporary name in the same folder, then is renamed over the target, so a crash
at any moment leaves either the old file or the new one, never half of one. Under multi-process
training only global rank 0 writes; the other ranks compute the same values and read what rank 0
wrote after a barrier. Tensors are safetensors files.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from lottery.core.errors import LotteryError


def temporary(path: Path) -> Path:
    """The name a file is written under before it is renamed to `path` (same suffix: torch.export wants .pt2)."""
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary path to write; on success it replaces `path`, on any error it is deleted."""
    path = Path(path)
    if path.is_dir():
        raise LotteryError(f"{path} is a folder; give a file name, e.g. {path / ('model' + (path.suffix or '.safetensors'))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failure: no half-written temporary left behind


def is_writer() -> bool:
    """True on the process that writes files: global rank 0.

    Lightning sets the rank when it launches processes; without Lightning loaded there is one process.
    """
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
    return rank_zero is None or getattr(rank_zero.rank_zero_only, "rank", 0) == 0


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    if not is_writer():
        return path
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # open()'s permissions, as any file the user creates
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """A table with a header: the keys of every row, in the order they first appear."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def read_json(path: str | os.PathLike):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
        raise damaged(Path(path), e) from None


def damaged(path: Path, error: BaseException) -> LotteryError:
    """The error for a run file that cannot be read: what went wrong, and what to delete to rebuild it."""
    from lottery.core.layout import repair

    reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}" if str(error).strip() else type(error).__name__
    state = "is missing" if isinstance(error, FileNotFoundError) else "is damaged"
    return LotteryError(f"{path} {state} ({reason}); {repair(path)}")


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """Safetensors file (no pickle), written atomically. Tensors are copied to the CPU."""
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


def read_safetensors(path: str | os.PathLike, what: str, fix: str, tensors: bool = True) -> tuple[dict, dict[str, str]]:
    """The tensors (none with tensors=False) and string metadata of a file a user hands over (`what`: "ticket
    file" ...); a missing or unreadable one is a LotteryError ending with `fix`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise LotteryError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return ({k: f.get_tensor(k) for k in f.keys()} if tensors else {}), f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise LotteryError(f"{path} is not a readable safetensors file ({e}); {fix}") from None


def save_masks(path: str | os.PathLike, masks) -> Path:
    """A MaskManager's masks and density targets (and what they count: weights, or units), as safetensors."""
    state = masks.state_dict()
    counts = {"counts": state["counts"]} if state.get("counts", "weights") != "weights" else {}
    return save_tensors(path, state["masks"], {"density": json.dumps(state["density"]), **counts})


def load_masks(path: str | os.PathLike) -> dict:
    """The state `save_masks` wrote, ready for `MaskManager.load_state_dict`."""
    tensors, metadata = load_tensors(path, with_metadata=True)
    state = {"masks": tensors}
    if "density" in metadata:
        state["density"] = json.loads(metadata["density"])
    if "counts" in metadata:
        state["counts"] = metadata["counts"]
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


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes `path` (which must not hold anything yet), on any
    error it is deleted: a folder export is whole or absent, like a file."""
    import shutil

    path = Path(path)
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise LotteryError(f"{path} exists and is not an empty folder; give a new folder name (--out {path}_2)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir():
            path.rmdir()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
