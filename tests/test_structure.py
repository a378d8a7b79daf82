"""The shape of the package: the library apart from the lab, no import cycles, files read in one sitting."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "glscl"
LAB_ONLY = {"papermill", "ipywidgets", "seaborn", "jupyter", "jupyterlab", "nbformat", "nbclient", "matplotlib", "IPython"}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """Absolute names imported by a module (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def test_library_never_imports_the_lab_or_notebook_stack():
    for module, path in _modules().items():
        if module.startswith("glscl.lab"):
            continue
        # the command line is the front door of both: it may reach the lab inside a command, never on import
        for name in _imports(path, module, top_level_only=module == "glscl.cli"):
            root = name.split(".")[0]
            assert root not in LAB_ONLY, f"{module} imports {name}: the library must not need the lab's dependencies"
            assert not name.startswith("glscl.lab"), f"{module} imports {name}: the library must not import the lab"


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {m: {n for n in _imports(p, m, top_level_only=True) if n in modules and n != m} for m, p in modules.items()}
    # a package importing its own submodules (re-exports) is not a cycle of ideas; drop package -> child edges
    graph = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n] if n in stack else [m, n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_every_module_reads_in_one_sitting():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


LAYERS = (("glscl.config", "glscl.config_files", "glscl.progress", "glscl.files"), ("glscl.model", "glscl.losses"),
          ("glscl.data", "glscl.pem"), ("glscl.engine",), ("glscl.lab",), ("glscl.cli",))
"""The package's layers, lowest first: a module imports its own layer and the ones below, never one above."""


def _layer(module: str) -> int | None:
    for rank, roots in enumerate(LAYERS):
        if any(module == root or module.startswith(root + ".") for root in roots):
            return rank
    return None


def layer_violations(modules: dict[str, Path]) -> list[str]:
    """Every import (top level or inside a function) of a module from a layer above its own."""
    found = []
    for module, path in sorted(modules.items()):
        own = _layer(module)
        names = _imports(path, module, top_level_only=False)
        for name in sorted(n for n in names if not any(n.startswith(m + ".") for m in names)):  # modules, not their names
            other = _layer(name)
            if own is not None and other is not None and other > own:
                found.append(f"{module} imports {name} ({LAYERS[other][0]} is above {LAYERS[own][0]})")
    return found


def test_every_module_belongs_to_a_layer():
    assert [m for m in _modules() if m != "glscl" and _layer(m) is None] == []


def test_no_module_imports_a_layer_above_its_own():
    assert layer_violations(_modules()) == []


def test_a_planted_back_import_is_seen(tmp_path):
    planted = tmp_path / "model_helper.py"
    planted.write_text("def f():\n    from glscl.engine.run import run\n    return run\n")
    found = layer_violations({"glscl.model.helper": planted})
    assert found == ["glscl.model.helper imports glscl.engine.run (glscl.engine is above glscl.model)"]


def test_the_command_line_reaches_the_lab_only_inside_its_commands():
    code = ("import sys, glscl.cli as cli; cli.build_parser().parse_args(['train']); "
            "print(sorted(m for m in sys.modules if m.startswith('glscl.lab')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
