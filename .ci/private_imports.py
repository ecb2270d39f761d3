"""Nothing outside a package imports its underscore modules (docs/architecture.md "Layers").

A package's own tests are the one exception: tests/actors/exchange/ may import
actors.exchange._cache, because the test tree mirrors the source. Exit 1 with one line per
import that breaks the rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import names (for `from a import b`, both a and a.b: b may be a module)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def owner(module: str) -> str | None:
    """The package whose private module this is (None: not a private module)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def allowed(importer: str, package: str) -> bool:
    return importer == package or importer.startswith((package + ".", f"tests.{package}."))


def main() -> int:
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    problems = []
    for name in files.stdout.split():
        path = ROOT / name
        if not path.exists():
            continue
        importer = module_of(path)
        for line, module in imported(ast.parse(path.read_text(), name)):
            package = owner(module)
            daemon = package is not None and package.split(".")[0] in {"actors", "messages", "runtime"}
            if daemon and package is not None and not allowed(importer, package):
                problems.append(f"{name}:{line}: imports {module}, private to {package}")
    for problem in sorted(set(problems)):
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
