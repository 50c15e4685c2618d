import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.core.pruning import (
    STRATEGIES,
    get_strategy,
    global_magnitude,
    layer_magnitude,
    layer_random,
)


def _weights():
    return {"a": torch.tensor([[0.1, -0.9], [0.5, 0.2]]), "b": torch.tensor([0.05, -0.6, 0.7, 0.3])}


def _ones(w):
    return {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}


def test_global_magnitude_ranks_across_tensors():
    w = _weights()
    new = global_magnitude(w, _ones(w), {"a": 0.5, "b": 0.5})  # keep the 4 largest of 8
    assert new["a"].tolist() == [[False, True], [True, False]]
    assert new["b"].tolist() == [False, True, True, False]


def test_layer_magnitude_keeps_each_tensors_share():
    w = _weights()
    new = layer_magnitude(w, _ones(w), {"a": 0.5, "b": 0.25})
    assert new["a"].tolist() == [[False, True], [True, False]]
    assert new["b"].tolist() == [False, False, True, False]


def test_pruned_weights_never_come_back():
    w = _weights()
    masks = {"a": torch.tensor([[True, False], [True, True]]), "b": torch.ones(4, dtype=torch.bool)}
    new = layer_magnitude(w, masks, {"a": 0.5, "b": 1.0})
    assert not new["a"][0, 1]  # -0.9 is the largest weight, but it was already pruned
    assert int(new["a"].sum()) == 2


@pytest.mark.parametrize("name", sorted(n for n, s in STRATEGIES.items() if not s.structured))
def test_every_strategy_removes_the_exact_count_and_only_shrinks(name):
    """Every unstructured strategy; the structured ones (whole units, counted in units) in tests/structured."""
    torch.manual_seed(0)
    w = {"x": torch.randn(10, 7), "y": torch.randn(33)}
    masks = _ones(w)
    for level in range(1, 6):
        density = {n: 0.8 ** level for n in w}
        new = get_strategy(name)(w, masks, density, torch.Generator().manual_seed(level))
        assert all((new[n] <= masks[n]).all() for n in w)  # masks only shrink
        kept = sum(int(m.sum()) for m in new.values())
        assert abs(kept - round(sum(t.numel() * 0.8 ** level for t in w.values()))) <= len(w)
        masks = new


def test_random_strategy_is_seeded():
    w = {"x": torch.randn(50)}
    a = layer_random(w, _ones(w), {"x": 0.5}, torch.Generator().manual_seed(3))
    b = layer_random(w, _ones(w), {"x": 0.5}, torch.Generator().manual_seed(3))
    c = layer_random(w, _ones(w), {"x": 0.5}, torch.Generator().manual_seed(4))
    assert torch.equal(a["x"], b["x"]) and not torch.equal(a["x"], c["x"])


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(LotteryError, match="global_magnitude.*layer_magnitude"):
        get_strategy("magnitude")


def test_nm_magnitude_keeps_the_largest_two_of_every_four():
    from lottery.core.pruning import make_nm_magnitude

    w = {"a": torch.tensor([[0.1, -0.9, 0.5, 0.2, 0.05, -0.6, 0.7, 0.3]])}
    nm = get_strategy("nm_magnitude")
    assert nm(w, _ones(w), {"a": 0.5})["a"].int().tolist() == [[0, 1, 1, 0, 0, 1, 1, 0]]  # 2:4 exactly
    # above 2/4 the pattern's survivors stay and the largest others fill the density
    assert nm(w, _ones(w), {"a": 0.75})["a"].int().tolist() == [[0, 1, 1, 1, 0, 1, 1, 1]]
    # below it only the pattern's survivors compete: at most 2 of every 4 from then on
    assert nm(w, _ones(w), {"a": 0.25})["a"].int().tolist() == [[0, 1, 0, 0, 0, 0, 1, 0]]
    assert make_nm_magnitude(1, 4)(w, _ones(w), {"a": 0.25})["a"].int().tolist() == [[0, 1, 0, 0, 0, 0, 1, 0]]
    with pytest.raises(LotteryError, match="0 < N < M, got methods.nm_magnitude.n=4, m=4"):
        make_nm_magnitude(4, 4)
