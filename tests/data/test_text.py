"""The text datamodule (lottery/data/text.py) on small files the test writes in each supported format, tokenized by
a tokenizer the test trains (tests/hf_helpers.py)."""
import json

import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.data import create_datamodule
from tests.hf_helpers import sentences, transformers, write_text


def text_data(hf_assets, kind="csv", **options):
    tokenizer, _, root = hf_assets
    files = write_text(root / f"data_{kind}", kind)
    return create_datamodule("text", **{**files, "tokenizer": str(tokenizer), "max_length": 16, "val_size": 16,
                                        "batch_size": 8, **options})


@pytest.mark.parametrize("kind", ["csv", "jsonl", "datasets"])
def test_each_file_format_gives_the_same_tensors(hf_assets, kind):
    data = text_data(hf_assets, kind, text="sentence", text_pair="second")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (8, 3, 16) and x.dtype == torch.long and y.dtype == torch.long
    assert data.input_shape == (3, 16) and data.num_classes == 2 and data.train_size() == 96 - 16
    reference = text_data(hf_assets, "csv", text="sentence", text_pair="second")
    reference.setup()
    data.setup()
    for split in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(data._sets[split].tensors, reference._sets[split].tensors))


def test_tokens_mask_and_sentence_pairs_are_the_tokenizers(hf_assets):
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_assets[0])
    data = text_data(hf_assets, text="sentence", text_pair="second")
    x, y, x_test, y_test = data.load()
    first, second, label = sentences(96, 0)[0]
    expected = tokenizer(first, second, max_length=16, truncation=True, padding="max_length")
    assert x[0, 0].tolist() == expected["input_ids"] and x[0, 1].tolist() == expected["attention_mask"]
    assert y[0] == label and len(y_test) == 32
    single = text_data(hf_assets).load()[0]  # one sentence: shorter, so more padding
    assert single[0, 1].sum() < x[0, 1].sum()


def test_string_labels_are_numbered_in_sorted_order(hf_assets):
    tokenizer, _, root = hf_assets
    files = write_text(root / "named", "jsonl", labels=lambda y: ["negative", "positive"][y])
    data = create_datamodule("text", **files, tokenizer=str(tokenizer), max_length=16, val_size=16)
    assert data.classes == ["negative", "positive"]
    assert data.load()[1][:4].tolist() == [y for _, _, y in sentences(4, 0)]


def test_bad_files_are_one_line_each(hf_assets, tmp_path):
    tokenizer = str(hf_assets[0])
    files = write_text(tmp_path / "data", "csv")
    with pytest.raises(LotteryError, match="has no column 'text'.*data.options.text"):
        create_datamodule("text", **files, tokenizer=tokenizer, text="text").load()
    floats = tmp_path / "floats.jsonl"
    floats.write_text(json.dumps({"sentence": "good film", "label": 0.5}) + "\n")
    with pytest.raises(LotteryError, match="labels must be integers or strings"):
        create_datamodule("text", train=str(floats), test=str(floats), tokenizer=tokenizer).num_classes
    (tmp_path / "a.txt").write_text("good film,1\n")
    with pytest.raises(LotteryError, match="unknown kind of file"):
        create_datamodule("text", train=str(tmp_path / "a.txt"), test=files["test"]).load()
    with pytest.raises(LotteryError, match="data.options.tokenizer is not set"):
        create_datamodule("text", **files).load()
    with pytest.raises(LotteryError, match="data.options.train .* or data.options.hub"):
        create_datamodule("text")
