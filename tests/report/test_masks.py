"""Mask analytics: intersection over union, from the mask files of a level and its branches."""
import torch

from lottery.core.files import save_tensors, write_json
from lottery.core.layout import RunLayout
from lottery.report.masks import iou, overlap_section


def test_iou_by_hand():
    a, b = torch.tensor([1, 1, 0, 0], dtype=torch.bool), torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert iou(a, b) == 1 / 3 and iou(a, a) == 1.0 and iou(~(a | b), torch.zeros(4, dtype=torch.bool)) == 0.0


def test_the_section_reads_the_sparsest_levels_masks(tmp_path):
    run = RunLayout.of(tmp_path, "exp")
    level = run.seed(0).level(1)
    imp = {"fc.weight": torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)}
    rigl = {"fc.weight": torch.tensor([[1, 0], [1, 0]], dtype=torch.bool)}
    save_tensors(level.mask, imp)
    save_tensors(level.branch("rigl").mask, rigl)
    write_json(level.branch("rigl").metrics, {})
    rows = [{"seed": 0, "method": "ticket", "level": 1},
            {"seed": 0, "method": "rigl", "level": 1, "layer_density": {"fc.weight": 0.5},
             "target_density": {"fc.weight": 0.5}}]
    text = overlap_section(run, rows)
    assert "### masks at level 1 (seed 0)" in text
    assert "| rigl | 0.333 | 0.333 |" in text  # one shared of three
    assert "| rigl | 50.00 / 50.00 |" in text
