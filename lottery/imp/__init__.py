"""The algorithm: iterative magnitude pruning with rewinding, one seed at a time, level by level.

    runner       SeedRunner: a seed's levels (train, prune, rewind, repeat); run_levels for several seeds
    branches     controls and comparisons trained off a level
    seed_models  how a seed builds its models and masks and reads its rewind point
    hparams      the typed hyperparameters of an experiment
"""
