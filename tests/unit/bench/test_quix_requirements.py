"""The Quix Streams contender runs in a venv of its own (.venv-quix), from
bench/quix-requirements.txt: every library the code it imports from this repository needs
must be listed there, or the contender dies at start-up."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
OWN = {"bench", "pipeline"}


def _imports(path: Path) -> set[str]:
    """Modules `path` imports; for `from m import n`, also `m.n` (n may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_the_quix_venv_has_what_the_contender_imports() -> None:
    seen, todo, libraries = set(), ["bench.quix_app"], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:  # a name imported from a module, not a module
            continue
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in OWN:
                parts = imported.split(".")  # the module and the packages above it
                todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
            elif top not in sys.stdlib_module_names and top != "__future__":
                libraries.add(top)
    lines = (REPO / "bench" / "quix-requirements.txt").read_text().splitlines()
    listed = {line.split("=")[0].strip() for line in lines if line and not line.startswith("#")}
    assert libraries <= listed, f"missing from bench/quix-requirements.txt: {libraries - listed}"
    assert {"msgspec", "fastavro", "orjson"} <= libraries  # the walk reached the contracts
    assert "pipeline.contracts.schemas" in seen  # `from pipeline.contracts import schemas`
