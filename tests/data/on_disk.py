"""Tiny dataset files in each dataset's real on-disk format (MNIST's IDX files, CIFAR's pickled batches),
for the tests that read them through torchvision as users do."""
from __future__ import annotations

import pickle
import struct

import numpy as np

MNIST_LIKE = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
CIFAR = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _write_idx(path, array: np.ndarray) -> None:
    """IDX format (LeCun): magic 0x0000 08 <ndim> (uint8 data), big-endian uint32 sizes, then the bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root, folder: str, n_train: int = 40, n_test: int = 20) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"  # torchvision reads the unpacked files from <root>/<ClassName>/raw/
    raw.mkdir(parents=True)
    data = {"train_x": _images(n_train, (28, 28), 1), "train_y": np.arange(n_train, dtype=np.uint8) % 10,
            "test_x": _images(n_test, (28, 28), 2), "test_y": (np.arange(n_test, dtype=np.uint8) * 3) % 10}
    for prefix, split in (("train", "train"), ("t10k", "test")):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", data[f"{split}_x"])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", data[f"{split}_y"])
    return data


def _pickle(path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar(root, name: str, n_train: int = 40, n_test: int = 10) -> dict[str, np.ndarray]:
    """The python versions of CIFAR: pickled dicts with 'data' (N, 3072) uint8, rows R then G then B planes."""
    classes = 10 if name == "cifar10" else 100
    folder = root / CIFAR[name]
    folder.mkdir(parents=True)
    data = {"train_x": _images(n_train, (3072,), 3), "train_y": np.arange(n_train) % classes,
            "test_x": _images(n_test, (3072,), 4), "test_y": (np.arange(n_test) * 7) % classes}
    if name == "cifar10":
        for i, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            _pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                                 "labels": data["train_y"][chunk].tolist(),
                                                 "data": data["train_x"][chunk],
                                                 "filenames": [f"{j}.png" for j in chunk]})
        _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": data["test_y"].tolist(),
                                        "data": data["test_x"], "filenames": [f"{j}.png" for j in range(n_test)]})
        _pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)],
                                          "num_cases_per_batch": n_train // 5, "num_vis": 3072})
    else:
        for split in ("train", "test"):
            labels = data[f"{split}_y"].tolist()
            _pickle(folder / split, {"filenames": [f"{j}.png" for j in range(len(labels))], "batch_label": split,
                                     "fine_labels": labels, "coarse_labels": [y // 5 for y in labels],
                                     "data": data[f"{split}_x"]})
        _pickle(folder / "meta", {"fine_label_names": [f"fine{c}" for c in range(100)],
                                  "coarse_label_names": [f"coarse{c}" for c in range(20)]})
    return data
