"""Registries: a name -> entry dict per pluggable kind (models, datasets, strategies, branches ...).

One lookup style and one error for all of them: an unknown name lists the valid ones.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from lottery.errors import LotteryError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """A plain dict of named entries, plus `register` (a decorator) and `lookup` (a checked get).

    Args:
        kind: what the entries are, for error messages ("pruning strategy", "model", ...).
        hint: appended to the unknown-name error, e.g. other accepted forms of a name.
    """

    def __init__(self, kind: str, entries: dict[str, T] | None = None, hint: str = ""):
        super().__init__(entries or {})
        self.kind, self.hint = kind, hint

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self[name] = entry
            return entry

        return add

    def check(self, name: str) -> None:
        """Raise a LotteryError listing the valid names unless `name` is registered."""
        if name not in self:
            raise LotteryError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self))}{self.hint}")

    def lookup(self, name: str) -> T:
        self.check(name)
        return self[name]
