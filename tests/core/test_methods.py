"""Method records: one registry for every kind, live views of each kind, one calling rule for options, and the errors
of a record that cannot work (the entry points of installed packages: tests/cli/test_plugins.py)."""
from dataclasses import dataclass

import pytest
import torch

from lottery import METHODS, Branch, OneShot, SparseTraining, Strategy, register
from lottery.core.errors import LotteryError
from lottery.core.methods import Methods
from lottery.core.pruning import STRATEGIES
from lottery.imp.branches import BRANCHES
from lottery.sparsity.updaters import SPARSE_TRAINING, MaskUpdater


@dataclass(frozen=True)
class _Options:
    k: int = 3


def _keep(weights, masks, density, generator=None):
    return {n: m.clone() for n, m in masks.items()}


def test_one_namespace_and_a_live_view_per_kind():
    registry = Methods()
    registry._plugins_loaded = True  # a registry of its own: no entry points
    strategies, branches = registry.of(Strategy), registry.of(Branch)
    registry.register(Strategy(name="keep", select=_keep, summary="keeps every weight"))
    registry.register(SparseTraining(name="grow", updater=MaskUpdater, summary="a sparse training"))
    assert list(strategies) == ["keep"] and list(branches) == ["grow"]  # a SparseTraining is a Branch
    with pytest.raises(LotteryError, match=r"unknown branch 'keep' \('keep' is a pruning strategy\); choose one of: grow"):
        branches.lookup("keep")
    with pytest.raises(LotteryError, match="a method named 'keep' is registered already"):
        registry.register(Strategy(name="keep", select=lambda *a: None, summary="another"))
    registry.register(Strategy(name="keep", select=_keep, summary="a new version"), replace=True)
    assert strategies["keep"].summary == "a new version"


def test_the_builtin_methods_are_records_of_their_kinds():
    assert {"layer_magnitude", "global_magnitude", "nm_magnitude"} <= set(STRATEGIES)
    assert {"reinit", "earlybird", "gmp", "rigl", "snip", "wanda"} <= set(BRANCHES)
    assert set(SPARSE_TRAINING) == {n for n, m in BRANCHES.items() if isinstance(m, SparseTraining)}
    assert all(METHODS[n] is BRANCHES[n] for n in BRANCHES)
    assert isinstance(BRANCHES["snip"], OneShot) and BRANCHES["gmp"].starts_dense and not BRANCHES["rigl"].starts_dense
    assert BRANCHES["reinit"].builds_on == "imp" and BRANCHES["oneshot"].builds_on == "dense"
    assert BRANCHES["earlybird"].builds_on == "watch" and BRANCHES["earlybird"].watch is not None
    assert all(m.summary and m.legend for m in METHODS.values())


def test_options_come_last_and_only_to_a_method_that_declares_them():
    seen = []
    plain = Strategy(name="plain", select=lambda w, m, d, g: seen.append("plain") or _keep(w, m, d), summary="-")
    tuned = Strategy(name="tuned", select=lambda w, m, d, g, o: seen.append(o.k) or _keep(w, m, d),
                     options=_Options, summary="-")
    masks = {"a": torch.ones(4, dtype=torch.bool)}
    plain({"a": torch.ones(4)}, masks, {"a": 0.5})
    tuned({"a": torch.ones(4)}, masks, {"a": 0.5})  # its defaults
    tuned.with_options(_Options(k=7))({"a": torch.ones(4)}, masks, {"a": 0.5})
    assert seen == ["plain", 3, 7]


@pytest.mark.parametrize("make, message", [
    (lambda: Strategy(name="9lives", select=_keep, summary="-"), "method name '9lives' must be a word"),
    (lambda: Strategy(name="x", select=_keep, summary="-", options=dict), "options=<class 'dict'> must be a dataclass"),
    (lambda: Branch(name="x", summary="-"), "branch 'x' needs build="),
    (lambda: Branch(name="x", build=_keep, summary="-", builds_on="levels"), "builds_on='levels' must be one of"),
    (lambda: OneShot(name="x", prune=_keep, summary="-", weights="trained"), "weights='trained' must be init or rewind"),
    (lambda: register("reinit"), "register takes a method record"),
])
def test_a_record_that_cannot_work_is_refused_when_it_is_made(make, message):
    with pytest.raises(LotteryError, match=message):
        make()
