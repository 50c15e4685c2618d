"""A grid from command-line overrides: axes, seeds, names of its points, and bad grids."""

import pytest

from lottery.cli import grid
from lottery.cli.command import main
from lottery.cli.sweep import Sweep
from tests.cli.helpers import DEMO, tiny_sweep


def test_grid_axes_seeds_and_deterministic_names(tmp_path):
    sweep = Sweep(DEMO, [*tiny_sweep(tmp_path), "prune.fraction=0.20,0.5", "seeds=[0,1]", "rewind.policy=init,lr",
                         "branches=[reinit],[reinit,random_prune]"])
    assert sweep.seeds == [0, 1] and len(sweep.points) == 8 and len(sweep.jobs) == 16
    names = [p.name for p in sweep.points]
    assert names[0].startswith("demo,") and len(set(names)) == 8
    # 0.20 and 0.2 are the same experiment; a list value does not fit a folder name: a hash of the values
    plain = Sweep(DEMO, ["prune.fraction=0.20,0.5", "seed=3,4", *tiny_sweep(tmp_path)])
    assert [p.name for p in plain.points] == ["demo,prune.fraction=0.2", "demo,prune.fraction=0.5"]
    assert [j.cfg.prune.fraction for j in plain.jobs] == [0.2, 0.2, 0.5, 0.5] and plain.seeds == [3, 4]
    hashed = grid.point_name("demo", {"branches": "[reinit,random_prune]"})
    assert hashed == grid.point_name("demo", {"branches": "[reinit,random_prune]"}) and len(hashed) == len("demo,") + 8
    assert Sweep(DEMO, ["prune.fraction=0.2,0.5", *tiny_sweep(tmp_path)]).points[1].name == plain.points[1].name  # no spelling in names
    assert grid.split_values("[a,b],[c],'x,y'") == ["[a,b]", "[c]", "'x,y'"]
    assert Sweep(DEMO, tiny_sweep(tmp_path)).points[0].name == "demo"  # no axis: the experiment itself


@pytest.mark.parametrize("override, message", [
    ("prune.fration=0.2,0.5", "unknown grid key 'prune.fration': no 'fration' in prune; did you mean prune.fraction?"),
    ("prune.fraction=", "grid key prune.fraction has an empty value"),
    ("seeds=[]", "grid key seeds has an empty value"),
    ("prune.fraction=0.2,,0.5", "grid key prune.fraction has an empty value"),
    ("name=a,b", "name takes one value for the whole sweep"),
    ("prune.fraction=0.2,1.5", "grid point prune.fraction=1.5: prune.fraction=1.5 must be in (0, 1)"),
    ("trainer.logger=tensorbord", "unknown trainer.logger 'tensorbord'"),
    ("prune", "'prune' is not a key=value override"),
])
def test_bad_grids_are_one_line_and_exit_2(tmp_path, capsys, override, message):
    code = main(["sweep", "--config", DEMO, *tiny_sweep(tmp_path), override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "sweeps").exists()
