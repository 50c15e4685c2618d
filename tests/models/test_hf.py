"""Hugging Face models (lottery/models/hf.py) and the prunable presets (lottery/models/presets.py), offline: a tiny
BERT and ViT from a configuration, and a "pretrained" checkpoint folder the test saves itself."""
import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.core.files import load_tensors
from lottery.core.masks import MaskManager
from lottery.models import create_model, output_layer
from lottery.models.presets import PRESETS, preset_names
from tests.hf_helpers import TINY_BERT, transformers

TINY_VIT = {"weights": "random", "patch_size": 2, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64}


def tiny_bert(num_classes=3, length=16, seed=0, **options):
    torch.manual_seed(seed)
    return create_model("hf:bert", num_classes, (3, length), {"weights": "random", "vocab_size": 100, **TINY_BERT, **options})


def batch(n=4, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, length), generator=g)
    keep = torch.ones(n, length, dtype=torch.long)
    keep[:, length // 2:] = 0
    return torch.stack([ids, keep, torch.zeros_like(ids)], 1)


def test_a_model_from_a_named_configuration_keeps_the_checkpoint_names_and_takes_our_packed_batches():
    model = tiny_bert()
    hf = model.hf
    assert model.training  # built for training (dropout on), as every lottery model
    assert list(model.state_dict()) == list(hf.state_dict())  # the model's own names, no prefix
    assert "bert.encoder.layer.1.attention.self.query.weight" in dict(model.named_parameters())
    x = batch()
    model.eval()
    logits = model(x)
    assert logits.shape == (4, 3)
    expected = hf(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2]).logits  # HF's own mask path
    torch.testing.assert_close(logits, expected)
    assert torch.equal(tiny_bert().state_dict()["classifier.weight"], tiny_bert().state_dict()["classifier.weight"])
    assert output_layer(model) == "classifier.weight"


def test_a_pretrained_folder_gives_its_weights_and_a_new_head_drawn_from_the_seed(hf_assets):
    _, pretrained, _ = hf_assets
    saved = load_tensors(pretrained / "model.safetensors")
    torch.manual_seed(0)
    model = create_model(f"hf:{pretrained}", 2, (3, 16))
    state = model.state_dict()
    for name, value in saved.items():  # the checkpoint's names are the base model's (no `bert.` prefix in some versions)
        key = name if name in state else f"bert.{name}"
        assert torch.equal(state[key], value), key
    torch.manual_seed(0)
    same = create_model(f"hf:{pretrained}", 2, (3, 16)).state_dict()["classifier.weight"]
    torch.manual_seed(1)
    other = create_model(f"hf:{pretrained}", 2, (3, 16)).state_dict()["classifier.weight"]
    assert torch.equal(same, state["classifier.weight"]) and not torch.equal(other, same)


def test_offline_errors_name_the_folder_and_hf_hub_offline(tmp_path):
    with pytest.raises(LotteryError, match="HF_HUB_OFFLINE.*local folder"):
        create_model("hf:lottery-tests/no-such-model", 2, (3, 16))
    with pytest.raises(LotteryError, match="no such folder"):
        create_model(f"hf:{tmp_path / 'missing'}", 2, (3, 16))


def test_a_maximum_length_above_the_models_positions_is_refused():
    with pytest.raises(LotteryError, match="max_length=128 is above the 64 positions"):
        tiny_bert(length=128)


def test_a_vit_from_a_configuration_fits_the_digits():
    torch.manual_seed(0)
    model = create_model("hf:vit", 10, (1, 8, 8), TINY_VIT)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    names = preset_names("vit", dict(model.named_parameters()))
    assert len(names) == 2 * 6  # q, k, v, attention output, two MLP layers per block
    assert not any("embeddings" in n or "classifier" in n or "norm" in n for n in names)


def test_the_bert_preset_is_bert_tickets_prunable_set():
    model = tiny_bert()
    names = preset_names("bert", dict(model.named_parameters()))
    per_block = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense"]
    expected = {f"bert.encoder.layer.{i}.{p}.weight" for i in range(2) for p in per_block} | {"bert.pooler.dense.weight"}
    assert set(names) == expected
    masks = MaskManager(model, include=names)  # the preset is include patterns: masks only on these tensors
    assert set(masks.names) == expected


def test_a_preset_that_matches_nothing_is_refused():
    lenet = create_model("lenet_300_100", 10, (1, 28, 28))
    with pytest.raises(LotteryError, match="prune.preset=bert matches no parameter"):
        preset_names("bert", dict(lenet.named_parameters()))
    assert set(PRESETS) == {"bert", "vit"}


def test_model_options_are_for_hf_models_only():
    with pytest.raises(LotteryError, match="apply to 'hf:' models only"):
        create_model("lenet_300_100", 10, (1, 28, 28), {"hidden_size": 3})
    with pytest.raises(LotteryError, match="weights='trained' must be one of"):
        create_model("hf:bert", 2, (3, 8), {"weights": "trained"})
    assert transformers is not None
