"""The three layers, checked from the source: each imports only those below it.

    dashboard.py, views/  ->  ui/  ->  charts/  ->  llama_core/ (llama_core/lab/ beside it)

The library never imports streamlit or the lab; the lab never imports streamlit; charts
never import streamlit; nothing imports a layer above it; and no two project modules
import each other, directly or round a longer loop. Imports inside functions count too:
a lazy import is still a dependency. The checker is tried once on a planted violation
of each kind, so a broken checker cannot pass silently."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("llama_core", "charts", "ui", "views", "dashboard")  # bottom to top
FORBIDDEN = {  # module prefix -> prefixes it must never import
    "llama_core": ("streamlit", "llama_core.lab", "charts", "ui", "views", "dashboard"),
    "llama_core.lab": ("streamlit", "charts", "ui", "views", "dashboard"),
    "charts": ("streamlit", "ui", "views", "dashboard"),
    "ui": ("views", "dashboard"),
    "views": ("dashboard",),
}

# `python -m llama_core` is the lab's command line: its entry point stands with the lab.
ENTRY_POINTS = {"llama_core.__main__": "llama_core.lab"}


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the layers under root."""
    out = {}
    for top in LAYERS:
        if (root / f"{top}.py").is_file():
            out[top] = root / f"{top}.py"
        for f in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else ():
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module this file imports, as absolute dotted names (project modules
    resolved to the deepest module that exists; others as written)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return found


def violations(root: Path) -> list[str]:
    modules = project_modules(root)
    graph: dict[str, set[str]] = {}
    problems = []
    for name, path in modules.items():
        deps = imports_of(name, path, modules)
        owner = max((p for p in FORBIDDEN if name == p or name.startswith(p + ".")),
                    key=len, default=None)
        if name in ENTRY_POINTS:
            owner = ENTRY_POINTS[name]
        for dep in sorted(deps):
            for banned in FORBIDDEN.get(owner, ()):
                if (dep == banned or dep.startswith(banned + ".")) and not (
                        owner == "llama_core" and banned == "llama_core.lab"
                        and name.startswith("llama_core.lab")):
                    problems.append(f"{name} imports {dep}: {owner} must not import {banned}")
        graph[name] = {d for d in deps if d in modules and d != name}
    problems += [f"import loop: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_layers_hold():
    assert violations(REPO) == []


def test_the_layers_exist():
    modules = project_modules(REPO)
    for expected in ("dashboard", "llama_core.model", "llama_core.lab.store", "ui.state"):
        assert expected in modules
    assert any(m.startswith("charts.") for m in modules), "charts/ holds the figures"


@pytest.fixture
def planted(tmp_path) -> Path:
    """A copy of the layers' sources to plant one violation in."""
    for top in LAYERS:
        src = REPO / top
        if src.is_dir():
            shutil.copytree(src, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
        elif (REPO / f"{top}.py").is_file():
            shutil.copy(REPO / f"{top}.py", tmp_path / f"{top}.py")
    assert violations(tmp_path) == []
    return tmp_path


@pytest.mark.parametrize("file, line, says", [
    ("llama_core/model.py", "import streamlit as st", "must not import streamlit"),
    ("llama_core/model.py", "from .lab import store", "must not import llama_core.lab"),
    ("llama_core/lab/store.py", "import streamlit", "must not import streamlit"),
    ("llama_core/stats.py", "def f():\n    from ui import state", "must not import ui"),
    ("charts/__init__.py", "import streamlit", "must not import streamlit"),
    ("ui/state.py", "from views import train", "must not import views"),
    ("llama_core/stats.py", "from .config import ModelConfig", "import loop"),
])
def test_the_checker_catches_a_planted_violation(planted, file, line, says):
    path = planted / file
    path.write_text(path.read_text() + "\n" + line + "\n")
    if says == "import loop":  # config must import stats back to close a loop
        cfg = planted / "llama_core/config.py"
        cfg.write_text(cfg.read_text() + "\nfrom . import stats\n")
    found = violations(planted)
    assert any(says in p for p in found), found
