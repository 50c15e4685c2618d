"""What to delete when a file of a run folder is damaged, so that running the same command again rebuilds it.

Every file of a run is recomputed from the files before it: deleting a level's folder retrains that
level (from the previous level's weights and mask, the same on a CPU), deleting a resume checkpoint
restarts its level from the first epoch, deleting `init.safetensors` rebuilds it from the seed.
A file named here but not deleted with it would stop the rerun with a message about a missing file.
"""
from __future__ import annotations

from pathlib import Path

from lottery.errors import LotteryError

LEVEL_FILES = ("metrics.json", "final.safetensors", "mask.safetensors")  # what a level (or branch) folder holds
CHECKPOINT = "last.ckpt"  # a level's resume checkpoint, in <level>/checkpoints/


def fix(path: Path) -> str:
    """How to rebuild the run file `path`: what to delete before running the same command again."""
    path = Path(path)
    again = "run the same `lottery run` command again"
    if path.name in LEVEL_FILES:
        return f"delete the folder {path.parent} and {again} to retrain it"
    if path.name == CHECKPOINT:
        return f"delete {path} and {again}: that level restarts from its first epoch"
    if path.name == "init.safetensors":
        return f"delete {path} and {again}: it is rebuilt from the seed"
    if path.name.startswith("rewind_step_"):
        return f"delete {path} and the folder {path.parent / 'level_00'}, and {again}: the dense level is retrained to capture it"
    return f"delete {path} and {again}"


def damaged(path: Path, error: BaseException) -> LotteryError:
    """The error for a run file that cannot be read: what went wrong and what to delete."""
    reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}" if str(error).strip() else type(error).__name__
    state = "is missing" if isinstance(error, FileNotFoundError) else "is damaged"
    return LotteryError(f"{path} {state} ({reason}); {fix(path)}")
