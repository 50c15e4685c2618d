"""`lottery export --format compact|shrunk|onnx`: from a ticket file or a run folder, through the ticket."""
from pathlib import Path

import pytest
import torch

from lottery.cli.command import main
from lottery.export import load_compact, run_onnx
from lottery.models import create_model
from lottery.core.ticket import Ticket, save_ticket

ROOT = Path(__file__).resolve().parents[2]


def _ticket(pruned, tmp_path, name="lenet_300_100", density=0.1):
    model, masks, x = pruned(name, density)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {"architecture": name, "num_classes": 10, "input_shape": list(x.shape[1:]), "level": 3}
    return save_ticket(Ticket(masks.state_dict()["masks"], state, state, meta), tmp_path / "t.safetensors"), model, x


def test_every_format_from_a_ticket_file_gives_the_tickets_logits(pruned, tmp_path, capsys):
    ticket, model, x = _ticket(pruned, tmp_path)
    with torch.no_grad():
        expected = model(x)
    for fmt, name in [("compact", "c.safetensors"), ("shrunk", "s.pt2"), ("onnx", "m.onnx")]:
        assert main(["export", str(ticket), "--format", fmt, "--out", str(tmp_path / name)]) == 0
        assert f"wrote {tmp_path / name}" in capsys.readouterr().out
    fresh = create_model("lenet_300_100", 10, (1, 28, 28)).eval()
    compact = load_compact(tmp_path / "c.safetensors")
    compact.into(fresh)
    assert compact.metadata["level"] == 3
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
        torch.testing.assert_close(torch.export.load(str(tmp_path / "s.pt2")).module()(x), expected)
    torch.testing.assert_close(run_onnx(tmp_path / "m.onnx", x), expected, atol=1e-4, rtol=1e-4)


def test_a_model_it_cannot_shrink_suggests_compact_and_writes_nothing(tmp_path, capsys):
    model = create_model("torchvision:mobilenet_v3_small", 10, (3, 32, 32))
    state = model.state_dict()
    masks = {n: torch.ones_like(state[n], dtype=torch.bool) for n in ("features.0.0.weight", "classifier.3.weight")}
    meta = {"architecture": "torchvision:mobilenet_v3_small", "num_classes": 10, "input_shape": [3, 32, 32]}
    ticket = save_ticket(Ticket(masks, state, state, meta), tmp_path / "t.safetensors")
    assert main(["export", str(ticket), "--format", "shrunk", "--out", str(tmp_path / "out" / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lottery: error: cannot shrink MobileNetV3") and "--format compact" in err
    assert not (tmp_path / "out").exists()  # not even the folder
    assert main(["export", str(ticket), "--format", "compact", "--out", str(tmp_path / "out" / "m.safetensors")]) == 0


def test_dtype_belongs_to_compact(pruned, tmp_path, capsys):
    ticket, _, _ = _ticket(pruned, tmp_path)
    assert main(["export", str(ticket), "--format", "onnx", "--dtype", "fp16", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "dtype='fp16' applies to the compact format only" in capsys.readouterr().err
    assert main(["export", str(ticket), "--format", "compact", "--dtype", "bf16", "--out", str(tmp_path / "c.safetensors")]) == 0
    assert load_compact(tmp_path / "c.safetensors").metadata["dtype"] == "bf16"


@pytest.mark.slow
def test_a_run_folder_exports_through_its_ticket(pruned, tmp_path, capsys):
    fast = ["train.epochs=1", "prune.levels=1", "trainer.progress=false", "trainer.accelerator=cpu"]
    assert main(["run", "--config", str(ROOT / "experiments/configs/demo.yaml"), f"runs_dir={tmp_path}", *fast]) == 0
    assert main(["export", str(tmp_path / "demo"), "--level", "1", "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "shrunk:" in out and "fc1" in out and (tmp_path / "m.onnx").stat().st_size > 0
    assert main(["export", str(tmp_path / "demo"), "--format", "ticket", "--out", str(tmp_path / "t.safetensors")]) == 0
