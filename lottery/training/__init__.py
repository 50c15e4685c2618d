"""The Lightning layer: a run spec in, a training's files out, alone or as lanes, under the one Trainer.

    spec          RunSpec: one training described completely
    trainer       fit_and_test: the one Lightning Trainer, resumable
    single        a training alone
    lane_group    trainings that share every step, as lanes of one network
    dispatch      a level's trainings: finished ones read, the rest alone or as lanes
    results       metrics.json of a finished training and the files that mark it done
    module        ClassificationModule: the hand-written step, evaluation and logging of one run or K lanes
    lane_data     LaneDataModule: each lane's batches in its own data order
    callbacks     MaskCallback for any LightningModule; checkpoints, rewind points, progress
    optimizers    optimizers, and the learning rate of each step (the train.optim section: lottery.core.schema)
    tracking      Lightning loggers per level and branch (CSV, TensorBoard, W&B, MLflow)
"""
