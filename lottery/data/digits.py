"""scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes): real data that ships inside
an installed package, so the demo needs no download."""
from __future__ import annotations

import torch

from lottery.data.base import TensorDataModule


class DigitsDataModule(TensorDataModule):
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
