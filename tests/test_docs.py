"""The manual cannot go stale: every file, module and name that README.md and docs/ refer to in code spans exists,
and none is pointed at by a line number (which moves with every change)."""
import importlib
import re
from pathlib import Path

import pytest

from lottery.core.methods import ENTRY_POINTS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SPAN = re.compile(r"`([^`\n]+)`")
# A path of the project (a bare name: a module or script, found anywhere in it); what a run writes (runs/..., a
# bare report.md or config.yaml) is no file of the project.
FILE = re.compile(r"^(?!runs/)(?:[\w.-]+/)+[\w.-]+\.(py|yaml|sh|md|toml)$|^[\w.-]+\.(py|sh)$")
DOTTED = re.compile(r"(?<![\w.])lottery(?:\.\w+)+")  # lottery.core.masks.MaskManager, in code or prose
SLASHED = re.compile(r"^((?:core|lanes|sparsity|structured|models|data|export|training|imp|report|cli)(?:/\w+)+)\.(\w+)$")
LINE_NUMBER = re.compile(r"\bline \d+|\blines \d+ and \d+|\.py:\d+")


def _spans(page: Path) -> list[str]:
    return SPAN.findall(page.read_text())


def _resolve(dotted: str):
    """The module or attribute `dotted` names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _file_exists(name: str) -> bool:
    if (ROOT / name).exists() or (ROOT / "lottery" / name).exists():
        return True
    return "/" not in name and any(p.name == name for p in ROOT.glob("**/" + name) if ".venv" not in p.parts)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_module_and_name_the_page_names_exists(page):
    missing = []
    for span in _spans(page):
        for token in span.split():
            token = token.strip("(),:;'\"[]")
            if FILE.match(token) and not _file_exists(token.split("::")[0]):
                missing.append(token)
            slashed = None if FILE.match(token) else SLASHED.match(token)
            if slashed:
                module, name = slashed.groups()
                try:
                    getattr(importlib.import_module("lottery." + module.replace("/", ".")), name)
                except (ImportError, AttributeError):
                    missing.append(token)
        for dotted in DOTTED.findall(span):
            if dotted == ENTRY_POINTS:  # the entry-point group's name, not a module
                continue
            try:
                _resolve(dotted)
            except (ImportError, AttributeError):
                missing.append(dotted)
    assert not missing, f"{page.name} names what does not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_points_at_code_by_line_number(page):
    assert not LINE_NUMBER.findall(page.read_text()), f"{page.name}: refer to code by module and name"
