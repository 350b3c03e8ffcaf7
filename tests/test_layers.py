"""The package's layers: no import circles, and the core runs without IPython.

The magic is the thinnest layer over a plain-Python core; a module that imports another
at import time, directly or not, must not be imported back by it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mesh_magics

PACKAGE = Path(mesh_magics.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """The package modules `path` imports at module level (TYPE_CHECKING blocks included:
    a type-only circle is still one idea split in two; imports inside functions are the
    deliberate lazy ones and are left out)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    statements = list(ast.parse(path.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If | ast.Try):
            statements.extend(node.body + node.orelse)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
    return {m for m in found if m != name}


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def test_no_module_imports_itself_back() -> None:
    graph = {module_name(p): top_level_imports(p) for p in PACKAGE.rglob("*.py")}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            current, trail = stack.pop()
            for nxt in graph.get(current, set()):
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = [cycle for m in graph if (cycle := cycle_from(m))]
    assert cycles == [], " | ".join(" -> ".join(c) for c in cycles)


def test_the_core_imports_no_ipython_and_nothing_imports_the_package_root() -> None:
    core = [
        "mesh_magics.api",
        "mesh_magics.http.client",
        "mesh_magics.run.generation",
        "mesh_magics.results.result",
        "mesh_magics.results.display",
        "mesh_magics.views",
        "mesh_magics.views.text",
        "mesh_magics.local.server",
    ]
    script = (
        "import sys, importlib\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'traitlets') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py" or path.parent != PACKAGE:
            assert "mesh_magics" not in top_level_imports(path), path
