"""Prunable sets of known architectures, as data: `prune.preset=bert|vit` (parameter-name patterns, fnmatch).

    bert  the query, key, value and attention-output dense layers, the intermediate and output dense layers of
          every block, and the pooler; embeddings, LayerNorm, biases and the classifier stay dense
          (Chen et al. 2020, "The Lottery Ticket Hypothesis for Pre-trained BERT Networks", Section 3; the
          `pruning_model` list of their code). Fits BERT and RoBERTa-style checkpoints (`bert.`, `roberta.` ...).
    vit   the same layers of every ViT block (Chen et al. 2021, "The Lottery Tickets Hypothesis for Supervised
          and Self-supervised Pre-training in Computer Vision Models"): patch embedding, position embedding,
          LayerNorm, biases and the classifier stay dense. HF ViT checkpoints (`vit.`), both transformers' names (4.x `encoder.layer.N.attention.
          attention.query`, 5.x `layers.N.attention.q_proj`).

A new preset is one entry in PRESETS: the patterns of the weights to prune (docs/pretrained.md).
IMP with these presets prunes globally by magnitude (`prune.strategy=global_magnitude`), as both papers do.
"""
from __future__ import annotations

import fnmatch
from typing import Iterable

from lottery.core.errors import LotteryError, Registry

SUMMARIES = {
    "bert": "BERT's attention, intermediate, output and pooler dense layers (Chen et al. 2020)",
    "vit": "a ViT's attention, intermediate and output dense layers of every block (Chen et al. 2021)",
}
PRESETS: Registry[tuple[str, ...]] = Registry("prune preset", summaries=SUMMARIES, entries={
    "bert": (
        "*encoder.layer.*.attention.self.query.weight", "*encoder.layer.*.attention.self.key.weight",
        "*encoder.layer.*.attention.self.value.weight", "*encoder.layer.*.attention.output.dense.weight",
        "*encoder.layer.*.intermediate.dense.weight", "*encoder.layer.*.output.dense.weight",
        "*pooler.dense.weight",
    ),
    "vit": (  # anchored at `vit.`: a BERT's attention.output.dense is not a ViT's
        # transformers 4.x names
        "vit.encoder.layer.*.attention.attention.query.weight", "vit.encoder.layer.*.attention.attention.key.weight",
        "vit.encoder.layer.*.attention.attention.value.weight", "vit.encoder.layer.*.attention.output.dense.weight",
        "vit.encoder.layer.*.intermediate.dense.weight", "vit.encoder.layer.*.output.dense.weight",
        # transformers 5.x names
        "vit.layers.*.attention.q_proj.weight", "vit.layers.*.attention.k_proj.weight", "vit.layers.*.attention.v_proj.weight",
        "vit.layers.*.attention.o_proj.weight", "vit.layers.*.mlp.fc1.weight", "vit.layers.*.mlp.fc2.weight",
        "vit.pooler.dense.weight",
    ),
})


def preset_names(preset: str, names: Iterable[str]) -> list[str]:
    """The parameter names among `names` that preset `preset` prunes; a LotteryError when it matches none."""
    patterns = PRESETS.lookup(preset)
    names = list(names)
    hits = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not hits:
        raise LotteryError(f"prune.preset={preset} matches no parameter of this model (names look like {names[:3]}); "
                           f"choose the preset of its architecture ({', '.join(sorted(PRESETS))}) or list the weights "
                           "to prune in prune.include")
    return hits
