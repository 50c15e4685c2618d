"""report.md: a summary that names the winning ticket beside the dense network and every method at its level, then a
table per method of its levels (mean ± std over seeds) and its sparsest level matching on test accuracy."""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

from lottery.report.matching import Row, by_method
from lottery.report.rows import IMP_METHOD


def _pct(x: float | None, acc_scale: float) -> str:
    return "—" if x is None else f"{x * acc_scale:.2f}"


def _spread(mean: float | None, std: float | None, n: int, acc_scale: float) -> str:
    """`mean ± std`, or the value alone for one seed (which has no spread to show)."""
    return _pct(mean, acc_scale) if n <= 1 or std is None else f"{_pct(mean, acc_scale)} ± {_pct(std, acc_scale)}"


def _table(rows: list[Row], value: str, level_key: str, acc_scale: float) -> list[str]:
    several = any(r.get(f"{value}_n", r.get("n", 1)) > 1 for r in rows)
    lines = [f"| level | % remaining | {value} ({'mean ± std, ' if several else ''}%) | n |", "|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r[level_key]):
        remaining = _pct(r.get("density_mean"), 100.0)
        n = r.get(f"{value}_n", r.get("n"))
        lines.append(f"| {r[level_key]} | {remaining} | {_spread(r.get(f'{value}_mean'), r.get(f'{value}_std'), n, acc_scale)} | {n} |")
    return lines


def _matching_line(r: Row | None, tolerance_points: float, value: str, level_key: str, acc_scale: float) -> str:
    head = f"Sparsest level matching on mean {value} (within {tolerance_points:g} points of the dense network's): "
    if r is None:
        return head + "none."
    n = r.get(f"{value}_n", r.get("n", 1))
    return (head + f"level {r[level_key]} ({_pct(r.get('density_mean'), 100.0)}% remaining, "
            f"{_spread(r[f'{value}_mean'], r.get(f'{value}_std'), n, acc_scale)}).")


def markdown_report(aggregated: Sequence[Row], matching: Mapping[object, Row | None], tolerance_points: float,
                    value: str = "test_acc", method_key: str = "method", level_key: str = "level",
                    acc_scale: float = 100.0, labels: Mapping[str, str] | None = None) -> str:
    """A Markdown section per method (headed by its name and, given `labels`, its label): a table of levels and the
    sparsest matching level."""
    parts = []
    for method, rows in by_method(aggregated, method_key).items():
        label = (labels or {}).get(method)
        parts += [f"### {method}" + (f": {label}" if label and label != method else ""), "",
                  *_table(rows, value, level_key, acc_scale), "",
                  _matching_line(matching.get(method), tolerance_points, value, level_key, acc_scale), ""]
    return "\n".join(parts)


def summary(rows: list[dict], winners: Mapping[int, dict], seed: int, test_matched: Row | None,
            tolerance_points: float, labels: Mapping[str, str]) -> str:
    """report.md's opening: the winning ticket of `seed` (the one `lottery run` exports) by the one rule, beside the
    dense network and every method at its level (mean ± std over seeds where there are several), and the level the
    second rule (mean test accuracy, for comparing methods) names, labelled as such."""
    best = winners[seed]
    level, seeds = best["level"], sorted({r["seed"] for r in rows})
    lines = ["## Summary", "",
             f"**The winning ticket** (seed {seed}, exported as ticket.safetensors): **level {level}, "
             f"{100 * best['density']:.2f}% of the weights remaining**, validation accuracy {100 * best['final_val_acc']:.2f}%, "
             f"test accuracy {100 * best['test_acc']:.2f}%. It is the sparsest level whose final validation accuracy is "
             f"within {tolerance_points:g} points of the dense network's: the test set takes no part in choosing it.", ""]
    if len(seeds) > 1:
        lines += ["Each seed's winning ticket by the same rule: " + ", ".join(
            f"seed {s} level {r['level']} ({100 * r['density']:.2f}%)" for s, r in sorted(winners.items())) + ".", ""]
    several = len(seeds) > 1
    lines += [f"| network | level | % remaining | validation acc (%{', mean ± std' if several else ''}) | test acc (%) |",
              "|---|---:|---:|---:|---:|"]
    at = [(IMP_METHOD, 0, "dense network")] + [(m, level, labels.get(m, m)) for m in dict.fromkeys(
        r["method"] for r in rows if r["level"] == level)]
    for method, lv, label in at:
        group = [r for r in rows if r["method"] == method and r["level"] == lv]
        cells = [_stats([r.get(k) for r in group]) for k in ("density", "final_val_acc", "test_acc")]
        lines.append(f"| {label} | {lv} | {cells[0]} | {cells[1]} | {cells[2]} |")
    if test_matched is not None:
        lines.append(f"| *a second rule:* the sparsest IMP level matching on mean **test** accuracy (for comparing "
                     f"methods below) | {test_matched['level']} | {_pct(test_matched.get('density_mean'), 100.0)} | — | "
                     f"{_spread(test_matched['test_acc_mean'], test_matched.get('test_acc_std'), test_matched.get('n', 1), 100.0)} |")
    return "\n".join(lines) + "\n"


def _stats(values: list) -> str:
    values = [float(v) for v in values if v is not None]
    if not values:
        return "—"
    return _spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values), 100.0)
