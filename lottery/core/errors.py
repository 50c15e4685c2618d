"""What users are told when something is wrong, said one way each:

- `LotteryError`, the one error type for user mistakes (the CLI prints its message and exits with code 2);
- `Registry`, the one lookup by name for every pluggable kind (models, datasets, strategies, branches ...):
  an unknown name is an error that lists the valid ones;
- `missing`/`require`, the one message for an optional package that is missing (the extras of pyproject.toml).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Generic, TypeVar


class LotteryError(Exception):
    """A user mistake (bad config, wrong file, wrong architecture) with a message naming the fix."""


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (a module set to None in sys.modules cannot)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(module: str, what: str, extra: str) -> LotteryError:
    return LotteryError(f"{what} needs the {module} package, which is not installed: pip install -e \".[{extra}]\" "
                        f"in the lottery checkout (or pip install {module})")


def require(module: str, what: str, extra: str):
    """Import the optional package `module`, installed by the extra `extra`, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(module, what, extra) from None


T = TypeVar("T")


class Registry(dict, Generic[T]):
    """A plain dict of named entries, plus `register` (a decorator), `lookup` (a checked get) and `summary` (a line
    about an entry, for `lottery list`).

    Args:
        kind: what the entries are, for error messages ("pruning strategy", "model", ...).
        hint: appended to the unknown-name error, e.g. other accepted forms of a name.
        summaries: one line per entry; an entry without one is described by the first line of its docstring.
    """

    def __init__(self, kind: str, entries: dict[str, T] | None = None, hint: str = "",
                 summaries: dict[str, str] | None = None):
        super().__init__(entries or {})
        self.kind, self.hint, self.summaries = kind, hint, dict(summaries or {})

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        def add(entry: T) -> T:
            self[name] = entry
            if summary:
                self.summaries[name] = summary
            return entry

        return add

    def summary(self, name: str) -> str:
        """One line about entry `name`."""
        doc = getattr(self[name], "__doc__", None) if callable(self[name]) else None
        return self.summaries.get(name) or (doc.strip().splitlines()[0] if doc and doc.strip() else "")

    def check(self, name: str) -> None:
        """Raise a LotteryError listing the valid names unless `name` is registered."""
        if name not in self:
            raise LotteryError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self))}{self.hint}")

    def lookup(self, name: str) -> T:
        self.check(name)
        return self[name]
