"""ONNX export: onnxruntime gives the masked model's logits, with or without lottery installed."""
import subprocess
import sys

import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.export import run_onnx, save_onnx

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name, shrunk", [("lenet_300_100", False), ("resnet20", True)])
def test_onnxruntime_gives_the_masked_models_logits(pruned, tmp_path, name, shrunk):
    model, masks, x = pruned(name, 0.1)
    path = save_onnx(model, x, tmp_path / "m.onnx", masks, shrunk=shrunk, log=lambda *_: None)
    batch = torch.randn(9, *x.shape[1:])  # another batch size
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(path, batch), model(batch), atol=1e-4, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_a_model_it_cannot_shrink_is_exported_masked(tmp_path):
    from tests.export.test_shrink import Concat

    model, lines = Concat().eval(), []
    x = torch.randn(3, 4)
    path = save_onnx(model, x, tmp_path / "m.onnx", log=lines.append)
    assert lines == ["cannot shrink Concat: its graph has call_function cat (node 'cat'), which the shrinker "
                     "does not follow: exporting the masked model, unshrunk"]
    with torch.no_grad():
        torch.testing.assert_close(run_onnx(path, x), model(x), atol=1e-5, rtol=1e-5)


RUNNER = '''
import sys
sys.modules["lottery"] = None  # onnxruntime alone must run the file
import numpy as np, onnxruntime
x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
out = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
assert np.allclose(out, y, atol=1e-4), "logits differ"
print("ok")
'''


def test_runs_with_onnxruntime_only(pruned, tmp_path):
    import numpy as np

    model, masks, x = pruned("lenet_300_100", 0.1)
    path = save_onnx(model, x, tmp_path / "m.onnx", masks, log=lambda *_: None)
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "y.npy", model(x).numpy())
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_a_missing_onnx_package_names_the_extra(pruned, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    model, masks, x = pruned("lenet_300_100", 0.5, dead=False)
    with pytest.raises(LotteryError, match=r'needs the onnx package.*pip install -e "\.\[onnx\]"'):
        save_onnx(model, x, tmp_path / "m.onnx", masks)
    assert not any(tmp_path.iterdir())
