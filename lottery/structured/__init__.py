"""Structured tickets: pruning whole units (output channels of convolutions, neurons of Linear layers, attention
heads) with every tensor that shares them, as IMP criteria, and the channel early-bird ticket.

    units       which tensors share each unit: Torch-Pruning's dependency graph (the `structured` extra), as
                parameter names and index tensors
    criteria    the strategies: channel_norm (Li et al. 2017), bn_scale (network slimming, Liu et al. 2017), head_norm
                (attention heads, Michel et al. 2019) and structured_random, their random control
    removal     the units of a mask removed for real, by Torch-Pruning's pruner; the check that the graph is right
    earlybird   the channel early-bird ticket (You et al. 2020): one detector per level's density, from BatchNorm
                scaling factors

Torch-Pruning is imported only where a structured method runs: `import lottery` and the unstructured methods never
need it, and a missing package is one line naming the extra (docs/structured.md).
"""
from lottery.structured import criteria, earlybird  # noqa: F401  (their records: the strategies and the branch)
