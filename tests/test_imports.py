"""The import graph of suite/, baselines/ and launch/, read with `ast` (imports inside functions count):
no circle at all, no private name taken from another module, a leaf config."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from suite.methods import METHODS

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("suite", "baselines", "launch")

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks (never run)."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test).endswith("TYPE_CHECKING")]
    return {id(x) for block in blocks for x in ast.walk(block)}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, str]]:
    """(imported project module, the name taken from it or None for the module itself, the local name)
    for every import that runs, inside functions too."""
    tree = ast.parse(path.read_text())
    skip = _type_only(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, None, a.asname or a.name) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                if f"{base}.{a.name}" in modules:  # `from suite import config`: the module itself
                    out.append((f"{base}.{a.name}", None, a.asname or a.name))
                elif base in modules:
                    out.append((base, a.name, a.asname or a.name))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: {target for target, _, _ in _imports(name, path, modules) if target != name}
             for name, path in modules.items()}
    # importing suite.experiment builds Config from every registered method: it imports each method's module
    graph["suite.experiment"] |= {spec.split(":")[0] for spec in METHODS.values()}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle_through_a_function_level_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    """Not even through an import inside a function: a method that rebuilds another run's config (an
    ablation, its source's) asks the Config it was given (Config.rebuild), never suite.experiment."""
    graph = _graph()
    assert "suite.experiment" in graph["suite.methods"] or "suite.methods" in graph["suite.experiment"]
    assert not any("suite.experiment" in graph[m] for m in graph if m.startswith("baselines."))
    assert _cycles(graph) == []


def test_the_finder_sees_an_import_inside_a_function_and_skips_type_checking(tmp_path):
    """An import inside a function counts (it runs when called); one under TYPE_CHECKING does not."""
    module = tmp_path / "ablation.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from suite.masks import Mask\n"
                      "def rebuild(tree):\n    from suite.experiment import from_dict\n    return from_dict(tree)\n")
    modules = {**_modules(), "baselines.ablation": module}
    assert _imports("baselines.ablation", module, modules) == [("suite.experiment", "from_dict", "from_dict")]


def test_config_is_a_leaf_and_imports_neither_torch_nor_the_registry():
    modules = _modules()
    assert {t for t, _, _ in _imports("suite.config", modules["suite.config"], modules)} == {"suite.errors"}
    code = ("import sys, suite.config; loaded = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'baselines') or m in ('suite.methods', 'suite.experiment')]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_no_module_takes_another_modules_private_name():
    """Neither `from m import _x` nor `m._x` on an imported project module."""
    modules = _modules()
    found = []
    for name, path in modules.items():
        imported = _imports(name, path, modules)
        found += [f"{name}: from {t} import {n}" for t, n, _ in imported if n and n.startswith("_")
                  and not n.startswith("__")]
        aliases = {local for _, n, local in imported if n is None}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{name}: {node.value.id}.{node.attr}")
    assert found == []



def test_no_test_file_imports_a_private_name():
    """`from m import _x` in tests/, of a project module or another test file: shared helpers are public
    in tests/helpers.py. (Attribute access such as `runner._install` in white-box tests is not checked.)"""
    found = []
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                found += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []

def test_config_error_comes_from_suite_errors_everywhere():
    found = []
    for path in sorted(p for d in (*PACKAGES, "tests") for p in (REPO / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "suite.errors" and \
                    any(a.name == "ConfigError" for a in node.names):
                found.append(f"{path.relative_to(REPO)}: from {node.module}")
    assert found == []


def test_the_report_reads_the_committed_export_without_torch_or_the_registry(tmp_path):
    """Importing the report and building the committed study's document, README headline and tables from its
    export loads neither torch, a baseline, the method registry nor the experiment module."""
    code = ("import sys; from suite.report.cli import main; import suite.report; "
            f"rc = main(['docs/results/lenet300_mnist.json', '--plan', 'configs/reports/lenet300_mnist.yaml', "
            f"'--doc', {str(tmp_path / 'doc.md')!r}, '--readme', {str(tmp_path / 'README.md')!r}, "
            f"'--out', {str(tmp_path / 'tables.md')!r}]); assert rc == 0, rc; "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'baselines') "
            "or m in ('suite.methods', 'suite.experiment')]; assert not loaded, loaded[:5]")
    (tmp_path / "README.md").write_text("# project\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
    assert "| Group" in (tmp_path / "tables.md").read_text()
    assert (tmp_path / "doc.md").read_text().startswith("#")
