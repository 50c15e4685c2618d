"""`lottery export --format compact|shrunk|onnx`: from a ticket file or a run folder, through the ticket."""
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lottery.cli.command import main
from lottery.core.ticket import Ticket, save_ticket
from lottery.export import load_compact, run_onnx
from lottery.models import create_model
from tests.cli.helpers import ROOT, one_line_error, run_main, truncate


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
    # ShuffleNetV2's channel shuffle: neither torch.fx's shrinker nor Torch-Pruning's graph follows it
    model = create_model("torchvision:shufflenet_v2_x0_5", 10, (3, 32, 32))
    state = model.state_dict()
    masks = {n: torch.ones_like(state[n], dtype=torch.bool) for n in ("conv1.0.weight", "fc.weight")}
    meta = {"architecture": "torchvision:shufflenet_v2_x0_5", "num_classes": 10, "input_shape": [3, 32, 32]}
    ticket = save_ticket(Ticket(masks, state, state, meta), tmp_path / "t.safetensors")
    assert main(["export", str(ticket), "--format", "shrunk", "--out", str(tmp_path / "out" / "m.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lottery: error: cannot shrink ShuffleNetV2") and "--format compact" in err
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


# -- tickets -----------------------------------------------------------------------------------------------------------
def _run_ticket(finished: Path, tmp_path: Path) -> Path:
    path = tmp_path / "t.safetensors"
    shutil.copy(finished / "ticket.safetensors", path)
    return path


def _rewrite(path: Path, edit) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    edit(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("edit, phrase", [
    (lambda t, m: t.pop("mask/fc2.weight"), "it has no tensor mask/fc2.weight"),
    (lambda t, m: m.update(level="{not json"), "is missing or not JSON"),
    (lambda t, m: m.pop("mask_shapes"), "'mask_shapes'"),
    (lambda t, m: t.update({"mask/fc1.weight": t["mask/fc1.weight"][:10]}), "does not hold a mask of shape"),
    (lambda t, m: m.pop("format"), "not a lottery ticket"),
    ("truncate", "corrupt or truncated"),
], ids=["missing-tensor", "bad-json", "no-shapes", "short-mask", "foreign", "truncated"])
def test_a_crafted_or_truncated_ticket(tmp_path, capsys, finished, edit, phrase):
    path = _run_ticket(finished, tmp_path)
    truncate(path) if edit == "truncate" else _rewrite(path, edit)
    code, _, err = run_main(capsys, "inspect", path)
    assert code == 2
    one_line_error(err, phrase)


def test_inspect_takes_a_run_folder_and_a_compact_export(tmp_path, capsys, finished):
    code, out, _ = run_main(capsys, "inspect", finished)
    assert code == 0 and out.startswith(f"ticket {finished / 'ticket.safetensors'}") and "per-layer sparsity" in out
    assert run_main(capsys, "export", finished, "--format", "compact", "--out", tmp_path / "c.safetensors")[0] == 0
    code, out, _ = run_main(capsys, "inspect", tmp_path / "c.safetensors")
    assert code == 0 and out.startswith("compact export") and "architecture    lenet_300_100" in out
    code, _, err = run_main(capsys, "inspect", tmp_path)
    assert code == 2
    one_line_error(err, "is a folder without a ticket.safetensors")


@pytest.mark.parametrize("out, phrase", [("folder", "is a folder"), ("/proc/ticket.safetensors", "cannot write the ticket")])
def test_export_to_a_folder_or_an_unwritable_place_leaves_nothing(tmp_path, capsys, finished, out, phrase):
    target = tmp_path / "folder" if out == "folder" else Path(out)
    (tmp_path / "folder").mkdir()
    code, _, err = run_main(capsys, "export", finished, "--out", target)
    assert code == 2
    one_line_error(err, phrase)
    assert list((tmp_path / "folder").iterdir()) == []
    code, _, err = run_main(capsys, "export", finished, "--out", tmp_path / "folder" / "t.safetensors")
    assert code == 0 and [p.name for p in (tmp_path / "folder").iterdir()] == ["t.safetensors"]


def test_exported_files_have_the_permissions_of_the_other_run_files(tmp_path, capsys, finished):
    assert run_main(capsys, "export", finished, "--out", tmp_path / "t.safetensors")[0] == 0
    assert run_main(capsys, "export", finished, "--format", "compact", "--out", tmp_path / "c.safetensors")[0] == 0
    (tmp_path / "plain").write_text("x")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "t.safetensors") == mode(tmp_path / "plain") == mode(finished / "curve.csv")
    assert mode(tmp_path / "c.safetensors") == mode(tmp_path / "plain")  # not safetensors' own 0600
    assert mode(finished / "ticket.safetensors") == mode(finished / "config.yaml")
