"""A grid of experiments from command-line overrides: `prune.fraction=0.2,0.5 seeds=[0,1] prune.levels=3`.

    key=a,b,c     an axis: one experiment per value (commas inside [...] belong to the value:
                  `branches=[reinit],[reinit,random_prune]` is an axis of two lists)
    key=v         one value, the same in every experiment
    seeds=[0,1]   the seeds each experiment runs (also `seeds=0,1` or `seed=0,1`); seeds share their
                  experiment's folder, so they are not an axis of the grid

A grid point is named after its axis values as the resolved config holds them (`0.20` and `0.2` name the
same experiment): `demo,prune.fraction=0.2,rewind.step=5`. When a value does not fit in a folder name
(lists, paths) or the name would be long, the axis values are replaced by a short hash of them.
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import re
import typing
from dataclasses import dataclass, fields, is_dataclass

from lottery.core.errors import LotteryError

SEEDS = ("seeds", "seed")
_SAFE = re.compile(r"^[A-Za-z0-9._+\-]+$")
_MAX_NAME = 100  # characters; longer names fall back to the hash
_FIXED_ONLY = ("name", "runs_dir")  # these say where a point lives: one value for the whole grid


@dataclass
class Grid:
    fixed: list[str]  # key=value overrides every point gets
    axes: list[tuple[str, list[str]]]  # (key, values) in command-line order
    seeds: list[int] | None  # None: the config's seed


@dataclass
class Point:
    name: str  # the experiment name (its folder under runs_dir)
    values: dict[str, str]  # axis key -> value as given on the command line
    overrides: list[str]  # fixed + axis overrides + name=..., without the seed


def split_values(text: str) -> list[str]:
    """`0.2,0.5` -> ['0.2', '0.5']; commas inside brackets, braces or quotes do not split."""
    out, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    out.append(text[start:].strip())
    return out


def parse(overrides: list[str]) -> Grid:
    """Split `key=value` arguments into fixed overrides, grid axes and the seeds; every key checked.

    A key given twice takes its last values, as in `lottery run`.
    """
    by_key: dict[str, list[str]] = {}
    for arg in overrides:
        key, eq, text = arg.partition("=")
        key = key.strip()
        if not eq or not key:
            raise LotteryError(f"{arg!r} is not a key=value override; write e.g. prune.fraction=0.2,0.5")
        values = _seed_values(text) if key in SEEDS else split_values(text)
        if not values or any(v == "" for v in values):
            raise LotteryError(f"grid key {key} has an empty value in {arg!r}; give values like {key}=a,b")
        if key not in SEEDS:
            check_key(key)
        if len(values) > 1 and (key in _FIXED_ONLY or key.startswith("launcher.")):
            raise LotteryError(f"{key} takes one value for the whole sweep, got {len(values)} ({text}); "
                               "sweep over experiment keys such as prune.fraction=0.2,0.5")
        by_key["seeds" if key in SEEDS else key] = values
    seeds = _ints(by_key.pop("seeds")) if "seeds" in by_key else None
    fixed = [f"{k}={v[0]}" for k, v in by_key.items() if len(v) == 1]
    return Grid(fixed, [(k, v) for k, v in by_key.items() if len(v) > 1], seeds)


def _seed_values(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return split_values(text) if text.strip() else []


def _ints(values: list[str]) -> list[int]:
    try:
        seeds = [int(v) for v in values]
    except ValueError:
        raise LotteryError(f"seeds={','.join(values)}: seeds are integers, e.g. seeds=[0,1,2]") from None
    if len(set(seeds)) != len(seeds):
        raise LotteryError(f"seeds={','.join(values)} lists a seed twice")
    return seeds


def check_key(key: str) -> None:
    """An unknown key (`prune.fration`) is an error naming the closest valid one."""
    from lottery.cli.config import CommandConfig

    node: object = CommandConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not is_dataclass(node):
            return  # inside a free-form dict field (data.options, prune.rates): any key
        hints = typing.get_type_hints(node)
        names = [f.name for f in fields(node)]
        if part not in names:
            prefix = ".".join(parts[:i])
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {'.'.join([*parts[:i], close[0]])}?" if close else f"; valid keys here: {', '.join(names)}"
            where = f" in {prefix}" if prefix else ""
            raise LotteryError(f"unknown grid key {key!r}: no {part!r}{where}{hint}")
        node = hints[part]
    if is_dataclass(node):
        raise LotteryError(f"grid key {key!r} is a section; give one of its keys, e.g. {key}.{fields(node)[0].name}=...")


def points(grid: Grid, base_name: str, canonical) -> list[Point]:
    """Every combination of the axis values, in command-line order.

    canonical(overrides, key) -> the value of `key` in the config those overrides resolve to (a string).
    """
    out = []
    for combo in itertools.product(*(values for _, values in grid.axes)):
        axis = [f"{key}={v}" for (key, _), v in zip(grid.axes, combo)]
        overrides = grid.fixed + axis
        resolved = {key: canonical(overrides, key) for key, _ in grid.axes}
        name = point_name(base_name, resolved)
        out.append(Point(name, {k: v for (k, _), v in zip(grid.axes, combo)}, overrides + [f"name={name}"]))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise LotteryError(f"two grid points resolve to the same experiment {dup}; list each value once")
    return out


def point_name(base: str, resolved: dict[str, str]) -> str:
    """`demo,prune.fraction=0.2`; a hash of the values when one does not fit in a folder name."""
    if not resolved:
        return base
    items = [f"{k}={v}" for k, v in resolved.items()]
    name = ",".join([base, *items])
    if all(_SAFE.match(v) for v in resolved.values()) and len(name) <= _MAX_NAME:
        return name
    return f"{base},{hashlib.sha1(','.join(items).encode()).hexdigest()[:8]}"


def format_value(value) -> str:
    """A resolved config value as it appears in a point's name."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    return str(value)
