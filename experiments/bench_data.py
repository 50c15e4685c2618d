"""Where does a CIFAR epoch go: the data pipeline or the model? Epoch time of one model trained three ways:

  (a) classic   torchvision CIFAR10 + ToTensor/Normalize/RandomCrop/Flip per image + DataLoader workers
  (b) resident  lottery's CIFAR10DataModule: tensors on the device, one gather per batch, crop+flip on device
  (c) compute   the same model on batches already built on the device (the floor for (a) and (b))

plus each pipeline alone (no model). Synthetic CIFAR-shaped data is written in the real CIFAR-10 format
to a temporary folder, so nothing is downloaded. Defaults take ~1-2 minutes on 2 CPU cores:

    .venv/bin/python experiments/bench_data.py                 # cuda if available, else cpu
    .venv/bin/python experiments/bench_data.py --device cuda --train-size 50000 --epochs 3
"""
from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time

import numpy as np
import torch
from torch import nn

from lottery.data import CIFAR10DataModule
from lottery.data.vision import _without_checksums


def write_cifar10(root: str, train_size: int, test_size: int) -> None:
    """Random images in the CIFAR-10 python format: 5 training batches, a test batch and batches.meta."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)

    def dump(name, n):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist(),
                 "batch_label": name, "filenames": [f"{i}.png" for i in range(n)]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i in range(1, 6):
        dump(f"data_batch_{i}", train_size // 5)
    dump("test_batch", test_size)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)]}, f, protocol=2)


def make_model(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    try:
        from lottery.models import create_model

        model = create_model(name, 10, (3, 32, 32))
    except Exception as error:  # the model registry is optional here: fall back to a small CNN
        print(f"(create_model({name!r}) failed: {error}; using an inline Conv-2)")
        model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 16 * 16, 256), nn.ReLU(),
                              nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    return model.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_epochs(batches_for_epoch, step, epochs: int, device: torch.device) -> float:
    """Seconds of the fastest epoch after the first (the first warms up workers, cuDNN and caches)."""
    times = []
    for epoch in range(epochs):
        sync(device)
        start = time.perf_counter()
        for x, y in batches_for_epoch(epoch):
            step(x, y)
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times[1:]) if len(times) > 1 else times[0]


def classic_loader(root: str, batch_size: int, workers: int, device: torch.device):
    import torchvision
    from torchvision import transforms

    mean, std = CIFAR10DataModule.mean, CIFAR10DataModule.std
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(mean, std)])
    # The synthetic files are not the official release: skip torchvision's md5 check, as data.verify=false does.
    dataset = _without_checksums(torchvision.datasets.CIFAR10)(root, train=True, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return lambda epoch: ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)


def resident_loader(root: str, batch_size: int, device: torch.device):
    dm = CIFAR10DataModule(root=root, download=False, verify=False, val_size=0, batch_size=batch_size)
    dm.move_to(device)
    loader = dm.train_dataloader()

    def epoch_batches(epoch):
        loader.sampler.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            yield dm.augment_batch(x, epoch, i), y  # what on_after_batch_transfer does under Lightning

    return epoch_batches, dm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-size", type=int, help="training images (default: 50000 on cuda, 1000 on cpu)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="per method; the fastest after the first is reported")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers in (a)")
    parser.add_argument("--model", default="conv2")
    args = parser.parse_args()
    device = torch.device(args.device)
    train_size = args.train_size or (50000 if device.type == "cuda" else 1000)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")

    with tempfile.TemporaryDirectory() as root:
        write_cifar10(root, train_size, 1000)
        model = make_model(args.model, device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(x, y):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def no_step(x, y):
            pass

        classic = classic_loader(root, args.batch_size, args.workers, device)
        resident, dm = resident_loader(root, args.batch_size, device)
        x_all, y_all = dm._sets["train"].tensors
        prebuilt = list(zip(x_all.split(args.batch_size), y_all.split(args.batch_size)))
        rows = {
            "(a) classic torchvision + DataLoader": (timed_epochs(classic, step, args.epochs, device),
                                                     timed_epochs(classic, no_step, args.epochs, device)),
            "(b) device-resident + on-device aug": (timed_epochs(resident, step, args.epochs, device),
                                                    timed_epochs(resident, no_step, args.epochs, device)),
            "(c) model compute on pre-built batches": (timed_epochs(lambda e: prebuilt, step, args.epochs, device),
                                                       0.0),
        }
    compute = rows["(c) model compute on pre-built batches"][0]
    print(f"\nmodel {args.model}, {train_size} images/epoch, batch {args.batch_size}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"workers (a) {args.workers}")
    print(f"{'method':40s} {'epoch s':>9s} {'x (c)':>7s} {'img/s':>9s} {'data only s':>12s}")
    for name, (seconds, data_only) in rows.items():
        print(f"{name:40s} {seconds:9.3f} {seconds / compute:7.2f} {train_size / seconds:9.0f} {data_only:12.3f}")


if __name__ == "__main__":
    main()
