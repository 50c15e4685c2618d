"""The manual cannot go stale: every Python block of README.md and docs/ runs as written (each page's blocks in order,
in a folder holding a ticket for the pages that read one), every file, module and name the pages refer to in code
spans exists, and none is pointed at by a line number (which moves with every change). A block that opens with a
file's path (`# lottery_extras/...`) is a file of an example package: tests/cli/test_plugins.py writes and runs it."""
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


BLOCK = re.compile(r"```python\n(.*?)```", re.S)
CODE_PAGES = [p for p in PAGES if any(not b.startswith("# lottery_extras/") for b in BLOCK.findall(p.read_text()))]


def _ticket(folder: Path) -> None:
    """ticket.safetensors as `lottery run` writes one: LeNet-300-100 on the digits, half its weights pruned."""
    import torch

    from lottery import MaskManager, Ticket, create_model, save_ticket

    torch.manual_seed(0)
    model = create_model("lenet_300_100", 10, (1, 8, 8))
    masks = MaskManager(model)
    masks.prune(0.5, "layer_magnitude")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    meta = {"architecture": "lenet_300_100", "num_classes": 10, "input_shape": [1, 8, 8], "dataset": "digits",
            "level": 3, "density": 0.5, "seed": 0}
    save_ticket(Ticket(masks.masks, state, state, meta), folder / "ticket.safetensors")


@pytest.mark.parametrize("page", CODE_PAGES, ids=lambda p: p.name)
def test_every_python_block_runs_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _ticket(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(BLOCK.findall(page.read_text())):
        if block.startswith("# lottery_extras/"):
            continue
        try:
            exec(compile(block, f"{page.name}, block {number}", "exec"), namespace)
        except Exception as e:  # the page and block in the failure, with the error
            raise AssertionError(f"{page.name}, python block {number} fails: {type(e).__name__}: {e}") from e
