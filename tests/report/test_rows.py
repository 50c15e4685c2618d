"""The rows of a run folder: one per finished training, read once, or taken from metrics in hand."""
from pathlib import Path

from lottery.report.rows import IMP_METHOD, seed_rows


def test_seed_rows_are_the_finished_trainings(run):
    rows = seed_rows(run)
    assert len(rows) == 6 + 4
    assert {(r["seed"], r["method"], r["level"]) for r in rows if r["method"] == "reinit"} == {
        (s, "reinit", level) for s in (0, 1) for level in (1, 2)}
    assert [r["level"] for r in seed_rows(run, seed=1, method=IMP_METHOD)] == [0, 1, 2]


def test_metrics_in_hand_are_used_and_the_others_read_once(run, monkeypatch):
    reads = []
    read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self) or read_text(self, *a, **k))
    level_1 = run.seed(0).level(1)
    known = {level_1.path: {"density": 0.8, "test_acc": 0.99, "final_val_acc": 0.99, "best_val_acc": 0.99,
                            "best_val_step": 1, "early_stop_step": 1}}
    rows = seed_rows(run, known=known)
    assert next(r for r in rows if r["seed"] == 0 and r["level"] == 1 and r["method"] == IMP_METHOD)["test_acc"] == 0.99
    assert level_1.metrics not in reads and len(reads) == len(set(reads)) == len(rows) - 1
