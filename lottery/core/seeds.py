"""Every seed a run derives from its own seed, in one place, with the reason each exists.

Derived seeds keep independent random streams apart (the mask of level 3 must not depend on how
many numbers level 2 drew) and make a resumed run draw exactly what an uninterrupted one drew.
"""
from __future__ import annotations

_PRIME = 1_000_003  # mixes parts so that nearby inputs give unrelated seeds
_MODULUS = 2**61 - 1  # a Mersenne prime: results stay in torch.Generator's range


def prune(seed: int, level: int) -> int:
    """The generator of level `level`'s pruning (random strategies); independent of training."""
    return seed * 1000 + level


def branch(seed: int, level: int) -> int:
    """Random weights or masks of the branches of `level` (e.g. the re-initialisation control):
    different from the ticket's own initialisation (`seed`) and from other levels'."""
    return seed + _PRIME + level


def branch_training(seed: int) -> int:
    """The training RNG of every branch: its data order and per-epoch draws differ from the ticket's."""
    return seed + _PRIME


def epoch(seed: int, start_step: int, epoch_index: int) -> int:
    """The global RNG at the start of each epoch, so a run resumed from an epoch checkpoint draws
    the same numbers (dropout, augmentation) as one that was never stopped."""
    return seed * _PRIME + start_step + epoch_index


def batch(*parts: int) -> int:
    """One 61-bit seed from several integers (run seed, epoch, batch index, rank), stable across runs:
    augmentation of each batch, the same after a resume and on every process count."""
    seed = 0
    for part in parts:
        seed = (seed * _PRIME + int(part)) % _MODULUS
    return seed
