"""The package's layers hold: every import runs downward, none makes a circle, and the
core runs without IPython.

The layers, bottom to top, are drawn in docs/design.md ("The layers"). Every `import` is
read, at module level and inside functions (a lazy import is still an import);
`if TYPE_CHECKING:` blocks are left out, since they run only for the type checker.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mesh_magics

PACKAGE = Path(mesh_magics.__file__).parent

# Bottom to top. A room (a top-level module or subpackage) imports only from rooms of
# lower layers, and from itself. `local` stands beside the rest: it imports only the
# bottom layer, and only `settings` imports it, through `mesh_magics.local` itself.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "redact", "hosts", "wording", "frontends", "marks"),  # no package imports
    ("errors",),
    ("value_kinds",),
    ("schema",),
    ("settings", "presets"),  # the only rooms that read the environment and config files
    ("images", "originals"),
    ("events", "inputs", "tables"),
    ("request", "cell"),
    ("http",),
    ("results",),
    ("store",),
    ("engine",),
    ("views",),
    ("client",),
    ("forms",),
    ("ipython", "serverext"),
    ("__init__",),
]
BESIDE = {"local": {"settings"}}  # room -> the only rooms that may import it
LEVEL: dict[str, float] = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
LEVEL["local"] = LEVEL["errors"] + 0.5  # it may use the bottom two layers, nothing else


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path, module: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, module) for every package import in `path` (the file of `module`), wherever
    it stands, except inside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    module = module or module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:  # `from . import index`: the module index
                named = f"{target}.{alias.name}"
                yield node.lineno, named if _exists(named) else target
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mesh_magics"):
            yield node.lineno, str(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mesh_magics."):
                    yield node.lineno, alias.name


def every_import() -> Iterator[tuple[str, int, str, str]]:
    """(where, line, from room, to module) for every import between rooms."""
    for path in sorted(PACKAGE.rglob("*.py")):
        source = room_of(module_of(path))
        for line, target in imports_of(path):
            if room_of(target) != source:
                yield str(path.relative_to(PACKAGE.parent)), line, source, target


def test_every_room_has_a_layer() -> None:
    rooms = {room_of(module_of(path)) for path in PACKAGE.rglob("*.py")}
    assert rooms - set(LEVEL) == set(), "add the new room to LAYERS and to docs/design.md"


def test_every_import_runs_downward() -> None:
    wrong = []
    for where, line, source, target in every_import():
        room = room_of(target)
        if room in BESIDE:
            ok = source in BESIDE[room] and target == f"mesh_magics.{room}"
        else:
            ok = LEVEL[room] < LEVEL[source]
        if not ok:
            wrong.append(f"{where}:{line}: {source} (layer {LEVEL[source]}) imports {target}")
    assert wrong == [], "imports that run upward or sideways:\n" + "\n".join(wrong)


def test_every_import_finds_its_module() -> None:
    """A function-level import of a module that has moved fails only when it runs (mypy,
    told to ignore missing imports, does not see it): import every target now."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, target in imports_of(path):
            try:
                importlib.import_module(target)
            except ImportError as exc:
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {exc}")
    assert missing == []


def test_no_module_imports_itself_back() -> None:
    """Within a room too: no circle between modules, counting every import."""
    graph = {
        module_of(path): {target for _, target in imports_of(path)} - {module_of(path)}
        for path in PACKAGE.rglob("*.py")
    }
    circles = [trail for start in graph if (trail := _circle_from(graph, start))]
    assert circles == [], " | ".join(" -> ".join(c) for c in circles)


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def _circle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
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


def test_the_layer_test_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden.py"
    hidden.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..ipython import magic\n"
        "def f():\n    from ..engine import jobs\n    return jobs\n"
    )
    assert list(imports_of(hidden, "mesh_magics.views.hidden")) == [(5, "mesh_magics.engine.jobs")]


def test_the_core_imports_no_ipython() -> None:
    core = [
        "mesh_magics.client",
        "mesh_magics.http.client",
        "mesh_magics.engine.generation",
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
