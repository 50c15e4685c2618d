"""TrainerConfig: where and how the one Lightning Trainer runs (the config's trainer.* keys)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # cpu | gpu | auto
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"  # e.g. ddp
    precision: str = "32-true"  # e.g. bf16-mixed
    compile: bool = False  # torch.compile the model's forward (masks are applied outside the graph)
    gradient_clip_val: float | None = None  # clip each run's gradient norm (pruned weights' left out) to this; None: off
    progress: bool | str = True  # true: a status line rewritten per epoch on a terminal; log: one line per epoch anywhere
    lanes: int | str = 1  # runs of a level trained together as lanes of one network: 1 (one by one), N (at most N), auto
    logger: str = "csv"  # csv | tensorboard | wandb | mlflow | none: where each level's metrics also go (lottery.training.tracking)
