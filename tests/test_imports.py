"""How netc's own modules import each other, read statically from their source with `ast`:

- no import cycles, counting the imports inside functions too (a lazy import that closes a
  cycle still ties the two modules together, and one day runs at import time);
- no module imports another module's private (underscore) name: a helper that two modules
  need is public in a leaf module.

An edge A -> B is an `import`/`from ... import` statement in A that names B. `from P import x`
is an edge to the module P.x when there is one, else to P. The parent packages that Python
imports on the way (`import netc.dsl.parser` runs netc/__init__ and netc/dsl/__init__ first)
are not edges: every module would depend on its package, and a package's __init__
re-exporting its own modules is the usual pattern. Imports under `if TYPE_CHECKING:` never
run and are not edges.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# pyproject.toml's [tool.setuptools.package-dir] (test_package_dirs_match_pyproject checks it)
PACKAGE_DIRS = {"netc": "api", "netc.dsl": "dsl", "netc.compiler": "compiler",
                "netc.runtime": "runtime"}

# Private names that one module still imports from another, each with the change that ends
# it. The test allows these; it does not require them. (None left.)
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported netc module
    name: str | None  # the name taken from it (from-imports and module.attribute), if any
    line: int


def modules() -> dict[str, Path]:
    """{dotted module name: file} for every module of the netc package."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST):
    """Every node of the tree except what sits under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _netc_module(dotted: str) -> str | None:
    """The longest prefix of `dotted` that is a netc module (`import netc.dsl.parser.x`)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in MODULES:
            return ".".join(parts[:k])
    return None


def imports(module: str) -> list[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found: list[Import] = []
    bound: dict[str, str] = {}  # local name -> netc module, for `alias._private` below
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _netc_module(alias.name)
                if target is None:
                    continue
                found.append(Import(module, target, None, node.lineno))
                if alias.asname:
                    bound[alias.asname] = target
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    target = f"{base}.{alias.name}"
                    found.append(Import(module, target, None, node.lineno))
                    bound[alias.asname or alias.name] = target
                elif base in MODULES:
                    found.append(Import(module, base, alias.name, node.lineno))
    for node in _statements(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound):
            found.append(Import(module, bound[node.value.id], node.attr, node.lineno))
    return found


def graph() -> dict[str, list[Import]]:
    return {m: imports(m) for m in MODULES}


def cycles(edges: dict[str, list[Import]]) -> list[list[Import]]:
    """One cycle through each strongly connected group of modules (Tarjan), as its edges."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # the graph is small: recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        for e in edges[v]:
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1 or any(e.target == v for e in edges[v]):
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    found = []
    for group in groups:  # a shortest way round from the group's first module
        start = min(group)
        paths = {start: []}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            nxt = []
            for v in frontier:
                for e in edges[v]:
                    if e.target == start:
                        cycle = paths[v] + [e]
                        break
                    if e.target in group and e.target not in paths:
                        paths[e.target] = paths[v] + [e]
                        nxt.append(e.target)
                if cycle:
                    break
            frontier = nxt
        found.append(cycle)
    return found


def show(cycle: list[Import]) -> str:
    return " -> ".join(f"{e.source} (line {e.line})" for e in cycle) + f" -> {cycle[0].source}"


# ---- the tests --------------------------------------------------------------------------------


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(show(c) for c in found)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for edges in graph().values():
        for e in edges:
            name = e.name or ""
            private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            if (private and e.target != e.source
                    and (e.source, e.target, name) not in KNOWN_PRIVATE_IMPORTS):
                bad.append(f"{e.source} line {e.line}: {e.target}.{name}")
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_runtime_does_not_import_the_api_package():
    """netc (api/__init__.py) imports netc.runtime lazily; the runtime never imports it back."""
    bad = [f"{e.source} line {e.line}" for m, edges in graph().items()
           if m.startswith("netc.runtime") for e in edges if e.target == "netc"]
    assert not bad, bad


# ---- the checks above can see what they look for -------------------------------------------


def _edges(spec: dict[str, list[str]]) -> dict[str, list[Import]]:
    return {v: [Import(v, w, None, 1) for w in ws] for v, ws in spec.items()}


def test_cycle_finder_finds_cycles_and_only_those():
    assert cycles(_edges({"a": ["b"], "b": ["c"], "c": []})) == []
    [cycle] = cycles(_edges({"a": ["b"], "b": ["c", "d"], "c": ["a"], "d": []}))
    assert [e.source for e in cycle] == ["a", "b", "c"]
    [loop] = cycles(_edges({"a": ["a"]}))
    assert [e.source for e in loop] == ["a"]
    assert len(cycles(_edges({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}))) == 2


def test_imports_are_read_inside_functions_and_resolved(tmp_path, monkeypatch):
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "__init__.py").write_text("")
    (tmp_path / "runtime" / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import y\n"
        "if TYPE_CHECKING:\n"
        "    from netc.runtime.z import Z\n"
        "def f():\n"
        "    from .y import _helper, public\n"
        "    import netc.runtime.z as zz\n"
        "    return y._other, zz._third\n")
    (tmp_path / "runtime" / "y.py").write_text("")
    (tmp_path / "runtime" / "z.py").write_text("from netc.runtime import x\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "ROOT", tmp_path)
    monkeypatch.setattr(this, "PACKAGE_DIRS", {"netc.runtime": "runtime"})
    monkeypatch.setattr(this, "MODULES", modules())
    got = {(e.target, e.name, e.line) for e in imports("netc.runtime.x")}
    assert got == {("netc.runtime.y", None, 2), ("netc.runtime.y", "_helper", 6),
                   ("netc.runtime.y", "public", 6), ("netc.runtime.z", None, 7),
                   ("netc.runtime.y", "_other", 8), ("netc.runtime.z", "_third", 8)}
    [cycle] = cycles(graph())
    assert show(cycle) == ("netc.runtime.x (line 7) -> netc.runtime.z (line 1) -> "
                           "netc.runtime.x")


def test_package_dirs_match_pyproject():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["setuptools"]["package-dir"] == PACKAGE_DIRS
    assert len(MODULES) > 30


def test_version_comes_from_the_installed_distribution_and_matches_the_api(capsys):
    import netc
    from netc.runtime.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"netc {netc.__version__}\n"


def test_every_package_is_listed_in_pyproject():
    """A subpackage missing from [tool.setuptools] packages is left out of a non-editable
    install (CI's)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {name for name, path in MODULES.items() if path.stem == "__init__"}
    assert set(config["tool"]["setuptools"]["packages"]) == packages

