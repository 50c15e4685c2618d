"""Bad input for transformer runs (docs/pretrained.md): one line each, exit code 2, nothing written; and the
`--format hf` export of a run."""
import json

import pytest

from tests.cli.helpers import one_line_error, run_main
from tests.hf_helpers import text_run, transformers, write_text


@pytest.mark.parametrize("change, phrase", [
    (["model.name=hf:lottery-tests/no-such-model"], "HF_HUB_OFFLINE"),
    (["data.options.text=review"], "has no column 'review'"),
    (["data.options.max_length=100"], "max_length=100 is above the 64 positions"),
    (["prune.preset=gpt"], "unknown prune preset 'gpt'"),
    (["prune.include=[classifier.weight]"], "keep one of them"),
    (["train.optim.schedule=linear", "train.optim.milestone_steps=[3]"], "remove the milestones"),
    (["model.options.num_hiden_layers=1"], "has no field 'num_hiden_layers' (did you mean 'num_hidden_layers'?)"),
    (["model.options.num_hidden_layers=0"], "model.options.num_hidden_layers=0 leaves hf:"),
    (["model.name=hf:bert", "model.options={weights: random, hidden_size: 30, num_attention_heads: 4}"],
     "The hidden size (30) is not a multiple of the number of attention heads (4)"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, hf_assets, change, phrase):
    runs = tmp_path / "runs"
    code, _, err = run_main(capsys, "run", *text_run(runs, hf_assets), *change)
    assert code == 2
    one_line_error(err, phrase)
    assert not runs.exists()


def test_a_preset_that_matches_nothing(tmp_path, capsys):
    from tests.cli.helpers import DEMO, TINY_RUN

    runs = tmp_path / "runs"  # LeNet-300-100 has none of BERT's layers (BERT and ViT share the names of theirs)
    code, _, err = run_main(capsys, "run", "--config", DEMO, f"runs_dir={runs}", *TINY_RUN, "prune.preset=bert")
    assert code == 2
    one_line_error(err, "prune.preset=bert matches no parameter")
    assert not runs.exists()


def _csv(path, rows):
    path.write_text("sentence,label\n" + "".join(f"{s},{y}\n" for s, y in rows))
    return path


@pytest.mark.parametrize("train, test, phrase", [
    ([("a good film", 0), ("a bad film", 0)] * 10, [("a fine film", 0)], "the training split of text holds examples of 1 class ([0])"),
    ([("a good film", 0), ("a bad film", 1)] * 20, [("a fine film", 2)], "the test split of text holds classes [2] that the training split never has"),
    ([], [("a fine film", 0)], "holds no examples"),
])
def test_data_that_cannot_train_a_classifier(tmp_path, capsys, hf_assets, train, test, phrase):
    runs = tmp_path / "runs"
    files = [f"data.options.train={_csv(tmp_path / 'train.csv', train)}", f"data.options.test={_csv(tmp_path / 'test.csv', test)}"]
    code, _, err = run_main(capsys, "run", *text_run(runs, hf_assets), *files, "data.val_size=4", "data.batch_size=4")
    assert code == 2
    one_line_error(err, phrase)
    assert not runs.exists()


def test_labels_that_are_not_integers_or_strings(tmp_path, capsys, hf_assets):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"sentence": "a good film", "label": [1]}) + "\n")
    runs = tmp_path / "runs"
    code, _, err = run_main(capsys, "run", *text_run(runs, hf_assets), f"data.options.train={bad}", f"data.options.test={bad}")
    assert code == 2
    one_line_error(err, "labels must be integers or strings")
    assert not runs.exists()


@pytest.mark.slow
def test_a_run_exports_as_a_folder_from_pretrained_loads(tmp_path, capsys, hf_assets):
    import torch

    runs = tmp_path / "runs"
    code, out, _ = run_main(capsys, "run", *text_run(runs, hf_assets, levels=1))
    assert code == 0 and "no winning ticket: the dense network is at chance" in out  # 12 steps learn nothing
    assert not (runs / "bert" / "ticket.safetensors").exists()
    code, _, err = run_main(capsys, "export", runs / "bert", "--format", "hf", "--out", tmp_path / "ticket")
    assert code == 2 and "has no winning ticket: its dense network is at chance" in err
    code, out, err = run_main(capsys, "export", runs / "bert", "--level", "1", "--out", runs / "bert" / "ticket.safetensors")
    assert code == 0, err
    code, out, err = run_main(capsys, "export", runs / "bert", "--level", "1", "--format", "hf", "--out", tmp_path / "ticket")
    assert code == 0, err
    code, out, err = run_main(capsys, "export", runs / "bert", "--level", "1", "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 0 and "Traceback" not in err, err  # token ids, not random floats, fed to the exporter
    folder = tmp_path / "ticket"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)  # saved beside the model
    from lottery.export.source import model_from_ticket

    ours, masks, _ = model_from_ticket(runs / "bert" / "ticket.safetensors")
    enc = tokenizer(["a good film", "the plot was bad"], padding="max_length", max_length=16, return_tensors="pt")
    x = torch.stack([enc["input_ids"], enc["attention_mask"], torch.zeros_like(enc["input_ids"])], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x[:, 0], attention_mask=x[:, 1]).logits, ours(x))
    assert write_text is not None
