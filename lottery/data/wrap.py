"""DatasetDataModule: any pair of `torch.utils.data.Dataset`s (train, test) as a LightningDataModule.

Items must be (image tensor, integer label). If the data fits in `materialize_limit_mb`, every item is
read once into tensors and the module behaves like the built-in datasets (device-resident batches,
on-device augmentation). Otherwise batches come from a standard DataLoader with `num_workers`
processes, reading items one by one each epoch.

Limitation: materialising reads each item once, so random transforms inside the user's dataset are
frozen to one draw; pass `materialize=False` to keep them (or use `augment=True` for crop + flip).
The validation split and the data order follow `split_seed` and `seed` on both paths.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from lottery.core.errors import LotteryError
from lottery.data.base import TensorDataModule


def _read_all(dataset: Dataset, num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*DataLoader(dataset, batch_size=512, num_workers=num_workers))
    return torch.cat(xs).float(), torch.cat(ys).long()


class DatasetDataModule(TensorDataModule):
    def __init__(self, train_dataset: Dataset, test_dataset: Dataset, num_classes: int,
                 input_shape: tuple[int, int, int], materialize: bool | str = "auto",
                 materialize_limit_mb: float = 2048, num_workers: int = 0, **options):
        """materialize: True, False or "auto" (when both sets take under materialize_limit_mb as float32)."""
        super().__init__(**options)
        if materialize not in (True, False, "auto"):
            raise LotteryError(f"materialize={materialize!r} must be true, false or \"auto\"")
        self.train_dataset, self.test_dataset = train_dataset, test_dataset
        self.num_classes, self.input_shape = num_classes, tuple(input_shape)
        self.materialize, self.materialize_limit_mb, self.num_workers = materialize, materialize_limit_mb, num_workers

    def _check_item(self) -> torch.Tensor:
        item = self.train_dataset[0]
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
            raise LotteryError(f"{type(self.train_dataset).__name__} items must be (image tensor, label), got "
                               f"{type(item).__name__}; add transforms.ToTensor() to the dataset's transform")
        if tuple(item[0].shape) != self.input_shape:
            raise LotteryError(f"{type(self.train_dataset).__name__} images have shape {tuple(item[0].shape)}, "
                               f"but input_shape={self.input_shape}; pass the images' (C, H, W) as input_shape")
        return item[0]

    def materialized(self) -> bool:
        """Whether the datasets are (or will be) read into tensors."""
        if self.materialize != "auto":
            return self.materialize
        size_mb = self._check_item().numel() * 4 * (len(self.train_dataset) + len(self.test_dataset)) / 2**20
        return size_mb <= self.materialize_limit_mb

    def load(self):
        self._check_item()
        return (*_read_all(self.train_dataset, self.num_workers), *_read_all(self.test_dataset, self.num_workers))

    def _build(self) -> None:
        if self._sets or self.materialized():
            return super()._build()
        self._check_item()
        val, train = self._split(len(self.train_dataset))
        self._sets.update(train=Subset(self.train_dataset, train.tolist()), val=Subset(self.train_dataset, val.tolist()),
                          test=self.test_dataset)

    def _make_loader(self, dataset: Dataset, batch_size: int, sampler: DistributedSampler) -> DataLoader:
        if isinstance(dataset, Subset) or dataset is self.test_dataset:
            return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return super()._make_loader(dataset, batch_size, sampler)
