"""Wanda (lottery/sparsity/wanda.py): scores by hand on a toy layer, each row keeps its share, any model from Python."""
import pytest
import torch
from torch import nn

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.sparsity.wanda import input_norms, keep_per_row, wanda_prune, wanda_scores


def toy():
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-0.1, 0.2, 3.0]]))
    return nn.Sequential(layer)


def test_scores_are_weight_magnitude_times_input_feature_norm_by_hand():
    model = toy()
    batches = [torch.tensor([[3.0, 0.0, 1.0], [4.0, 1.0, 0.0]]), (torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([1]))]
    # ||X_j||_2 over the three tokens of both batches: sqrt(9 + 16) = 5, sqrt(1) = 1, sqrt(1 + 4) = sqrt(5)
    norms = input_norms(model, ["0.weight"], batches)["0.weight"]
    torch.testing.assert_close(norms, torch.tensor([5.0, 1.0, 5 ** 0.5]))
    scores = wanda_scores(model, ["0.weight"], batches)["0.weight"]
    torch.testing.assert_close(scores, torch.tensor([[5.0, 2.0, 0.5 * 5 ** 0.5], [0.5, 0.2, 3 * 5 ** 0.5]]))
    # each row keeps its best 2 of 3: row 0 drops 0.5 * sqrt(5) = 1.12 (though |w| = 2 is larger than 1 there)
    masks = wanda_prune(model, MaskManager(model), 2 / 3, batches)
    assert masks.masks["0.weight"].tolist() == [[True, True, False], [True, False, True]]
    assert model[0].weight[0, 2] == 0 and model[0].weight[1, 1] == 0
    # plain magnitude within rows keeps the larger |w| instead
    model = toy()
    plain = wanda_prune(model, MaskManager(model), 2 / 3, [], activations=False)
    assert plain.masks["0.weight"].tolist() == [[True, True, False], [False, True, True]]


def test_rows_keep_their_share_and_masks_only_shrink():
    torch.manual_seed(0)
    scores = torch.rand(4, 10)
    old = torch.ones(4, 10, dtype=torch.bool)
    old[0, :8] = False  # row 0 has 2 survivors only
    new = keep_per_row(scores, old, 0.5)
    assert new.sum(1).tolist() == [2, 5, 5, 5] and not (new & ~old).any()


def test_wanda_prunes_a_transformer_from_python_and_refuses_non_linear_weights():
    from tests.models.test_hf import batch, tiny_bert

    model = tiny_bert()
    masks = MaskManager(model, include=["*encoder.layer.*.weight"], exclude=["*LayerNorm*"])
    wanda_prune(model, masks, 0.5, [batch(seed=s) for s in range(2)])
    for name, mask in masks.masks.items():
        assert (mask.sum(1) == mask.shape[1] // 2).all(), name
    with pytest.raises(LotteryError, match="Linear layers"):
        wanda_scores(model, ["bert.embeddings.word_embeddings.weight"], [batch()])
