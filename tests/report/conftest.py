"""Rows and a run folder with known numbers, for the report tests."""
import pytest

from lottery.core.files import write_json
from lottery.core.layout import RunLayout


@pytest.fixture
def rows():
    """Three seeds of IMP, one seed of SNIP; accuracies as fractions, as in metrics.json."""
    imp = {0: [0.90, 0.92, 0.91], 1: [0.91, 0.90, 0.92], 2: [0.90, 0.90, 0.90], 3: [0.85, 0.86, 0.87]}
    density = {0: 1.0, 1: 0.8, 2: 0.64, 3: 0.512}
    out = [{"method": "imp", "level": lv, "seed": s, "test_acc": acc, "density": density[lv]}
           for lv, accs in imp.items() for s, acc in enumerate(accs)]
    out += [{"method": "snip", "level": lv, "seed": 0, "test_acc": acc, "density": density[lv]}
            for lv, acc in {0: 0.91, 1: 0.80, 2: 0.70}.items()]
    return out


# seed -> level -> (density, test_acc, final_val_acc): seed 1's level 2 loses 1 point of validation accuracy.
LEVELS = {0: {0: (1.0, 0.95, 0.96), 1: (0.8, 0.955, 0.958), 2: (0.64, 0.94, 0.957)},
          1: {0: (1.0, 0.93, 0.96), 1: (0.8, 0.94, 0.959), 2: (0.64, 0.95, 0.95)}}


def metrics(density, test_acc, val_acc):
    return {"density": density, "test_acc": test_acc, "final_val_acc": val_acc, "best_val_acc": val_acc,
            "best_val_step": 10, "early_stop_step": 9}


@pytest.fixture
def run(tmp_path):
    """A run folder of two seeds, levels 0-2, with the re-init branch; level 3 of seed 0 unfinished."""
    run = RunLayout.of(tmp_path, "exp")
    for seed, levels in LEVELS.items():
        for level, values in levels.items():
            write_json(run.seed(seed).level(level).metrics, metrics(*values))
            if level > 0:
                write_json(run.seed(seed).level(level).branch("reinit").metrics, metrics(values[0], 0.5, 0.5))
    run.seed(0).level(3).path.mkdir()  # an unfinished level: not a row
    return run
