"""report.md's tables: one per method, with its sparsest matching level."""
import math

from lottery.report.markdown import markdown_report
from lottery.report.matching import aggregate, sparsest_matching


def _get(agg, method, level):
    return next(r for r in agg if r["method"] == method and r["level"] == level)


def test_markdown_report_has_a_table_and_a_matching_line_per_method(rows):
    agg = aggregate(rows)
    text = markdown_report(agg, sparsest_matching(agg, 1.0), 1.0)
    assert "### imp" in text and "### snip" in text
    assert "| level | % remaining | test_acc (mean ± std, %) | n |" in text
    assert "| 0 | 100.00 | 91.00 ± 1.00 | 3 |" in text
    assert "| 3 | 51.20 | 86.00 ± 1.00 | 3 |" in text
    assert "Sparsest level matching on mean test_acc (within 1 points of the dense network's): level 2 (64.00% " \
           "remaining, 90.00 ± 0.00)." in text
    assert text.count("none.") == 1
    assert not math.isnan(_get(agg, "snip", 2)["test_acc_std"])
