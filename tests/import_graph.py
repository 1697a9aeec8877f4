"""The project's import graph, read from the source (no module is imported): module -> project modules it imports.

`python tests/import_graph.py` prints every module with its line count and project imports (a markdown table).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"once": ROOT / "once", "once_plugins": ROOT / "plugins"}  # import name -> folder


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the core and the built-in plugins."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, module: str) -> set[str]:
    """Project modules that `module` imports anywhere in its file (function-level imports included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    return {module: imports(path, module) for module, path in modules().items()}


def main() -> None:
    table = graph()
    print("| module | lines | imports |\n|---|---|---|")
    for module, path in modules().items():
        lines = len(path.read_text(encoding="utf8").splitlines())
        print(f"| {module} | {lines} | {', '.join(sorted(table[module])) or '-'} |")


if __name__ == "__main__":
    sys.exit(main())
