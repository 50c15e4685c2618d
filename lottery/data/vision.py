"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision, read once into tensors.

torchvision finds (or downloads) and parses the files; the pixels then go straight into one tensor,
normalised with the training set's per-channel mean and std, with no per-image PIL pipeline.
Validation: 5,000 training examples held out, as in Frankle & Carbin (2019), Appendix (MNIST: 55k/5k;
CIFAR-10: 45k/5k).
"""
from __future__ import annotations

import os
import pickle

import torch

from lottery.core.errors import LotteryError
from lottery.data.base import TensorDataModule


def _without_checksums(cls: type) -> type:
    """The torchvision CIFAR class with its md5 checks off (it checks every file, even with download=False)."""
    return type(cls.__name__, (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


class TorchvisionDataModule(TensorDataModule):
    """Base of the torchvision datasets: subclasses name the class, its folder, files and statistics."""

    torchvision_class: str  # name in torchvision.datasets
    title: str  # for messages
    folder: str  # where torchvision keeps the files, under root
    files: tuple[str, ...]  # the files it reads, under folder
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(self, root: str = "data", download: bool = True, verify: bool = True, **options):
        """root: folder holding the dataset (torchvision's layout); download: fetch it there when missing;
        verify: check torchvision's md5 sums where it has them (CIFAR; MNIST's unpacked files have none)."""
        super().__init__(**options)
        self.root, self.download, self.verify = str(root), download, verify
        self.pad_fill = tuple(-m / s for m, s in zip(self.mean, self.std))  # black, after normalisation

    def _open(self, train: bool):
        import torchvision

        cls = getattr(torchvision.datasets, self.torchvision_class)
        if not self.verify and hasattr(cls, "train_list"):
            cls = _without_checksums(cls)
        try:
            return cls(self.root, train=train, download=self.download)
        except (RuntimeError, OSError) as error:  # torchvision's "not found", failed downloads (URLError)
            raise self._explain(error) from error
        except (pickle.UnpicklingError, EOFError, AssertionError, ValueError, TypeError, KeyError) as error:
            path = os.path.join(self.root, self.folder)
            raise LotteryError(f"could not read the {self.title} files in {path} ({type(error).__name__}: {error}); "
                               f"delete them and set data.download=true to download them again") from error

    def _explain(self, error: Exception) -> LotteryError:
        path = os.path.join(self.root, self.folder)
        missing = [name for name in self.files if not os.path.isfile(os.path.join(path, name))]
        if missing and not self.download:
            return LotteryError(
                f"{self.title} not found in {path} (missing {', '.join(missing)}); set data.download=true to "
                f"download it into data.root={self.root!r}, or put the files there")
        if missing:
            return LotteryError(
                f"could not download {self.title} into {path} ({error}); check the network connection, or "
                f"download the files elsewhere, put them in {path} and set data.download=false")
        return LotteryError(
            f"the {self.title} files in {path} do not match torchvision's checksums ({error}); delete the folder "
            f"and set data.download=true to fetch them again, or set data.verify=false to use these files as they are")

    def _tensors(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def load(self):
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        (x, y), (x_test, y_test) = self._tensors(True), self._tensors(False)
        return (x - mean) / std, y, (x_test - mean) / std, y_test


class MNISTDataModule(TorchvisionDataModule):
    torchvision_class, title, folder = "MNIST", "MNIST", "MNIST"
    files = ("raw/train-images-idx3-ubyte", "raw/train-labels-idx1-ubyte",
             "raw/t10k-images-idx3-ubyte", "raw/t10k-labels-idx1-ubyte")
    num_classes, input_shape = 10, (1, 28, 28)
    mean, std = (0.1307,), (0.3081,)  # over the 60,000 training images (PyTorch's MNIST example)

    def _tensors(self, train: bool):
        dataset = self._open(train)
        return dataset.data.unsqueeze(1).float() / 255, dataset.targets.long()


class FashionMNISTDataModule(MNISTDataModule):
    torchvision_class, title, folder = "FashionMNIST", "Fashion-MNIST", "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)  # over the 60,000 training images


class CIFAR10DataModule(TorchvisionDataModule):
    torchvision_class, title, folder = "CIFAR10", "CIFAR-10", "cifar-10-batches-py"
    files = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")
    num_classes, input_shape = 10, (3, 32, 32)
    # Per-channel mean and std of the 50,000 training images (RGB).
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def __init__(self, augment: bool = True, **options):
        super().__init__(augment=augment, **options)

    def _tensors(self, train: bool):
        dataset = self._open(train)
        x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).float() / 255  # HWC uint8 -> CHW float
        return x.contiguous(), torch.tensor(dataset.targets, dtype=torch.long)


class CIFAR100DataModule(CIFAR10DataModule):
    torchvision_class, title, folder = "CIFAR100", "CIFAR-100", "cifar-100-python"
    files = ("train", "test", "meta")
    num_classes = 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # over the 50,000 training images
