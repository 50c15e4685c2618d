"""ONNX export: the shrunk (or the masked) model through `torch.onnx.export`, checked with onnxruntime.

The file runs with onnxruntime alone, for any batch size (input "input", output "logits"). Needs the
`onnx` extra: pip install -e ".[onnx]".
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from lottery.core.errors import LotteryError, require
from lottery.core.files import atomic_path


def save_onnx(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, masks=None,
              shrunk: bool = True, dynamo: bool = False, log=print) -> Path:
    """Export `model` (first shrunk where the shrinker can follow its graph, unless `shrunk=False`) to
    ONNX and check its logits with onnxruntime.

    `dynamo=False` uses the TorchScript exporter, which needs no onnxscript and exports our models
    in a fraction of a second; `dynamo=True` uses the torch.export-based one.
    """
    onnx = require("onnx", "the ONNX export", "onnx")
    require("onnxruntime", "checking the ONNX export", "onnx")
    small = None
    if shrunk:
        from lottery.export.shrink import shrink

        try:
            small, report = shrink(model, example_input, masks)
            log(str(report))
        except LotteryError as e:  # a graph the shrinker cannot follow: ONNX of the masked model still works
            log(f"{str(e).split('. Export')[0]}: exporting the masked model, unshrunk")
    if small is None:
        from lottery.export.compact import mask_dict

        small = _masked_copy(model, mask_dict(model, masks) if masks is not None else {})
    model = small
    model = model.eval()
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
            kwargs = dict(dynamic_shapes=({0: torch.export.Dim("batch")},)) if dynamo else \
                dict(dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            torch.onnx.export(model, (example_input,), str(tmp), input_names=["input"], output_names=["logits"],
                              dynamo=dynamo, external_data=False, **kwargs)
        onnx.checker.check_model(str(tmp))
        check(tmp, model, example_input)
    return Path(path)


def _masked_copy(model: nn.Module, masks: dict) -> nn.Module:
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in masks.items():
            model.get_parameter(name).mul_(mask.to(model.get_parameter(name).device))
    return model


def run_onnx(path: str | os.PathLike, inputs: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """Logits of the ONNX file at `path` on `inputs`, computed by onnxruntime on the CPU."""
    ort = require("onnxruntime", "running an ONNX export", "onnx")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": inputs.detach().cpu().numpy()})[0])


def check(path, model: nn.Module, example_input: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Raise a LotteryError unless onnxruntime gives `model`'s logits (a batch other than the example's too)."""
    batch = torch.cat([example_input, example_input[:1]])  # one more sample: the batch axis is dynamic
    with torch.no_grad():
        expected = model(batch)
    got = run_onnx(path, batch)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=atol, rtol=rtol):
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else f"shape {tuple(got.shape)}"
        raise LotteryError(f"the ONNX export of {type(model).__name__} does not reproduce its logits "
                           f"(max difference {diff}); export it with --format compact instead")
