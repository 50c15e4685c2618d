"""TensorDataModule: a dataset held as tensors, split with a fixed seed, batched without per-sample Python.

Subclasses implement `load()` -> (x_train, y_train, x_test, y_test) and set `num_classes`,
`input_shape`. The validation set is taken from the training set with `split_seed`, so it is
the same for every run seed; the data order depends on the run `seed` and the epoch only,
which makes a resumed run see exactly the batches an uninterrupted one would.

With `device_resident`, the three tensor sets move to the trainer's device once, so a batch is one
gather there and Lightning's transfer is a no-op. With `augment`, training batches get a random crop
(padding `crop_padding`) and flip on the device, drawn from a generator seeded by (seed, epoch, batch
index, rank): deterministic, and the same after a resume.
"""
from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from lottery.core import seeds
from lottery.core.errors import LotteryError
from lottery.data.augment import random_crop_flip


class _BatchTensorDataset(TensorDataset):
    """Index a whole batch at once (one gather per tensor instead of one call per sample)."""

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        device = self.tensors[0].device
        if device.type == "cuda":
            # A pinned, non-blocking copy of the indices: the host never waits for the GPU here.
            index = index.pin_memory().to(device, non_blocking=True)
        return tuple(t.index_select(0, index) for t in self.tensors)  # ~3x faster than t[index] for rows


