"""TextDataModule: single-sentence and sentence-pair classification, tokenized once and held as tensors.

    data.name=text data.options={train: train.csv, test: dev.csv, text: sentence1, text_pair: sentence2,
                                 label: label, tokenizer: <folder or hub name>, max_length: 128}

Sources (`train`, `test`): CSV files (a header row), JSON-lines files (one object per line), or a folder written
by `datasets`' `save_to_disk` (a DatasetDict whose `train_split` and `test_split` are used; `test` may then be
left out); or `hub: glue, subset: rte` through `datasets.load_dataset` (the network or its cache). GLUE keeps its
test labels hidden, so its `validation` split is the test set here, as in Chen et al. (2020).

Each example becomes x = [3, L] integers: token ids, attention mask and token type ids (lottery.models.hf's input),
padded and truncated to `max_length` by the model's tokenizer (`AutoTokenizer`, from `tokenizer`: by default the
model's own hf: name). Held as tensors like the vision data, so batches are one gather, lanes and device-resident
data work the same way, and a validation split of the training set is taken with `split_seed`. Labels are
integers or strings: the distinct values of the training and test sets, sorted, are the classes 0..C-1
(`classes`), so integer labels 0..C-1 keep their numbers.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from lottery.core.errors import LotteryError, require
from lottery.core.hub import from_hub, not_there
from lottery.data.base import TensorDataModule

FILE_KINDS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


class TextDataModule(TensorDataModule):
    metrics = ("f1", "mcc")  # evaluated beside accuracy (lottery.training.module): GLUE's F1 (MRPC, QQP), MCC (CoLA)

    def __init__(self, train: str | None = None, test: str | None = None, hub: str | None = None,
                 subset: str | None = None, train_split: str = "train", test_split: str = "validation",
                 text: str = "sentence", text_pair: str | None = None, label: str = "label",
                 tokenizer: str | None = None, max_length: int = 128, batch_size: int = 32,
                 val_size: int | float = 0.1, **options):
        super().__init__(batch_size=batch_size, val_size=val_size, **options)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise LotteryError(f"data.options.max_length={max_length!r} must be an integer >= 2 (tokens per example)")
        if (train is None) == (hub is None):
            raise LotteryError("data.name=text needs data.options.train (a CSV, JSON-lines or datasets folder) "
                               "or data.options.hub (a datasets name, e.g. glue with subset: rte), one of them")
        self.sources = {"train": train, "test": test}
        self.hub, self.subset, self.splits = hub, subset, {"train": train_split, "test": test_split}
        self.columns = [c for c in (text, text_pair) if c is not None]
        self.label, self.tokenizer, self.max_length = label, tokenizer, max_length
        self.input_shape = (3, max_length)  # token ids, attention mask, token type ids
        self._raw: dict[str, dict[str, list]] = {}  # split -> column -> values; shared by with_seed copies

    # -- reading ---------------------------------------------------------------------------------------
    def _rows(self, split: str) -> dict[str, list]:
        """The split's columns (`split`: train or test), read once."""
        if split not in self._raw:
            self._raw[split] = self._read(split)
        return self._raw[split]

    def _read(self, split: str) -> dict[str, list]:
        if self.hub is not None:
            datasets = require("datasets", "data.options.hub", "hf")
            try:  # the network, or its cache (HF_HUB_OFFLINE=1: the cache only)
                data = datasets.load_dataset(self.hub, self.subset, split=self.splits[split])
            except (OSError, ConnectionError, ValueError) as e:
                raise not_there("data.options.hub=", self.hub, e) from None
            return self._checked(data.to_dict(), f"{self.hub} ({self.splits[split]})")
        source = self.sources[split] or (self.sources["train"] if Path(self.sources["train"]).is_dir() else None)
        if source is None:
            raise LotteryError(f"data.options.test is not set: give the test set's file (CSV or JSON lines) beside "
                               f"data.options.train={self.sources['train']}")
        path = Path(source).expanduser()
        if path.is_dir():
            return self._checked(_saved_dataset(path, self.splits[split]), f"{path} ({self.splits[split]})")
        if not path.is_file():
            raise LotteryError(f"data.options.{split}={source} does not exist; give a CSV or JSON-lines file, "
                               "or a folder written by datasets' save_to_disk")
        kind = FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            raise LotteryError(f"data.options.{split}={source}: unknown kind of file {path.suffix!r}; use .csv, "
                               ".jsonl (or .json with one object per line), or a datasets folder")
        return self._checked(_read_csv(path) if kind == "csv" else _read_jsonl(path), str(path))

    def _checked(self, columns: dict[str, list], where: str) -> dict[str, list]:
        for role, name in [("text", self.columns[0]), *([("text_pair", self.columns[1])] if len(self.columns) > 1 else []),
                           ("label", self.label)]:
            if name not in columns:
                raise LotteryError(f"{where} has no column {name!r} (data.options.{role}); its columns are "
                                   f"{sorted(columns)}: set data.options.{role}=<one of them>")
        if not columns[self.label]:
            raise LotteryError(f"{where} holds no examples (its columns {sorted(columns)}, no rows); give a file with "
                               "one example per row")
        for name in self.columns:
            bad = next((i for i, v in enumerate(columns[name]) if not isinstance(v, str)), None)
            if bad is not None:
                raise LotteryError(f"{where}: example {bad} of column {name!r} is {columns[name][bad]!r}, not text")
        return {name: columns[name] for name in [*self.columns, self.label]}

    # -- labels ----------------------------------------------------------------------------------------
    @property
    def classes(self) -> list:
        """The distinct labels of the training and test sets, sorted: class k is classes[k]."""
        if "classes" not in self._raw:
            values = [_label(v, i, self.label) for split in ("train", "test") for i, v in enumerate(self._rows(split)[self.label])]
            kinds = {type(v) for v in values}
            if len(kinds) > 1:
                raise LotteryError(f"the labels in column {self.label!r} mix integers and strings; make them all one kind")
            self._raw["classes"] = sorted(set(values))
        return self._raw["classes"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _labels(self, split: str) -> torch.Tensor:
        index = {c: k for k, c in enumerate(self.classes)}
        return torch.tensor([index[_label(v, i, self.label)] for i, v in enumerate(self._rows(split)[self.label])])

    # -- tokens ----------------------------------------------------------------------------------------
    def _tokenizer(self):
        transformers = require("transformers", "data.name=text (its tokenizer)", "hf")
        if self.tokenizer is None:
            raise LotteryError("data.options.tokenizer is not set: name the tokenizer's folder or hub name (with an "
                               "hf: model it is the model's own by default)")
        return from_hub(transformers.AutoTokenizer.from_pretrained, self.tokenizer, "data.options.tokenizer=")

    def _tokens(self, tokenizer, split: str) -> torch.Tensor:
        rows = self._rows(split)
        out = tokenizer(*(rows[c] for c in self.columns), max_length=self.max_length, truncation=True,
                        padding="max_length", return_tensors="pt")
        ids = out["input_ids"]
        types = out.get("token_type_ids", torch.zeros_like(ids))
        return torch.stack([ids, out["attention_mask"], types], dim=1).long()

    def load(self):
        labels = self._labels("train"), self._labels("test")  # the files and labels checked before the tokenizer loads
        tokenizer = self._tokenizer()
        return self._tokens(tokenizer, "train"), labels[0], self._tokens(tokenizer, "test"), labels[1]


def _label(value, index: int, column: str):
    """An integer or string label as it is; a CSV's "1" is the integer 1; anything else is a LotteryError."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            float(text)
        except ValueError:
            return text
        raise LotteryError(f"label {value!r} of example {index} (column {column!r}) is a number but not an integer: "
                           "labels must be integers or strings (a regression target is not a class)")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise LotteryError(f"label {value!r} of example {index} (column {column!r}) is a {type(value).__name__}: labels "
                       "must be integers or strings")


def _read_csv(path: Path) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        names = reader.fieldnames or []
    return {name: [row[name] for row in rows] for name in names}


def _read_jsonl(path: Path) -> dict[str, list]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LotteryError(f"{path} line {number} is not JSON ({e.msg}); write one JSON object per line") from None
        if not isinstance(row, dict):
            raise LotteryError(f"{path} line {number} holds a {type(row).__name__}, not an object of columns")
        rows.append(row)
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _saved_dataset(path: Path, split: str) -> dict[str, list]:
    datasets = require("datasets", f"the datasets folder {path}", "hf")
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise LotteryError(f"{path} is not a folder written by datasets' save_to_disk ({str(e).splitlines()[0]})") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise LotteryError(f"{path} has no split {split!r}; its splits are {sorted(data)}: set "
                               "data.options.train_split / test_split")
        data = data[split]
    return data.to_dict()
