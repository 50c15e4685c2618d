"""Every derived seed: independent streams stay apart, and the same inputs give the same seed on every run."""
import torch

from lottery.core import seeds


def test_derived_seeds_are_stable_and_apart():
    assert seeds.prune(3, 2) == 3002 and seeds.batch(1, 2, 3) == seeds.batch(1, 2, 3)
    # pruning of each level, branches of each level and epochs of a run never share a seed
    assert len({seeds.prune(0, level) for level in range(20)}) == 20
    for seed in (0, 7):
        branch = {seeds.branch(seed, level) for level in range(20)}
        assert len(branch) == 20 and seed not in branch  # apart from the ticket's own initialisation
        assert seeds.branch_training(seed) != seed  # a branch's data order is not the ticket's
    assert len({seeds.epoch(0, 0, e) for e in range(50)}) == 50
    assert seeds.epoch(0, 100, 0) != seeds.epoch(0, 0, 0)  # a level rewound to step k draws its own numbers


def test_batch_seeds_fit_a_generator_and_differ_per_part():
    parts = [(s, e, b, r) for s in range(3) for e in range(3) for b in range(3) for r in range(2)]
    values = {seeds.batch(*p) for p in parts}
    assert len(values) == len(parts)
    assert all(0 <= v < 2**61 for v in values)
    torch.Generator().manual_seed(max(values))  # in the generator's range
