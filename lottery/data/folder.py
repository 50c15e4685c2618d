"""Any folder of images, one subfolder per class (torchvision's ImageFolder layout):

    root/train/<class>/*.png|jpg...   training images (the validation split is taken from them)
    root/val/<class>/...  or  root/test/<class>/...   the held-out test images

Every image is decoded once, resized to `image_size` x `image_size` RGB and kept as a tensor, so this
suits datasets that fit in memory (~3 * image_size**2 * 4 bytes per image); normalised with the
per-channel mean and std of the training images.
"""
from __future__ import annotations

import os

import torch

from lottery.core.errors import LotteryError
from lottery.data.base import TensorDataModule


class ImageFolderDataModule(TensorDataModule):
    def __init__(self, root: str = "data", image_size: int = 32, val_size: int | float = 0.1,
                 load_workers: int = 0, **options):
        """image_size: side in pixels every image is resized to; load_workers: processes decoding images."""
        super().__init__(val_size=val_size, **options)
        self.root, self.image_size, self.load_workers = str(root), image_size, load_workers
        self.input_shape = (3, image_size, image_size)

    def _folder(self, split: str) -> str:
        names = ("train",) if split == "train" else ("val", "test")
        for name in names:
            if os.path.isdir(os.path.join(self.root, name)):
                return os.path.join(self.root, name)
        raise LotteryError(f"image folder {self.root!r} has no {' or '.join(n + '/' for n in names)} subfolder; "
                           "put the images in <root>/train/<class>/ and <root>/val/<class>/ (or test/), "
                           "or point data.root at such a folder")

    @property
    def num_classes(self) -> int:
        from torchvision.datasets.folder import find_classes

        try:
            return len(find_classes(self._folder("train"))[0])
        except FileNotFoundError as error:
            raise LotteryError(f"{error}; put one subfolder per class in {self._folder('train')}") from error

    def _read(self, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        from torchvision import transforms
        from torchvision.datasets import ImageFolder

        folder = self._folder(split)
        transform = transforms.Compose([transforms.Resize((self.image_size, self.image_size)),
                                        transforms.PILToTensor()])
        try:
            dataset = ImageFolder(folder, transform=transform)
        except FileNotFoundError as error:
            raise LotteryError(f"{error}; put one subfolder per class, holding images, in {folder}") from error
        loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=self.load_workers)
        xs, ys = zip(*loader)
        return torch.cat(xs).float() / 255, torch.cat(ys).long(), dataset.classes

    def load(self):
        x, y, classes = self._read("train")
        x_test, y_test, test_classes = self._read("test")
        if classes != test_classes:
            raise LotteryError(f"the class folders of {self._folder('train')} ({', '.join(classes)}) and "
                               f"{self._folder('test')} ({', '.join(test_classes)}) differ; give both the same classes")
        mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        self.pad_fill = tuple((-mean / std).tolist())  # black, after normalisation
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        return (x - mean) / std, y, (x_test - mean) / std, y_test
