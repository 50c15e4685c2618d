"""The Hugging Face export (lottery/export/hf.py): a folder `from_pretrained` loads, with the same logits, the zeros
in its weights, the masks in one safetensors file and a model card."""
import pytest
import torch
from safetensors.torch import load_file

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.export import export
from lottery.models.presets import preset_names
from tests.hf_helpers import transformers
from tests.models.test_hf import TINY_VIT, batch, tiny_bert


def test_the_folder_loads_with_from_pretrained_and_gives_the_same_logits(tmp_path):
    model = tiny_bert(num_classes=2).eval()
    masks = MaskManager(model, include=preset_names("bert", dict(model.named_parameters())))
    masks.prune(0.6, "global_magnitude")
    out = export(model, "hf", tmp_path / "ticket", masks)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    x = batch()
    with torch.no_grad():
        expected = model(x)
        got = loaded(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2]).logits
    torch.testing.assert_close(got, expected)
    saved = load_file(str(out / "masks.safetensors"))
    params = dict(loaded.named_parameters())
    assert set(saved) == set(masks.names)
    for name, mask in saved.items():
        assert mask.dtype == torch.bool and torch.equal(mask, masks.masks[name])
        assert (params[name][~mask] == 0).all()
    card = (out / "README.md").read_text()
    assert "60.00% of its prunable weights removed" in card and "masks.safetensors" in card


def test_image_models_export_too_and_other_models_are_refused(tmp_path, pruned):
    from lottery.models import create_model

    torch.manual_seed(0)
    vit = create_model("hf:vit", 10, (1, 8, 8), TINY_VIT).eval()
    out = export(vit, "hf", tmp_path / "vit", MaskManager(vit, include=preset_names("vit", dict(vit.named_parameters()))))
    x = torch.randn(3, 1, 8, 8)
    loaded = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=x).logits, vit(x))
    lenet, masks, _ = pruned("lenet_300_100")
    with pytest.raises(LotteryError, match="writes Hugging Face models"):
        export(lenet, "hf", tmp_path / "lenet", masks)
    with pytest.raises(LotteryError, match="not an empty folder"):
        export(vit, "hf", out)
