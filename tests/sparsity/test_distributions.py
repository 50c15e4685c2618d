"""Sparsity distributions reproduce the reference implementations' own test values (google-research/jaxpruner
`sparsity_distributions_test.py`, google-research/rigl `sparse_utils_test.py`) on their shapes."""
import math

import pytest

from lottery.core.errors import LotteryError
from lottery.sparsity.distributions import (
    erdos_renyi,
    erdos_renyi_kernel,
    layer_densities,
    uniform,
)

# jaxpruner testGetSparsityERKSucceed: (shapes, sparsity, include_kernel, power) -> expected sparsities (2 places).
# Shapes are jaxpruner's (kernel dims first, [.., in, out]); the formulas are symmetric in them, so they are given
# here as they are: ERK reads sum/prod, ER the (in, out) pair, which for (2, 4, 6) is PyTorch's (6, 4, 2).
SHAPES = {"a": (2, 4), "b": (3, 6), "c": (2, 4, 6)}
JAXPRUNER = [
    ({"a": (2, 4)}, 0.5, "erk", 1.0, {"a": 0.5}),
    (SHAPES, 0.5, "erk", 1.0, {"a": 0.0, "b": 0.31, "c": 0.655}),
    ({"a": (2, 4), "b": (3, 6), "c": (6, 4, 2)}, 0.5, "er", 1.0, {"a": 0.21, "b": 0.47, "c": 0.56}),
    (SHAPES, 0.8, "erk", 1.0, {"a": 0.556, "b": 0.70, "c": 0.85}),
    (SHAPES, 0.5, "erk", 2.0, {"a": 0.0, "b": 0.033, "c": 0.758}),
]


@pytest.mark.parametrize("shapes, sparsity, kind, power, expected", JAXPRUNER)
def test_erdos_renyi_matches_jaxpruners_test_values(shapes, sparsity, kind, power, expected):
    if kind == "erk":
        got = erdos_renyi_kernel(shapes, 1 - sparsity, power=power)
    else:
        got = erdos_renyi(shapes, 1 - sparsity)
    assert set(got) == set(expected)
    for name, s in expected.items():
        assert 1 - got[name] == pytest.approx(s, abs=0.005), name  # the references assert 2 decimal places


def test_erk_of_jaxpruners_param_trees():
    # testERKSparsityMapGenerator: {'a': (2, 4), 'b': {'c': (3, 6, 7), 'd': (7, 4)}} at 0.5 -> a 0, c 0.64, d 0
    got = erdos_renyi_kernel({"a": (2, 4), "c": (3, 6, 7), "d": (7, 4)}, 0.5)
    assert [round(1 - got[n], 2) for n in "acd"] == [0.0, 0.64, 0.0]
    got = erdos_renyi_kernel({"a": (2, 4), "c": (3, 6, 7)}, 0.5)  # 'd' a vector: not prunable
    assert [round(1 - got[n], 2) for n in "ac"] == [0.0, 0.53]


@pytest.mark.parametrize("shape1, shape2, sparsity", [((3, 4), (5, 6), 0.5), ((10, 10, 3, 3), (100, 10), 0.9),
                                                      ((64, 3, 3, 3), (10, 64), 0.8)])
def test_erdos_renyi_keeps_the_uniform_count_and_scales_by_its_factor(shape1, shape2, sparsity):
    """rigl testSparsityDictErdosRenyiSparsitiesScale: the same weights kept as uniform (within one per layer),
    and (1 - s_i) / factor_i equal across layers (the factor of its (n_in, n_out) pair)."""
    got = erdos_renyi({"1": shape1, "2": shape2}, 1 - sparsity)
    size = {n: math.prod(s) for n, s in (("1", shape1), ("2", shape2))}
    uniform_zeros = sum(math.floor(sparsity * s) for s in size.values())
    zeros = sum(math.floor((1 - got[n]) * size[n]) for n in size)
    assert abs(zeros - uniform_zeros) <= 2
    if all(d < 1 for d in got.values()):
        factor = {n: (s[0] + s[1]) / (s[0] * s[1]) for n, s in (("1", shape1), ("2", shape2))}
        assert got["1"] / factor["1"] == pytest.approx(got["2"] / factor["2"])


def test_uniform_and_dense_layers():
    shapes = {"first": (300, 784), "mid": (100, 300), "out": (10, 100)}
    assert uniform(shapes, 0.2) == {"first": 0.2, "mid": 0.2, "out": 0.2}
    kept = uniform(shapes, 0.2, dense={"out"})
    assert kept["out"] == 1.0 and kept["first"] == pytest.approx(kept["mid"])
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(kept[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.2 * total, rel=1e-4)
    erk = layer_densities("erk", shapes, 0.05, dense={"out"})
    assert erk["out"] == 1.0 and erk["mid"] > erk["first"]  # the smaller layer keeps more of itself
    assert sum(erk[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.05 * total, rel=1e-4)


@pytest.mark.parametrize("call, message", [
    (lambda: uniform({"a": (2, 2)}, 0.0), r"density=0.0 must be in \(0, 1\]"),
    (lambda: erdos_renyi_kernel({"a": (2, 2)}, 1.5), r"density=1.5 must be in \(0, 1\]"),
    (lambda: erdos_renyi_kernel({}, 0.5), "at least one prunable tensor"),
    (lambda: erdos_renyi_kernel({"a": (100, 100), "b": (10, 10)}, 0.01, dense={"a"}), "cannot be met"),
    (lambda: uniform({"a": (2, 2)}, 0.5, dense={"z"}), r"dense layers \['z'\]"),
    (lambda: layer_densities("erdos", {"a": (2, 2)}, 0.5), "unknown sparsity distribution 'erdos'"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(LotteryError, match=message):
        call()
