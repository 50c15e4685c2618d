"""LaneDataModule: the data of K lanes, each batch [K, B, ...] with lane k's part in the order of its own seed."""
from __future__ import annotations

from typing import Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from lottery.core import seeds as seeding
from lottery.core.errors import LotteryError
from lottery.data.augment import random_crop_flip
from lottery.data.base import TensorDataModule, TrainerEpochSampler, whole_batch


class _LaneBatchSampler(Sampler):
    """Yields the K lanes' batches of one step as one index tensor [K * b]: lane k's part in seed k's order."""

    def __init__(self, samplers: Sequence[Sampler], batch_size: int):
        self.samplers, self.batch_size = list(samplers), batch_size

    def __len__(self) -> int:
        return -(-len(self.samplers[0]) // self.batch_size)

    def __iter__(self):
        orders = torch.stack([s.order() for s in self.samplers])  # [K, n], drawn at epoch start
        for step in orders.split(self.batch_size, dim=1):
            yield step.reshape(-1)


class LaneDataModule(pl.LightningDataModule):
    """The data of a TensorDataModule for K lanes: training batches [K, B, ...], lane k in the order of `seeds[k]`.

    Lane k's batches are those a run of `data` with `data.seed = seeds[k]` draws (the same sampler, seeded by
    (seed, epoch); under DDP each process takes its share of every lane's batch); validation and test batches
    are shared by all lanes.
    """

    def __init__(self, data: TensorDataModule, seeds: Sequence[int]):
        super().__init__()
        if not seeds:
            raise LotteryError("LaneDataModule needs one seed per lane, got none")
        self.data, self.seeds = data, list(seeds)
        self.num_classes = data.num_classes

    def setup(self, stage: str | None = None) -> None:
        self.data.trainer = self.trainer  # the wrapped module places its tensors on the trainer's device
        self.data.setup(stage)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        dataset, trainer = self.data._sets["train"], self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        # Under DDP each process holds every lane and takes its share of each lane's batch, as a run alone does.
        samplers = [TrainerEpochSampler(dataset, trainer, num_replicas=world, rank=rank, shuffle=True, seed=s)
                    for s in self.seeds]
        return DataLoader(dataset, batch_sampler=_LaneBatchSampler(samplers, self.data.per_process_batch(world)),
                          collate_fn=whole_batch)

    def val_dataloader(self) -> DataLoader:
        return self.data.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.data.test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return batch
        x, y = batch
        lanes = len(self.seeds)
        x, y = x.view(lanes, -1, *x.shape[1:]), y.view(lanes, -1)
        if self.data.augment:  # lane k's crops and flips are those of seed k alone
            index = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            fill = None if self.data.pad_fill is None else torch.tensor(self.data.pad_fill)
            x = torch.stack([random_crop_flip(x[k], self.data.crop_padding, torch.Generator(device=x.device).manual_seed(
                seeding.batch(s, trainer.current_epoch, index, trainer.global_rank)), fill) for k, s in enumerate(self.seeds)])
        return x, y
