"""What the Hugging Face tests share, all offline: a tokenizer trained by the test on a handful of sentences, a tiny
"pretrained" BERT saved as a checkpoint folder, and a small labelled text dataset written in every supported format."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

GOOD = ["good", "great", "fine", "nice"]
BAD = ["bad", "awful", "poor", "sad"]
FILLER = ["the", "a", "movie", "film", "was", "is", "very", "plot", "cast", "quite", "and", "it", "story", "end"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 64}


def sentences(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """(sentence, second sentence, label): label 1 when the first sentence holds a good word, else 0."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 4) + [rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        out.append((" ".join(words), " ".join(rng.sample(FILLER, 3)), label))
    return out


def write_tokenizer(folder: Path) -> Path:
    """A WordPiece tokenizer trained on the test's sentences, saved as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(GOOD + BAD + FILLER)] + [s for s, _, _ in sentences(20)],
                            trainers.WordPieceTrainer(vocab_size=120, special_tokens=SPECIAL))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                                model_max_length=64)
    fast.save_pretrained(folder)
    return folder


def write_pretrained(folder: Path, vocab_size: int, seed: int = 0) -> Path:
    """A tiny BERT (2 layers, hidden size 32) with seeded random weights, saved as a base checkpoint (no
    classifier), as a pretrained model is published."""
    import torch

    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=vocab_size, **TINY_BERT)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def write_text(folder: Path, kind: str, n_train: int = 96, n_test: int = 32, labels=None) -> dict[str, str]:
    """The dataset as `kind` (csv, jsonl or datasets), columns sentence, second, label; the data.options for it."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": sentences(n_train, 0), "test": sentences(n_test, 1)}
    name = labels or (lambda y: y)
    rows = {s: [{"sentence": a, "second": b, "label": name(y)} for a, b, y in data] for s, data in splits.items()}
    if kind == "datasets":
        datasets = pytest.importorskip("datasets")
        if not (folder / "saved").exists():
            dd = datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in rows.items()})
            dd.save_to_disk(str(folder / "saved"))
        return {"train": str(folder / "saved"), "train_split": "train", "test_split": "test"}
    paths = {}
    for split, split_rows in rows.items():
        path = folder / f"{split}.{kind}"
        if kind == "csv":
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["sentence", "second", "label"])
                writer.writeheader()
                writer.writerows(split_rows)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in split_rows))
        paths[split] = str(path)
    return paths


def make_assets(root: Path) -> tuple[Path, Path, Path]:
    """(tokenizer folder, pretrained checkpoint folder, scratch folder) under `root`."""
    tokenizer = write_tokenizer(root / "tokenizer")
    vocab = len(transformers.AutoTokenizer.from_pretrained(tokenizer))
    pretrained = write_pretrained(root / "pretrained", vocab)
    return tokenizer, pretrained, root


def text_run(runs: Path, assets, *overrides: str, kind: str = "csv", levels: int = 1) -> list[str]:
    """`lottery run` overrides for IMP on the tiny pretrained BERT and the test's text files: seconds per level."""
    tokenizer, pretrained, root = assets
    data = write_text(root / f"data_{kind}", kind)
    return [f"runs_dir={runs}", "name=bert", f"model.name=hf:{pretrained}", "data.name=text",
            *(f"data.options.{k}={v}" for k, v in data.items()), f"data.options.tokenizer={tokenizer}",
            "data.options.max_length=16", "data.batch_size=16", "data.val_size=16", "train.epochs=null",
            "train.steps=12", f"prune.levels={levels}", "prune.preset=bert", "prune.strategy=global_magnitude",
            "train.optim.optimizer=adamw", "train.optim.lr=1e-3", "branches=[]", "trainer.progress=false",
            "trainer.accelerator=cpu", "trainer.logger=none", *overrides]
