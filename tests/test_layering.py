"""The architecture holds in the imports: a module's layer is its folder, and imports only go down.

LAYERS is the one statement of the architecture (DESIGN.md draws it): each folder of lottery/ imports only its own
modules and those of lower layers, every import counted (inside functions and TYPE_CHECKING blocks too); the
torch-only folders import nothing but torch, the standard library, and safetensors where files are read; no
module takes part in an import cycle.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lottery"
LAYERS = [("core",), ("lanes", "sparsity", "models", "data", "structured"), ("export",), ("training",), ("imp",), ("report",), ("cli",)]
TORCH_ONLY = ("core", "lanes", "sparsity")
THIRD_PARTY_OF_TORCH_ONLY = {"torch", "safetensors"}  # safetensors only inside functions (see below)
FACADE = {"lottery", "lottery.__main__"}  # the public API and `python -m lottery`: above every layer


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    return {".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in package.rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported lottery module, at module level?) for every import of a file, including those inside functions.

    `from lottery.x import y` names the module lottery.x.y when there is one, else lottery.x.
    """
    tree, found = ast.parse(path.read_text()), []
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append((sub if sub in known else node.module, id(node) in top))
    return found


def layer(module: str) -> int:
    """The rank of a module's layer, from the folder it lives in (0: core)."""
    folder = module.split(".")[1]
    return next(i for i, folders in enumerate(LAYERS) if folder in folders)


def upward_imports(package: Path = PACKAGE) -> list[str]:
    """'a imports b' for every import that runs from a lower layer to a higher one, or across folders of one layer."""
    found = modules(package)
    wrong = []
    for name, path in found.items():
        if name in FACADE:
            continue
        for target, _ in imports(path, set(found)):
            if target.split(".")[0] != "lottery":
                continue
            if target in FACADE:  # the public API (for __version__): the top layer only
                upward = layer(name) < len(LAYERS) - 1
            else:
                upward = name.split(".")[1] != target.split(".")[1] and layer(target) >= layer(name)
            if upward:
                wrong.append(f"{name} imports {target}")
    return wrong


def cycles(package: Path = PACKAGE) -> list[list[str]]:
    """The import cycles among the package's modules (each as the modules on it), every import counted."""
    found = modules(package)
    graph = {m: sorted({t for t, _ in imports(p, set(found)) if t in found and t != m}) for m, p in found.items()}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w), component.append(w)
            on_stack.discard(v)
            if component:
                out.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_every_module_lives_in_a_layer_folder():
    folders = {f for group in LAYERS for f in group}
    outside = [m for m in modules() if m not in FACADE and (m.count(".") < 1 or m.split(".")[1] not in folders)]
    assert not outside, f"modules outside the layer folders {sorted(folders)}: {outside}"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(folders)


def test_imports_only_go_down():
    assert upward_imports() == []


def test_no_import_cycle_anywhere():
    assert cycles() == []


def test_an_upward_import_and_a_cycle_are_caught(tmp_path):
    """The checks above on a copy of the package with one deliberately bad module in the core."""
    import shutil

    copy = tmp_path / "lottery"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "bad.py").write_text("def f():\n    from lottery.training.spec import RunSpec\n")
    (copy / "training" / "spec.py").write_text((copy / "training" / "spec.py").read_text() + "\nimport lottery.core.bad\n")
    assert upward_imports(copy) == ["lottery.core.bad imports lottery.training.spec"]
    assert cycles(copy) == [["lottery.core.bad", "lottery.training.spec"]]


@pytest.mark.parametrize("name", sorted(m for m in modules() if m not in FACADE and m.split(".")[1] in TORCH_ONLY))
def test_the_torch_only_layers_import_only_torch(name):
    for module, top_level in imports(modules()[name], set(modules())):
        root = module.split(".")[0]
        if root == "safetensors":
            assert not top_level, f"{name} imports safetensors at module level: import it where files are read"
        elif root != "lottery":
            assert root in THIRD_PARTY_OF_TORCH_ONLY or root in sys.stdlib_module_names, f"{name} imports {module}"


def test_importing_the_core_loads_no_lightning_and_no_extra_library():
    code = ("import sys, lottery; from lottery import MaskManager, load_ticket, capture; import lottery.lanes; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pytorch_lightning', 'lightning_fabric', "
            "'torchvision', 'torchmetrics', 'omegaconf', 'safetensors', 'matplotlib', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
