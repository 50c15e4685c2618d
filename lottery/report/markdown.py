"""report.md: a table per method of its levels (mean ± std over seeds) and its sparsest matching level."""
from __future__ import annotations

from typing import Mapping, Sequence

from lottery.report.matching import Row, by_method


def _pct(x: float | None, acc_scale: float) -> str:
    return "—" if x is None else f"{x * acc_scale:.2f}"


def _table(rows: list[Row], value: str, level_key: str, acc_scale: float) -> list[str]:
    lines = [f"| level | % remaining | {value} (mean ± std, %) | n |", "|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r[level_key]):
        remaining = _pct(r.get("density_mean"), 100.0)
        acc = f"{_pct(r.get(f'{value}_mean'), acc_scale)} ± {_pct(r.get(f'{value}_std'), acc_scale)}"
        lines.append(f"| {r[level_key]} | {remaining} | {acc} | {r.get(f'{value}_n', r.get('n'))} |")
    return lines


def _matching_line(r: Row | None, tolerance_points: float, value: str, level_key: str, acc_scale: float) -> str:
    head = f"Sparsest matching level (mean {value} within {tolerance_points:g} points of dense): "
    if r is None:
        return head + "none."
    return (head + f"level {r[level_key]} ({_pct(r.get('density_mean'), 100.0)}% remaining, "
            f"{_pct(r[f'{value}_mean'], acc_scale)} ± {_pct(r[f'{value}_std'], acc_scale)}).")


def markdown_report(aggregated: Sequence[Row], matching: Mapping[object, Row | None], tolerance_points: float,
                    value: str = "test_acc", method_key: str = "method", level_key: str = "level",
                    acc_scale: float = 100.0) -> str:
    """A Markdown section per method: a table of levels and the sparsest matching level."""
    parts = []
    for method, rows in by_method(aggregated, method_key).items():
        parts += [f"### {method}", "", *_table(rows, value, level_key, acc_scale), "",
                  _matching_line(matching.get(method), tolerance_points, value, level_key, acc_scale), ""]
    return "\n".join(parts)


def exported_levels(winners: Mapping[int, dict], tolerance_points: float) -> str:
    """The section on the exported ticket: the level `winning_level` picked for each seed (winners: seed -> row)."""
    return ("### exported ticket\n\n`lottery run` and `lottery export` pick, per seed, the sparsest level whose final "
            f"*validation* accuracy is within {tolerance_points:g} points of the dense network's (same rule, "
            "on validation accuracy, so the test set takes no part in the choice):\n\n"
            + "".join(f"- seed {s}: level {r['level']} ({100 * r['density']:.2f}% remaining, validation "
                      f"{100 * r['final_val_acc']:.2f}%, test {100 * r['test_acc']:.2f}%)\n" for s, r in sorted(winners.items())))