class TrainerEpochSampler(DistributedSampler):
    """A DistributedSampler that shuffles with the trainer's current epoch when an epoch starts.

    Lightning's own `set_epoch` call is one epoch ahead after resuming from a checkpoint written at
    an epoch end, which would change the data order of a resumed run; the trainer's epoch is not.
    """

    def __init__(self, dataset, trainer, **kwargs):
        super().__init__(dataset, **kwargs)
        self._trainer = trainer

    def __iter__(self):
        if self._trainer is not None:
            self.epoch = self._trainer.current_epoch
        return super().__iter__()

    def order(self) -> torch.Tensor:
        """This epoch's indices, those `__iter__` yields, as a tensor (DistributedSampler's rule without a Python list:
        one permutation from seed + epoch, padded by repeating it, every num_replicas-th from rank)."""
        if self._trainer is not None:
            self.epoch = self._trainer.current_epoch
        n = len(self.dataset)
        if self.shuffle:
            indices = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            indices = torch.arange(n)
        if self.total_size > n:
            indices = indices.repeat(-(-self.total_size // n))
        return indices[self.rank:self.total_size:self.num_replicas]


def whole_batch(batch):
    return batch


class TensorDataModule(pl.LightningDataModule):
    num_classes: int
    input_shape: tuple[int, int, int]
    crop_padding = 4  # pixels added on each side before the random crop (CIFAR recipe)
    pad_fill: tuple[float, ...] | None = None  # value of a padded pixel per channel, after normalisation

    def __init__(self, batch_size: int = 60, val_size: int | float = 5000, seed: int = 0, split_seed: int = 0,
                 eval_batch_size: int = 1000, augment: bool = False, device_resident: bool | str = "auto"):
        """val_size: examples (int) or fraction (float in (0, 1)) of the training set held out for validation.
        device_resident: True, False, or "auto" (on when the trainer runs on CUDA and the data fits)."""
        super().__init__()
        if device_resident not in (True, False, "auto"):
            raise LotteryError(f"data.device_resident={device_resident!r} must be true, false or \"auto\"")
        self.batch_size, self.val_size, self.seed = batch_size, val_size, seed
        self.split_seed, self.eval_batch_size = split_seed, eval_batch_size
        self.augment, self.device_resident = augment, device_resident
        self._sets: dict[str, Dataset] = {}

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _val_count(self, n: int) -> int:
        count = round(self.val_size * n) if isinstance(self.val_size, float) else self.val_size
        if not 0 <= count < n or (isinstance(self.val_size, float) and not 0 < self.val_size < 1):
            raise LotteryError(f"data.val_size={self.val_size} must be in [0, {n}) examples or a fraction "
                               f"in (0, 1) for {type(self).__name__}, which has {n} training examples")
        return count

    def _split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (val, train) of the training set, fixed by `split_seed`."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        count = self._val_count(n)
        return perm[:count], perm[count:]

    def _build(self) -> None:
        if not self._sets:
            x, y, x_test, y_test = self.load()
            val, train = self._split(len(x))
            # Filled in place: modules made by `with_seed` share this dict, so the data is read once.
            self._sets.update(train=_BatchTensorDataset(x[train], y[train]), val=_BatchTensorDataset(x[val], y[val]),
                              test=_BatchTensorDataset(x_test, y_test))

    def with_seed(self, seed: int) -> "TensorDataModule":
        """The same data in the order of `seed`: the splits (and their tensors, on whichever device they are
        moved to) are shared with this module, not read again."""
        other = copy.copy(self)
        other.seed = seed
        return other

    def setup(self, stage: str | None = None) -> None:
        self._build()
        self._place()

    def move_to(self, device: torch.device | str) -> None:
        """Keep the tensor sets on `device` (a GPU, usually): batches are then gathered there."""
        self._build()
        device = torch.device(device)
        for split, dataset in self._sets.items():
            if isinstance(dataset, _BatchTensorDataset) and dataset.tensors[0].device != device:
                self._sets[split] = _BatchTensorDataset(*(t.to(device) for t in dataset.tensors))

    def _place(self) -> None:
        trainer = self.trainer
        if trainer is None or self.device_resident is False:
            return
        device = trainer.strategy.root_device
        if self.device_resident == "auto" and not (device.type == "cuda" and self._fits(device)):
            return
        self.move_to(device)

    def _fits(self, device: torch.device) -> bool:
        size = sum(t.nbytes for d in self._sets.values() if isinstance(d, TensorDataset) for t in d.tensors)
        return 4 * size < torch.cuda.mem_get_info(device)[0]  # leave most of the memory to the model

    def _make_loader(self, dataset: Dataset, batch_size: int, sampler: DistributedSampler) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=whole_batch)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        # Reshuffled with seed + epoch, on one process too. Passed as `sampler`, so Lightning
        # recognises it and never swaps in its own under DDP.
        sampler = TrainerEpochSampler(self._sets[split], trainer, num_replicas=world, rank=rank, shuffle=shuffle,
                                       seed=self.seed)
        return self._make_loader(self._sets[split], batch_size, sampler)

    def _world(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def per_process_batch(self, world_size: int) -> int:
        """`batch_size` is the global batch of the papers; each of `world_size` processes takes its share."""
        if self.batch_size % world_size:
            raise LotteryError(f"data.batch_size={self.batch_size} is the global batch and must divide evenly "
                               f"over {world_size} processes; choose a multiple of {world_size}")
        return self.batch_size // world_size

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.per_process_batch(self._world()), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def class_counts(self, split: str) -> dict[int, int]:
        """{class: examples} of a split ("train", "val", "test")."""
        self.setup()
        labels = self._sets[split].tensors[1]
        return {int(c): int(n) for c, n in zip(*torch.unique(labels.cpu(), return_counts=True))}

    def majority_share(self, split: str = "test") -> float:
        """The accuracy of always predicting the most frequent class of `split`: chance, for a classifier."""
        counts = self.class_counts(split)
        return max(counts.values()) / sum(counts.values()) if counts else 0.0

    def train_size(self) -> int:
        """Examples in the training split: the training set less the validation examples."""
        self.setup()
        return len(self._sets["train"])

    def steps_per_epoch(self, world_size: int = 1) -> int:
        self.setup()
        n = -(-len(self._sets["train"]) // world_size)
        return -(-n // self.per_process_batch(world_size))

    def augment_batch(self, x: torch.Tensor, epoch: int, batch_idx: int, rank: int = 0) -> torch.Tensor:
        """Random crop + flip of a training batch, seeded by (seed, epoch, batch_idx, rank); call it
        yourself in a plain PyTorch loop (Lightning calls it through `on_after_batch_transfer`)."""
        generator = torch.Generator(device=x.device).manual_seed(seeds.batch(self.seed, epoch, batch_idx, rank))
        fill = None if self.pad_fill is None else torch.tensor(self.pad_fill)
        return random_crop_flip(x, self.crop_padding, generator, fill)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training:
            x, y = batch
            # Called before the loop counts this batch as ready, so `ready` is this batch's index in the epoch
            # (restored from the checkpoint on resume).
            index = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            batch = (self.augment_batch(x, trainer.current_epoch, index, trainer.global_rank), y)
        return batch


# -- the embedded dataset ----------------------------------------------------------------------------
class DigitsDataModule(TensorDataModule):
    """scikit-learn's 8x8 digits: 1,437 training images (300 of them for validation), 360 for test."""

    num_classes = 10
    input_shape = (1, 8, 8)
    test_size = 360  # ~20% held out, fixed with split_seed

    def __init__(self, batch_size: int = 60, val_size: int | float = 300, **options):
        super().__init__(batch_size=batch_size, val_size=val_size, **options)  # 300 of the 1,437 training images

    def load(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values 0..16
        x = (x - x.mean()) / x.std()
        y = torch.tensor(digits.target, dtype=torch.long)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed + 1))
        test, train = perm[: self.test_size], perm[self.test_size:]
        return x[train], y[train], x[test], y[test]
