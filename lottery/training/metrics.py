"""Evaluation metrics beside accuracy, asked for by a dataset (`data.metrics`, e.g. lottery.data.text's), computed
with torchmetrics on the device from the predicted classes:

    f1   F1 of class 1 for two classes (GLUE's F1 on MRPC and QQP), macro F1 over the classes otherwise
    mcc  Matthews correlation coefficient (GLUE's metric on CoLA)

Logged as `val/f1`, `test/mcc` ...; metrics.json holds `test_f1`, `test_mcc` (and the validation history).
Datasets that ask for none (the vision ones) log and write exactly what they did before.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

from lottery.core.errors import Registry


def _f1(num_classes: int):
    if num_classes == 2:
        return BinaryF1Score(validate_args=False)
    return MulticlassF1Score(num_classes, average="macro", validate_args=False)


METRICS: Registry = Registry("metric", {
    "f1": _f1,
    "mcc": lambda num_classes: MulticlassMatthewsCorrCoef(num_classes, validate_args=False),
})


def extra_metrics(names: Sequence[str], num_classes: int) -> nn.ModuleDict:
    """One torchmetrics object per name, updated with (predicted classes, targets)."""
    return nn.ModuleDict({name: METRICS.lookup(name)(num_classes) for name in names})


def data_metrics(data) -> tuple[str, ...]:
    """The metrics a datamodule asks for beside accuracy (none unless it declares `metrics`)."""
    return tuple(getattr(data, "metrics", ()))
