"""Deploy a ticket: formats that are really smaller (and faster where the hardware allows).

Works on any model with a MaskManager (or plain zeros in its weights), not only on lottery runs:

    from lottery.export import export, load_compact, shrink, sparsify
    export(model, "compact", "model.safetensors", masks=manager)             # values + bit-packed mask
    export(model, "shrunk", "model.pt2", masks=manager, example_input=x)     # dead units removed
    export(model, "onnx", "model.onnx", masks=manager, example_input=x)      # shrunk, for onnxruntime
    fast, choice = sparsify(model, x)                                        # CSR / 2:4 where measured faster
    export(model, "supermask", "strong.safetensors", masks=manager, metadata=recipe)  # a strong ticket: seed + mask

The research ticket (`lottery.save_ticket`) is the fourth format; `export_ticket` turns one into the others.
"""
from lottery.export.compact import Compact, load_compact, save_compact
from lottery.export.formats import FORMATS, export
from lottery.export.onnx import run_onnx, save_onnx
from lottery.export.shrink import ShrinkReport, save_shrunk, shrink
from lottery.export.source import export_ticket, model_from_ticket
from lottery.export.sparse import CSRLinear, SemiStructuredLinear, sparsify
from lottery.export.supermask import load_supermask, save_supermask

__all__ = ["FORMATS", "export", "save_compact", "load_compact", "Compact", "shrink", "save_shrunk", "ShrinkReport",
           "save_onnx", "run_onnx", "sparsify", "CSRLinear", "SemiStructuredLinear", "model_from_ticket",
           "export_ticket", "save_supermask", "load_supermask"]
