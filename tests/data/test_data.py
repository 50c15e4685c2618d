"""Datamodules read tiny files written in each dataset's real on-disk format, through the users' code path."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.data import DATASETS, DatasetDataModule, create_datamodule
from lottery.data.augment import crop, pad, random_crop_flip
from tests.data.on_disk import CIFAR, MNIST_LIKE, write_cifar, write_mnist


def _all_train_labels(dm) -> list[int]:
    return sorted(dm._sets["train"].tensors[1].tolist() + dm._sets["val"].tensors[1].tolist())


@pytest.mark.parametrize("name", list(MNIST_LIKE))
def test_mnist_like_idx_files(tmp_path, name):
    data = write_mnist(tmp_path, MNIST_LIKE[name])
    dm = create_datamodule(name, root=str(tmp_path), download=False, val_size=8, batch_size=16)
    dm.setup()
    assert (dm.num_classes, dm.input_shape) == (10, (1, 28, 28))
    assert [len(dm._sets[s]) for s in ("train", "val", "test")] == [32, 8, 20]
    x_test, y_test = dm._sets["test"].tensors
    expected = (torch.from_numpy(data["test_x"]).float().unsqueeze(1) / 255 - dm.mean[0]) / dm.std[0]
    torch.testing.assert_close(x_test, expected)
    assert y_test.tolist() == data["test_y"].tolist()
    assert _all_train_labels(dm) == sorted(data["train_y"].tolist())
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert not dm.augment  # no augmentation for MNIST by default


@pytest.mark.parametrize("name", list(CIFAR))
def test_cifar_pickle_batches(tmp_path, name):
    data = write_cifar(tmp_path, name)
    dm = create_datamodule(name, root=tmp_path, download=False, verify=False, val_size=5)
    dm.setup()
    assert (dm.num_classes, dm.input_shape) == ({"cifar10": 10, "cifar100": 100}[name], (3, 32, 32))
    assert [len(dm._sets[s]) for s in ("train", "val", "test")] == [35, 5, 10]
    x_test, y_test = dm._sets["test"].tensors
    pixels = torch.from_numpy(data["test_x"]).view(-1, 3, 32, 32).float() / 255  # R, G, B planes
    mean, std = torch.tensor(dm.mean).view(1, 3, 1, 1), torch.tensor(dm.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x_test, (pixels - mean) / std)
    assert y_test.tolist() == data["test_y"].tolist()
    assert _all_train_labels(dm) == sorted(data["train_y"].tolist())
    assert dm.augment  # CIFAR trains with crop + flip by default


@pytest.mark.parametrize("name", list(CIFAR))
def test_cifar_checksums_are_checked_by_default(tmp_path, name):
    # torchvision checks the md5 of every CIFAR file even with download=False; files that are not the
    # official release are refused with a message that names the way out.
    write_cifar(tmp_path, name)
    dm = create_datamodule(name, root=tmp_path, download=False, val_size=5)
    with pytest.raises(LotteryError, match="checksums") as error:
        dm.setup()
    assert "data.verify=false" in str(error.value) and CIFAR[name] in str(error.value)


@pytest.mark.parametrize("name", list(MNIST_LIKE) + list(CIFAR))
def test_missing_files_without_download(tmp_path, name):
    dm = create_datamodule(name, root=tmp_path / "nowhere", download=False)
    with pytest.raises(LotteryError) as error:
        dm.setup()
    message = str(error.value)
    assert dm.title in message and str(tmp_path / "nowhere") in message
    assert "data.download=true" in message and "put the files there" in message


def write_image_folder(root, sizes=((20, 12), (9, 9), (40, 30))) -> None:
    from PIL import Image

    for split, count in (("train", 6), ("val", 2)):
        for label, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                w, h = sizes[i % len(sizes)]
                value = 40 + 150 * label + i
                Image.new("RGB", (w, h), (value, 255 - value, 7 * i)).save(root / split / cls / f"{i}.png")


def test_image_folder(tmp_path):
    write_image_folder(tmp_path)
    dm = create_datamodule("imagefolder", root=tmp_path, image_size=16, val_size=2, batch_size=4)
    assert (dm.num_classes, dm.input_shape) == (2, (3, 16, 16))
    dm.setup()
    assert [len(dm._sets[s]) for s in ("train", "val", "test")] == [10, 2, 4]
    assert dm._sets["test"].tensors[1].tolist() == [0, 0, 1, 1]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and set(y.tolist()) <= {0, 1}
    train = torch.cat([dm._sets["train"].tensors[0], dm._sets["val"].tensors[0]])
    torch.testing.assert_close(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)  # normalised


def test_image_folder_errors(tmp_path):
    with pytest.raises(LotteryError, match="train/"):
        create_datamodule("imagefolder", root=tmp_path).setup()
    write_image_folder(tmp_path)
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "wolf")
    with pytest.raises(LotteryError, match="differ"):
        create_datamodule("imagefolder", root=tmp_path, val_size=2).setup()


def _batches(dm, epoch: int = 0) -> list[torch.Tensor]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does at each epoch start
    return [y for _, y in loader]


def test_seeded_order_and_split(tmp_path):
    write_mnist(tmp_path, "MNIST")

    def make(seed):
        dm = create_datamodule("mnist", root=tmp_path, download=False, val_size=8, batch_size=8, seed=seed)
        dm.setup()
        return dm

    a, b, c = make(0), make(0), make(1)
    assert all(torch.equal(p, q) for p, q in zip(_batches(a), _batches(b)))
    assert not all(torch.equal(p, q) for p, q in zip(_batches(a), _batches(c)))
    assert not all(torch.equal(p, q) for p, q in zip(_batches(a, 0), _batches(a, 1)))
    assert torch.equal(a._sets["val"].tensors[0], c._sets["val"].tensors[0])  # the split follows split_seed only


@pytest.mark.parametrize("loaded_first", [True, False])
def test_with_seed_reads_the_data_once_and_keeps_the_seeds_order(tmp_path, monkeypatch, loaded_first):
    write_mnist(tmp_path, "MNIST")
    a = create_datamodule("mnist", root=tmp_path, download=False, val_size=8, batch_size=8, seed=0)
    if loaded_first:
        a.setup()
    reads = []
    monkeypatch.setattr(type(a), "load", lambda self, load=type(a).load: reads.append(self.seed) or load(self))
    b = a.with_seed(1)
    b.setup(), a.setup()
    assert len(reads) == (0 if loaded_first else 1)  # once for both seeds, or not again
    assert b._sets["train"] is a._sets["train"] and (a.seed, b.seed) == (0, 1)
    alone = create_datamodule("mnist", root=tmp_path, download=False, val_size=8, batch_size=8, seed=1)
    alone.setup()
    assert all(torch.equal(p, q) for p, q in zip(_batches(b), _batches(alone)))  # seed 1's order, as if built alone


def test_augmentation_keeps_shape_changes_images_and_is_seeded():
    dm = DATASETS["cifar10"](seed=3)
    x = torch.randn(16, 3, 32, 32)
    out = dm.augment_batch(x, epoch=0, batch_idx=0)
    assert out.shape == x.shape and not torch.equal(out, x)
    torch.testing.assert_close(out, dm.augment_batch(x, epoch=0, batch_idx=0), atol=0, rtol=0)
    assert not torch.equal(out, dm.augment_batch(x, epoch=0, batch_idx=1))
    assert not torch.equal(out, dm.augment_batch(x, epoch=1, batch_idx=0))
    assert not torch.equal(out, DATASETS["cifar10"](seed=4).augment_batch(x, epoch=0, batch_idx=0))


def test_crop_offsets():
    x = torch.randn(4, 3, 8, 8)
    padded = pad(x, 2, fill=torch.tensor([1.0, 2.0, 3.0]))
    assert padded[:, 1, 0, 0].eq(2.0).all() and padded.shape == (4, 3, 12, 12)
    zero, centre = torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    assert torch.equal(crop(padded, zero, zero, 8, 8), padded[:, :, :8, :8])
    assert torch.equal(crop(padded, centre, centre, 8, 8), x)  # the padded image's centre is the image
    top, left = torch.tensor([0, 1, 2, 4]), torch.tensor([4, 3, 0, 1])
    out = crop(padded, top, left, 8, 8)
    for i in range(4):
        assert torch.equal(out[i], padded[i, :, top[i]:top[i] + 8, left[i]:left[i] + 8])


def test_flip_and_crop_are_the_only_changes():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(0))  # no padding: identity or mirror
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3 * 32 * 32, 10)
        self.seen = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0].clone())
        return nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0].clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(root, **options):
    dm = create_datamodule("cifar10", root=root, download=False, verify=False, val_size=5, batch_size=10,
                           eval_batch_size=5, **options)
    module = _Recorder()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    return dm, module.seen


def test_augmentation_in_training_through_lightning(tmp_path):
    write_cifar(tmp_path, "cifar10")
    dm, seen = _fit(tmp_path, device_resident=True, seed=5)
    assert dm._sets["train"].tensors[0].device.type == "cpu"
    _, again = _fit(tmp_path, device_resident=True, seed=5)
    _, plain = _fit(tmp_path, augment=False, seed=5)
    assert len(seen["train"]) == 8  # 35 examples, batches of 10, 2 epochs
    assert all(torch.equal(p, q) for p, q in zip(seen["train"], again["train"]))
    assert all(p.shape == q.shape and not torch.equal(p, q) for p, q in zip(seen["train"], plain["train"]))
    assert all(torch.equal(p, q) for p, q in zip(seen["val"], plain["val"]))  # evaluation is never augmented
    # Each batch of an epoch is seeded with its own index: replay it by hand.
    expected = dm.augment_batch(plain["train"][5], epoch=1, batch_idx=1)
    assert torch.equal(seen["train"][5], expected)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        self.x = torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 3


@pytest.mark.parametrize("materialize", [True, False])
def test_dataset_datamodule(materialize):
    train, test = _Pairs(30, 0), _Pairs(9, 1)
    make = lambda seed: DatasetDataModule(train, test, 3, (1, 6, 6), materialize=materialize,  # noqa: E731
                                          val_size=6, batch_size=8, seed=seed)
    dm = make(0)
    dm.setup()
    assert [len(dm._sets[s]) for s in ("train", "val", "test")] == [24, 6, 9]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 6, 6) and y.dtype == torch.long
    assert all(torch.equal(p, q) for p, q in zip(_batches(dm), _batches(make(0))))
    assert not all(torch.equal(p, q) for p, q in zip(_batches(dm), _batches(make(1))))
    assert sum(len(b) for b in _batches(dm)) == 24


def test_dataset_datamodule_auto_and_bad_items():
    assert DatasetDataModule(_Pairs(10, 0), _Pairs(4, 1), 3, (1, 6, 6)).materialized()
    assert not DatasetDataModule(_Pairs(10, 0), _Pairs(4, 1), 3, (1, 6, 6), materialize_limit_mb=1e-6).materialized()
    with pytest.raises(LotteryError, match="input_shape"):
        DatasetDataModule(_Pairs(10, 0), _Pairs(4, 1), 3, (3, 6, 6), val_size=2).setup()


def test_unknown_option_and_bad_device_resident():
    with pytest.raises(LotteryError, match="unexpected keyword argument 'colour'"):
        create_datamodule("cifar10", colour=True)
    with pytest.raises(LotteryError, match="device_resident"):
        create_datamodule("mnist", device_resident="sometimes")


def test_digits_unchanged():
    dm = create_datamodule("digits", batch_size=32, val_size=200, seed=0, split_seed=0)
    # batch_size is the global batch: two processes take 16 each, so an epoch has as many steps.
    assert (dm.num_classes, dm.input_shape, dm.steps_per_epoch(1), dm.steps_per_epoch(2)) == (10, (1, 8, 8), 39, 39)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8)
    assert len(list(dm.val_dataloader())) == 1 and len(list(dm.test_dataloader())) == 1


@pytest.mark.parametrize("world, rank, drop_last", [(1, 0, False), (2, 1, False), (7, 3, False), (4, 0, True)])
def test_an_epochs_order_as_a_tensor_is_the_samplers_own(world, rank, drop_last):
    """TrainerEpochSampler.order (the lanes' batches, lottery.training.lane_data) yields what iterating it yields."""
    from torch.utils.data import TensorDataset

    from lottery.data.base import TrainerEpochSampler

    for shuffle in (True, False):
        sampler = TrainerEpochSampler(TensorDataset(torch.arange(103)), None, num_replicas=world, rank=rank,
                                      shuffle=shuffle, seed=11, drop_last=drop_last)
        sampler.set_epoch(5)
        assert sampler.order().tolist() == list(sampler)
