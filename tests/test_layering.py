"""The layers of DESIGN.md hold in the imports: core -> Lightning layer -> interface, never upwards."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lottery"
CORE = ["errors", "layout", "lanes", "lane_count", "masks", "pruning", "rewind", "ticket", "files", "seeds", "mode_connectivity",
        "pruning_at_init"]
INTERFACE = {"lottery.config", "lottery.cli", "lottery.__main__", "lottery.experiment", "lottery.stability",
             "lottery.sweep", "lottery.grid", "lottery.launcher"}
THIRD_PARTY_OF_CORE = {"torch", "safetensors"}  # safetensors only inside functions (see below)


def _module_files() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import of a file, including those inside functions."""
    tree, found = ast.parse(path.read_text()), []
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, id(node) in top)]
            found += [(f"{node.module}.{a.name}", id(node) in top) for a in node.names if node.module == "lottery"]
    return found


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_only_torch_and_itself(name):
    for module, top_level in _imports(PACKAGE / f"{name}.py"):
        root = module.split(".")[0]
        if root == "lottery":
            assert module.removeprefix("lottery.").split(".")[0] in CORE, f"core module {name} imports {module}"
        elif root == "safetensors":
            assert not top_level, f"{name} imports safetensors at module level: import it where files are read"
        else:
            assert root in THIRD_PARTY_OF_CORE or root in sys.stdlib_module_names, f"core module {name} imports {module}"


def test_the_lightning_layer_does_not_import_the_interface():
    lightning_layer = {m: p for m, p in _module_files().items()
                       if m not in INTERFACE and m.removeprefix("lottery.") not in CORE and m != "lottery"}
    assert "lottery.imp" in lightning_layer and "lottery.trainer" in lightning_layer
    for name, path in lightning_layer.items():
        wrong = [m for m, _ in _imports(path) if any(m == i or m.startswith(i + ".") for i in INTERFACE)]
        assert not wrong, f"{name} (Lightning layer) imports the interface layer: {wrong}"


def test_importing_the_core_loads_no_lightning_and_no_extra_library():
    code = ("import sys, lottery; from lottery import MaskManager, load_ticket, capture; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pytorch_lightning', 'lightning_fabric', "
            "'torchvision', 'torchmetrics', 'omegaconf', 'safetensors', 'matplotlib', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
