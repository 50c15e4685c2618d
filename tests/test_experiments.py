"""The scripts of experiments/ import what lottery has: a module or name moved in the package breaks a benchmark that no
other test runs (make bench-lanes and bench-bert did, when the lanes' module was merged into one)."""
import ast
import importlib
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _lottery_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name or None) of every `import lottery...` and `from lottery... import name` of a script."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lottery":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "lottery"]
    return found


@pytest.mark.parametrize("script", sorted(EXPERIMENTS.glob("*.py")), ids=lambda p: p.name)
def test_every_lottery_import_of_a_script_resolves(script):
    missing = []
    for module, name in _lottery_imports(script):
        try:
            imported = importlib.import_module(module)
        except ImportError as error:
            missing.append(f"{module}: {error}")
            continue
        if name is not None and not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{script.name} imports what lottery does not have: {missing}"
