"""The core, torch only (safetensors where files are read): what works in a 20-line plain PyTorch loop.

    masks              MaskManager: one bool mask per prunable tensor, applied in one fused multiply
    pruning            strategies as pure functions (weights, masks, density, generator) -> masks
    rewind             rewind points and the policies that plan each training (init, step, lr, finetune)
    ticket             a winning ticket on disk: masks, rewind and final weights, metadata
    mode_connectivity  the error along the line between two networks (instability)
    macs               multiply-accumulates of a forward pass
    files              atomic writes, safetensors, CSV, the per-seed lock
    layout             where every file of a run folder lives
    seeds              every derived seed and why it exists
    errors             what users are told: LotteryError, Registry, missing optional packages
"""
