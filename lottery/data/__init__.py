"""Data registry: `create_datamodule(name, **options)` builds a LightningDataModule by name.

Registered: "digits" (embedded, no download), "mnist", "fashion_mnist", "cifar10", "cifar100"
(torchvision; options root, download, verify), "imagefolder" (options root, image_size), "text" (CSV, JSON lines,
a datasets folder or hub name, tokenized once: lottery.data.text). Any user Dataset pair:
`DatasetDataModule(train, test, num_classes, input_shape)`.
"""
from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl

from lottery.core.errors import LotteryError, Registry
from lottery.data.base import DigitsDataModule, TensorDataModule
from lottery.data.folder import ImageFolderDataModule
from lottery.data.text import TextDataModule
from lottery.data.vision import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TorchvisionDataModule,
)
from lottery.data.wrap import DatasetDataModule

DATASETS: Registry[Callable[..., pl.LightningDataModule]] = Registry("dataset", {
    "digits": DigitsDataModule,
    "mnist": MNISTDataModule,
    "fashion_mnist": FashionMNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "imagefolder": ImageFolderDataModule,
    "text": TextDataModule,
}, summaries={
    "digits": "scikit-learn's 8x8 handwritten digits, 1,797 images, embedded (no download)",
    "mnist": "MNIST through torchvision (data.options.root, download)",
    "fashion_mnist": "Fashion-MNIST through torchvision",
    "cifar10": "CIFAR-10 through torchvision, random crops and flips on the device",
    "cifar100": "CIFAR-100 through torchvision, random crops and flips on the device",
    "imagefolder": "a folder of class subfolders, train/ and val/ or test/ (data.options.root)",
    "text": "text classification from CSV, JSON lines or a datasets folder, tokenized (docs/pretrained.md)",
})


def create_datamodule(name: str, **options) -> pl.LightningDataModule:
    factory = DATASETS.lookup(name)
    try:
        return factory(**options)
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        raise LotteryError(f"dataset {name!r}: {error}; see help({DATASETS[name].__name__}) for its options") from error


__all__ = ["DATASETS", "TensorDataModule", "DigitsDataModule", "TorchvisionDataModule", "MNISTDataModule",
           "FashionMNISTDataModule", "CIFAR10DataModule", "CIFAR100DataModule", "ImageFolderDataModule", "TextDataModule",
           "DatasetDataModule", "create_datamodule"]
