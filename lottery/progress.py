"""Lines a user reads while a level trains: where a resumed level starts again."""
from __future__ import annotations

import pytorch_lightning as pl


class Resumed(pl.Callback):
    """Print "resuming <label> from epoch E/N" when training continues from a checkpoint."""

    def __init__(self, label: str):
        self.label = label

    def on_train_start(self, trainer, pl_module):
        if trainer.ckpt_path and trainer.is_global_zero:
            per_epoch = max(1, trainer.num_training_batches)
            done, total = trainer.global_step // per_epoch, -(-trainer.max_steps // per_epoch)
            print(f"resuming {self.label} from epoch {done + 1}/{total} ({done} done, from {trainer.ckpt_path})", flush=True)
